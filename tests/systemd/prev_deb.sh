#!/usr/bin/env bash
# Builds (once, cached) the .deb of the previous release and prints its path,
# for the upgrade test and piuparts.
#   bash tests/systemd/prev_deb.sh
#   BUZZBOTD_PREV_REF     the previous release: a tag or a commit (default 0.1.0)
#   BUZZBOTD_TEST_CACHE   cache directory (default /var/cache/buzzbotd-test)
# Release 0.1.0 is the commit that made the package (debian/changelog's first
# entry); tags may not travel with a clone, so without a tag 0.1.0 it is tagged
# here, locally, from that commit. The build is the old tree's own `make` rule
# for its .deb (no lintian), with the same hash-checked wheel cache.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${BUZZBOTD_TEST_CACHE:-/var/cache/buzzbotd-test}
REF=${BUZZBOTD_PREV_REF:-0.1.0}
RELEASE_0_1_0=aaea37bdd89dd7e95f2a02fde85672a0647706fb

if ! commit=$(git -C "$REPO" rev-parse -q --verify "$REF^{commit}"); then
    if [ "$REF" = 0.1.0 ] && git -C "$REPO" cat-file -e "$RELEASE_0_1_0^{commit}" 2>/dev/null; then
        git -C "$REPO" tag 0.1.0 "$RELEASE_0_1_0"
        echo "prev_deb.sh: tagged 0.1.0 locally at $RELEASE_0_1_0" >&2
        commit=$RELEASE_0_1_0
    else
        echo "prev_deb.sh: '$REF' is neither a tag nor a commit of $REPO (a shallow clone? git fetch --unshallow)" >&2
        exit 1
    fi
fi
out=$CACHE/prev-$commit
if deb=$(ls "$out"/buzzbotd_*_all.deb 2>/dev/null) && [ -n "$deb" ]; then
    echo "$deb"
    exit 0
fi
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/prev-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
git -C "$REPO" archive --format=tar "$commit" | tar -x -C "$tmp"
version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$tmp/debian/changelog")
echo "prev_deb.sh: building buzzbotd $version from $REF ($commit)" >&2
start=$SECONDS
make -C "$tmp" "dist/buzzbotd_${version}_all.deb" >"$tmp.log" 2>&1 || { tail -30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
mkdir -p "$out.tmp"
mv "$tmp/dist/buzzbotd_${version}_all.deb" "$out.tmp/"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "prev_deb.sh: built in $((SECONDS - start)) s" >&2
echo "$out/buzzbotd_${version}_all.deb"
