#!/usr/bin/env bash
# The .deb on a Raspberry Pi's architecture, emulated: an arm64 Debian 12
# (debootstrap --arch=arm64, cached) booted with systemd as PID 1 in a
# container whose every binary runs through qemu-user-static.
#
#   bash tests/systemd/arm64.sh [dist/buzzbotd_<version>_all.deb]   (make systemd-test-arm64)
#
# Proves on arm64: apt install, `buzzbotd --version` and `check-config`, the
# service started by systemd against the fake X, price and Telegram servers
# (run inside the container) until one tweet and one Telegram reply went
# through; prints the emulated timings. What it cannot prove, the amd64 run
# (run.sh) does: under qemu-user, the kernel sees each process with qemu's
# second thread, so it refuses the user namespace of PrivateUsers= (exit
# 217/USER), and seccomp and address-family filters are not enforced on the
# emulated calls. The unit therefore runs with the test-only drop-in below,
# which says why; the hardening itself is proven natively.
# Needs root, systemd-container, debootstrap, qemu-user-static, binfmt-support.
set -uo pipefail
exec </dev/null

REPO=$(cd "$(dirname "$0")/../.." && pwd)
T0=$SECONDS
. "$REPO/tests/systemd/lib.sh"
EMULATED=yes
ARCH=arm64

[ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn, binfmt_misc)"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing: apt-get install systemd-container"
the_deb "${1:-}"
VERSION=$(dpkg-deb -f "$DEB" Version)
bash "$REPO/tests/systemd/binfmt.sh" $ARCH || die "cannot run $ARCH binaries (apt-get install qemu-user-static binfmt-support)"
t0=$(now_ns)
ROOTFS=$(bash "$REPO/tests/systemd/rootfs.sh" $ARCH) || die "could not make the $ARCH root file system"
ROOTFS_S=$(since_s "$t0")

section "boot Debian 12 $ARCH, emulated, with systemd as PID 1 ($ROOTFS)"
cp "$DEB" "$WORK/deb/"
# Debian's own early units load credentials too (LoadCredential=, for
# sysctl.extra and the like), which qemu-user makes fail (243/CREDENTIALS):
# test-only drop-ins, bound into the container, reset them to none.
for unit in $(grep -l '^LoadCredential=' "$ROOTFS"/lib/systemd/system/*.service); do
    unit=$(basename "$unit")
    mkdir -p "$WORK/emulated/$unit.d"
    printf '# arm64 under qemu-user (tests/systemd/arm64.sh): no credentials\n[Service]\nLoadCredential=\n' \
        > "$WORK/emulated/$unit.d/50-emulated.conf"
    BOOT_OPTS+=(--bind-ro="$WORK/emulated/$unit.d:/etc/systemd/system/$unit.d")
done
boot "$ROOTFS" 300
expect "the container's machine is aarch64" "$(ct uname -m)" aarch64
expect "dpkg's architecture is $ARCH" "$(ct dpkg --print-architecture)" $ARCH
expect "its PID 1 runs through qemu" "$(readlink /proc/"$CPID"/exe | sed 's/.*qemu-aarch64.*/qemu-aarch64/')" qemu-aarch64

section "apt install ./$(basename "$DEB") on $ARCH"
t0=$(now_ns)
out=$(ct apt-get install -y -q "/deb/$(basename "$DEB")" 2>&1); rc=$?
INSTALL_S=$(since_s "$t0")
expect "apt install exits 0" "$rc" 0
[ $rc = 0 ] || echo "$out" | tail -20
expect "dpkg says installed" "$(ct dpkg-query -W -f '${Status}' buzzbotd)" "install ok installed"
expect "buzzbotd --version" "$(ct buzzbotd --version 2>&1)" "buzzbotd $VERSION"
quiet_config
out=$(ct buzzbotd check-config 2>&1); rc=$?
expect "check-config exits 0" "$rc:$(head -1 <<<"$out")" "0:/etc/buzzbotd/buzzbotd.toml: OK"
expect "the tmpfiles made /var/lib/buzzbotd for buzzbotd" "$(ct stat -c '%U %a' /var/lib/buzzbotd)" "buzzbotd 750"

section "the service under systemd, emulated, against the fake servers"
# Test-only: what qemu-user cannot give (see the top of this file), and time
# for a machine emulated ten to twenty times slower than the real one.
dropin 50-emulated "# arm64 under qemu-user (tests/systemd/arm64.sh), never on a real machine:
# the kernel refuses PrivateUsers= to a process with qemu's extra thread.
PrivateUsers=no
TimeoutStartSec=300
WatchdogSec=120"
t0=$(now_ns)
if start_fakes 120; then pass "the fake X, price and Telegram servers run (in $(since_s "$t0")s)"
else fail "the fake servers run" "$(ct journalctl -q -u buzzbotd-test-fakes -o cat | tail -5 | tr '\n' '|')"; fi
# A first start makes the database: a slot before the daemon's very first
# start is not its to post, and one missed while it was starting is.
start_timed start; QUIET_START_S=$START_S
expect "active (X and Telegram off)" "$(ct systemctl is-active buzzbotd)" active
ct systemctl stop buzzbotd
SLOT=$(date -u -d '+20 seconds' +%H:%M:%S)
fake_config "$SLOT" inline | write_config
out=$(ct buzzbotd check-config 2>&1); rc=$?
expect "check-config accepts the config against the fakes" "$rc" 0
c=$(cursor)
t0=$(now_ns)
start_timed start; XSTART_S=$START_S
expect "systemctl start: active (X and Telegram on)" "$(ct systemctl is-active buzzbotd)" active
contains "StatusText is the daemon's ready line" "$(prop StatusText)" "ready:"
contains "systemctl status shows it" "$(ct systemctl status buzzbotd --no-pager -n 0)" 'Status: "ready:'
PID=$(main_pid)
expect "the main process runs as buzzbotd" "$(ct stat -c %U /proc/"$PID")" buzzbotd
if wait_for 180 one_tweet; then
    TWEET_S=$(since_s "$t0")
    SLOT_LAG_S=$(awk -v a="$(date -u -d "$SLOT" +%s)" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    pass "a tweet reached the fake X server (slot $SLOT, $TWEET_S s after systemctl start)"
else fail "a tweet reached the fake X server" "none by $(date -u +%T); journal: $(journal_after "$c" | tail -5 | tr '\n' '|')"; fi
contains "it carries the fake price" "$(ct cat /run/buzzbotd-test/tweets.jsonl 2>/dev/null)" '67,890.12'
t1=$(now_ns)
out=$(ask 42 /start 2>&1); rc=$?
REPLY_S=$(since_s "$t1")
if [ $rc = 0 ] && [ -n "$out" ]; then pass "the bot answers /start through the fake Telegram in $REPLY_S s: ${out%%$'\n'*}"
else fail "the bot answers /start through the fake Telegram" "$(tail -c 300 <<<"$out")"; fi
wait_for 20 journal_has "$c" ": posted"
contains "the journal records the post" "$(journal_after "$c")" ": posted"
out=$(ct buzzbotd status 2>&1); rc=$?
expect "buzzbotd status exits 0" "$rc" 0
contains "... and shows the slot posted" "$out" "posted"
t1=$(now_ns)
ct systemctl stop buzzbotd
STOP_S=$(since_s "$t1")
expect "systemctl stop: inactive, exit 0" "$(prop ActiveState):$(prop ExecMainStatus)" "inactive:0"
expect "no failed unit" "$(failed_units)" ""

summary "figures ($ARCH emulated by qemu-user on $(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)):
         root file system ${ROOTFS_S}s (cached when fast); boot to 'running' ${BOOT_S}s
         apt install ${INSTALL_S}s; systemctl start -> active ${QUIET_START_S}s (X and Telegram off), ${XSTART_S:-?}s (on)
         systemctl start -> first tweet ${TWEET_S:-?}s (the slot was 20 s after the config was written;
         the tweet was seen ${SLOT_LAG_S:-?}s after the slot); /start -> reply ${REPLY_S:-?}s
         stop ${STOP_S:-?}s; whole test $((SECONDS - T0))s"
