#!/usr/bin/env bash
# piuparts, Debian's own install/upgrade/purge tester, on the .deb:
#   1. install, remove, purge in a clean Debian 12 chroot (nothing left over);
#   2. the upgrade from the previous release (from a local apt repository
#      holding prev_deb.sh's .deb), then remove and purge.
#
#   bash tests/systemd/piuparts.sh [NEW.deb [OLD.deb]]   (make systemd-test)
#
# The base system is the systemd test's cached tree (rootfs.sh), as a
# tarball: it already has systemd. A minimal piuparts chroot has not, and
# the package's sysusers dependency pulls systemd in, whose own directories
# piuparts would then count as left behind by buzzbotd. Needs root, piuparts,
# dpkg-dev and the network (piuparts runs apt-get update against the mirror).
#   BUZZBOTD_TEST_MIRROR  Debian mirror (default: this machine's, as rootfs.sh)
set -uo pipefail
exec </dev/null
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${BUZZBOTD_TEST_CACHE:-/var/cache/buzzbotd-test}
T0=$SECONDS
die() { echo "piuparts.sh: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root"
command -v piuparts >/dev/null || die "piuparts missing: apt-get install piuparts"
command -v dpkg-scanpackages >/dev/null || die "dpkg-scanpackages missing: apt-get install dpkg-dev"
NEW=${1:-$(ls -t "$REPO"/dist/buzzbotd_*_all.deb 2>/dev/null | head -n1)}
[ -n "$NEW" ] && [ -f "$NEW" ] || die "no .deb given and none in dist/: run 'make deb' first"
NEW=$(cd "$(dirname "$NEW")" && pwd)/$(basename "$NEW")
OLD=${2:-$(bash "$REPO/tests/systemd/prev_deb.sh")} || die "could not build the previous release"
ROOTFS=$(bash "$REPO/tests/systemd/rootfs.sh") || die "could not make the root file system"
mirror=$(bash "$REPO/tests/systemd/rootfs.sh" --mirror)
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt: set BUZZBOTD_TEST_MIRROR"

# The base tarball, remade when the tree is.
BASE=$CACHE/piuparts-base.tgz
if [ ! -f "$BASE" ] || [ "$ROOTFS/.buzzbotd-rootfs" -nt "$BASE" ]; then
    tar -C "$ROOTFS" -czf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE" || die "could not make $BASE"
fi
WORK=$(mktemp -d /tmp/buzzbotd-piuparts.XXXXXX)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/repo"
cp "$OLD" "$WORK/repo/"
(cd "$WORK/repo" && dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null) || die "dpkg-scanpackages failed"

common=(--basetgz="$BASE" --distribution=bookworm --mirror="$mirror main"
        --keep-sources-list --skip-logrotatefiles-test)
status=0
# piuparts_run NAME ARGS...: one run, its verdict and time
piuparts_run() {
    local name=$1 t0=$SECONDS rc; shift
    piuparts "${common[@]}" "$@" >"$WORK/$name.log" 2>&1; rc=$?
    local verdict; verdict=$(grep -E ' (PASS|FAIL): ' "$WORK/$name.log" | tail -1 | sed 's/^.* \(PASS\|FAIL\): /\1: /')
    printf '  %-7s %s (%d s): %s\n' "$( [ $rc = 0 ] && echo PASS || echo FAIL)" "$name" $((SECONDS - t0)) "${verdict:-no verdict}"
    if [ $rc != 0 ]; then
        grep -E ' (FAIL|ERROR): |^  ' "$WORK/$name.log" | head -40
        status=1
    fi
}
echo "piuparts on $(basename "$NEW"), upgrade from $(basename "$OLD"); base: $ROOTFS"
piuparts_run "install-remove-purge" --no-upgrade-test "$NEW"
piuparts_run "upgrade-from-$(dpkg-deb -f "$OLD" Version)" \
    --bindmount="$WORK/repo" --extra-repo="deb [trusted=yes] file://$WORK/repo ./" "$NEW"
echo "piuparts.sh: $([ $status = 0 ] && echo passed || echo FAILED) in $((SECONDS - T0)) s"
exit $status
