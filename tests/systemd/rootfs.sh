#!/usr/bin/env bash
# Makes (once) and prints the path of a cached Debian 12 root file system for
# the systemd test: systemd as PID 1 plus what the package needs to install
# offline (python3, tzdata). It lives outside the repository; delete the cache
# directory to rebuild it.
#   bash tests/systemd/rootfs.sh [ARCH]   (default: this machine's, e.g. amd64)
# A foreign ARCH (arm64: a Raspberry Pi's) is made and later run through
# qemu-user-static; binfmt.sh registers it with the kernel first.
#   BUZZBOTD_TEST_CACHE   cache directory (default /var/cache/buzzbotd-test)
#   BUZZBOTD_TEST_MIRROR  Debian mirror (default: the first one serving
#                         bookworm in this machine's own apt sources)
set -euo pipefail

CACHE=${BUZZBOTD_TEST_CACHE:-/var/cache/buzzbotd-test}
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus,python3,ca-certificates,tzdata
HOST_ARCH=$(dpkg --print-architecture)
ARCH=${1:-$HOST_ARCH}   # or --mirror: print the mirror it would use
if [ "$ARCH" = "$HOST_ARCH" ]; then
    ROOTFS=$CACHE/rootfs-$SUITE
    STAMP="debootstrap --variant=minbase --include=$INCLUDE $SUITE v1"
else
    ROOTFS=$CACHE/rootfs-$SUITE-$ARCH
    STAMP="debootstrap --arch=$ARCH --variant=minbase --include=$INCLUDE $SUITE v1"
fi
# The stamp names what the tree was made from: change INCLUDE and it is remade.

# The machine's own mirror for $SUITE, from deb822 .sources or one-line .list files.
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no")
                    { split(uris, u, " "); print u[1]; found = 1; exit }
                types = uris = suites = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:"   { $1 = ""; types = $0 }
            tolower($1) == "uris:"    { $1 = ""; uris = $0 }
            tolower($1) == "suites:"  { $1 = ""; suites = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
    done
}

if [ "$ARCH" = --mirror ]; then
    echo "${BUZZBOTD_TEST_MIRROR:-$(host_mirror | head -n1)}"
    exit 0
fi
if [ -f "$ROOTFS/.buzzbotd-rootfs" ] && [ "$(cat "$ROOTFS/.buzzbotd-rootfs")" = "$STAMP" ]; then
    echo "$ROOTFS"
    exit 0
fi

mirror=${BUZZBOTD_TEST_MIRROR:-$(host_mirror | head -n1)}
if [ -z "$mirror" ]; then
    echo "rootfs.sh: no apt source for '$SUITE' found in /etc/apt; set BUZZBOTD_TEST_MIRROR" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
if [ "$ARCH" != "$HOST_ARCH" ]; then
    # debootstrap runs the tree's own maintainer scripts: the kernel must run
    # $ARCH binaries through qemu (with the F flag, no copy in the tree).
    bash "$(dirname "$0")/binfmt.sh" "$ARCH" >&2 || exit 1
fi

mkdir -p "$CACHE"
tmp=$(mktemp -d "$ROOTFS.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "rootfs.sh: debootstrap $SUITE $ARCH from $mirror into $tmp (once: about a minute natively, three emulated)" >&2
start=$SECONDS
debootstrap --arch="$ARCH" --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
    tail -n 30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
# Keep the image small and the boots quiet: no package lists, no machine-id
# (systemd makes a fresh one per boot), a hostname of its own.
rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin
: > "$tmp/etc/machine-id"
echo buzzbotd-test > "$tmp/etc/hostname"
echo "$STAMP" > "$tmp/.buzzbotd-rootfs"
rm -rf "$ROOTFS"
mv "$tmp" "$ROOTFS"
trap - EXIT
echo "rootfs.sh: made $ROOTFS in $((SECONDS - start)) s ($(du -sh "$ROOTFS" | cut -f1))" >&2
echo "$ROOTFS"
