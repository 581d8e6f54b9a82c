#!/usr/bin/env bash
# Makes (once) and prints the path of a cached Debian 12 root file system for
# the systemd test: systemd as PID 1 plus what the package needs to install
# offline (python3, tzdata). It lives outside the repository; delete the cache
# directory to rebuild it.
#   BUZZBOTD_TEST_CACHE   cache directory (default /var/cache/buzzbotd-test)
#   BUZZBOTD_TEST_MIRROR  Debian mirror (default: the first one serving
#                         bookworm in this machine's own apt sources)
set -euo pipefail

CACHE=${BUZZBOTD_TEST_CACHE:-/var/cache/buzzbotd-test}
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus,python3,ca-certificates,tzdata
ROOTFS=$CACHE/rootfs-$SUITE
# The stamp names what the tree was made from: change INCLUDE and it is remade.
STAMP="debootstrap --variant=minbase --include=$INCLUDE $SUITE v1"

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

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/rootfs-$SUITE.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "rootfs.sh: debootstrap $SUITE from $mirror into $tmp (once; about a minute)" >&2
start=$SECONDS
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
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
