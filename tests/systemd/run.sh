#!/usr/bin/env bash
# The systemd test: the .deb under a real systemd, the way an operator uses it.
#
#   bash tests/systemd/run.sh [dist/buzzbotd_<version>_all.deb]   (make systemd-test)
#
# Boots Debian 12 with systemd as PID 1 in a container (systemd-nspawn
# --boot, a clean --volatile=overlay boot of a cached debootstrap tree, see
# rootfs.sh) with only a loopback network, then installs the package with apt
# and checks, through systemctl and journalctl, everything issue 5 promises:
# install leaves no failed unit, Type=notify readiness and STATUS=, the
# watchdog (kept alive by pings, firing on a hung loop and on SIGSTOP),
# Restart=on-failure, no restart on exit 78, the PID lock (exit 75), journal
# priorities, the hardening score, the daemon with X and Telegram on against
# the repository's fake servers (tests/fakes, run inside the container): a
# scheduled tweet posted exactly once across a restart and the bot answering,
# and apt remove / purge. Prints PASS/FAIL per check and a summary;
# exits 1 if any check failed, 2 if the test could not run at all.
# Needs root, systemd-container and debootstrap (apt-get install them).
set -uo pipefail
exec </dev/null   # nothing here reads a terminal; CI has no standard input

REPO=$(cd "$(dirname "$0")/../.." && pwd)
T0=$SECONDS
. "$REPO/tests/systemd/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn)"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing: apt-get install systemd-container"
the_deb "${1:-}"
VERSION=$(dpkg-deb -f "$DEB" Version)
ROOTFS=$(bash "$REPO/tests/systemd/rootfs.sh") || die "could not make the root file system"

section "boot Debian 12 with systemd as PID 1 ($ROOTFS)"
cp "$DEB" "$WORK/deb/"
boot "$ROOTFS"

# --- the package itself --------------------------------------------------------
section "the .deb ($(basename "$DEB"), $(du -k "$DEB" | cut -f1) KiB)"
payload=$(dpkg-deb -c "$DEB")
lacks "no __pycache__ or .pyc in the payload" "$payload" "__pycache__"
if grep -qE '\.so(\.[0-9]+)*$' <<<"$payload"; then fail "no compiled modules (.so) in the payload" "$(grep -E '\.so(\.[0-9]+)*$' <<<"$payload" | head -3)"
else pass "no compiled modules (.so) in the payload"; fi
contains "the payload has the wrapper /usr/bin/buzzbotd" "$payload" "./usr/bin/buzzbotd"
contains "the payload has the unit" "$payload" "./lib/systemd/system/buzzbotd.service"
expect "the package is Architecture: all" "$(dpkg-deb -f "$DEB" Architecture)" all

section "apt install ./$(basename "$DEB") (offline: every dependency is in the base system)"
t0=$SECONDS
install_out=$(ct apt-get install -y -q "/deb/$(basename "$DEB")" 2>&1); rc=$?
INSTALL_S=$((SECONDS - t0))
expect "apt install exits 0" "$rc" 0
[ $rc = 0 ] || echo "$install_out" | tail -20
expect "dpkg says installed" "$(ct dpkg-query -W -f '${Status}' buzzbotd)" "install ok installed"
expect "no failed unit after install" "$(failed_units)" ""
out=$(ct systemd-analyze verify --man=no buzzbotd.service 2>&1); rc=$?
expect "systemd-analyze verify finds nothing wrong with the unit" "$rc:$out" "0:"
expect "the unit is installed disabled" "$(ct systemctl is-enabled buzzbotd)" disabled
expect "the unit is not started by the install" "$(prop ActiveState)" inactive
contains "postinst says what to do next" "$install_out" "systemctl enable --now buzzbotd"
contains "user buzzbotd exists, home /var/lib/buzzbotd, no shell" \
    "$(ct getent passwd buzzbotd)" ":/var/lib/buzzbotd:/usr/sbin/nologin"
contains "group buzzbotd exists" "$(ct getent group buzzbotd)" "buzzbotd:"
expect "conffile mode 0640 root:buzzbotd" \
    "$(ct stat -c '%a %U:%G' /etc/buzzbotd/buzzbotd.toml)" "640 root:buzzbotd"
contains "the config is registered as a conffile" \
    "$(ct dpkg-query -W -f '${Conffiles}' buzzbotd)" "/etc/buzzbotd/buzzbotd.toml"
pyc=$(ct find /usr/lib/buzzbotd -name '*.cpython-311.pyc' | wc -l)
if [ "$pyc" -gt 100 ]; then pass "postinst byte-compiled the modules ($pyc .pyc)"
else fail "postinst byte-compiled the modules" "only $pyc .pyc files"; fi
for f in /usr/share/man/man8/buzzbotd.8.gz /usr/share/man/man5/buzzbotd.toml.5.gz \
         /usr/share/doc/buzzbotd/README.Debian /usr/share/doc/buzzbotd/copyright; do
    if ct test -s "$f"; then pass "$f installed"; else fail "$f installed" "missing"; fi
done
expect "buzzbotd --version" "$(ct buzzbotd --version 2>&1)" "buzzbotd $VERSION"
out=$(ct buzzbotd check-config 2>&1); rc=$?
expect "check-config on the shipped config exits 78" "$rc" 78
contains "check-config names the missing Telegram token" "$out" "telegram.token: is empty"
contains "check-config names the missing X credentials" "$out" "x.consumer_key: is empty"
out=$(ct runuser -u nobody -- buzzbotd check-config 2>&1); rc=$?
expect "another user cannot read the config (exit 78)" "$rc" 78
contains "... and is told why" "$out" "Permission denied"
# Commands by hand before the service ever started (issue 14): the package
# made the state and runtime directories (tmpfiles.d), not only the unit.
expect "the package made /var/lib/buzzbotd and /run/buzzbotd (0750 buzzbotd)" \
    "$(ct stat -c '%n %U:%G %a' /var/lib/buzzbotd /run/buzzbotd | tr '\n' ' ')" \
    "/var/lib/buzzbotd buzzbotd:buzzbotd 750 /run/buzzbotd buzzbotd:buzzbotd 750 "
quiet_config /tmp/quiet.toml; ct chmod 644 /tmp/quiet.toml
out=$(ct runuser -u buzzbotd -- buzzbotd status --config /tmp/quiet.toml 2>&1); rc=$?
expect "runuser -u buzzbotd -- buzzbotd status before any start: one clear line, exit 1" \
    "$rc:$out" "1:buzzbotd: /var/lib/buzzbotd/buzzbotd.db: no database yet (the daemon creates it on its first start)"
out=$(ct runuser -u nobody -- buzzbotd status --config /tmp/quiet.toml 2>&1); rc=$?
expect "runuser -u nobody -- buzzbotd status: exit 1" "$rc" 1
contains "... naming the path and the user" "$out" "/var/lib/buzzbotd: permission denied for user nobody (/var/lib/buzzbotd is owned by buzzbotd:buzzbotd, mode 0750)"
lacks "... without a traceback" "$out" "Traceback"
out=$(ct runuser -u nobody -- buzzbotd run --config /tmp/quiet.toml 2>&1); rc=$?
expect "runuser -u nobody -- buzzbotd run: exit 1" "$rc" 1
contains "... naming the path and the user" "$out" "permission denied for user nobody"
lacks "... without a traceback" "$out" "Traceback"
# Every pin of requirements.lock, as the wrapper's sys.path sees it.
locked=$(sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\) .*/\1/p' "$REPO/requirements.lock")
out=$(ct python3 -IS -c 'import sys
sys.path.append("/usr/lib/buzzbotd")
from importlib.metadata import PackageNotFoundError, version
bad = []
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        got = version(name)
    except PackageNotFoundError:
        got = "missing"
    if got != want:
        bad.append(f"{name} {got} (locked {want})")
import telegram, tweepy, httpx, peewee, schedule, sdnotify
print(f"{len(sys.argv) - 1} pins" if not bad else "; ".join(bad))' $locked 2>&1)
expect "the bundled libraries import, at the locked versions" "$out" "$(wc -w <<<"$locked") pins"

# --- configured and started ------------------------------------------------------
section "configure (X and Telegram off), systemctl enable --now"
quiet_config
out=$(ct buzzbotd check-config 2>&1); rc=$?
expect "check-config accepts it" "$rc" 0
t0=$(date +%s%N); ct systemctl enable --now buzzbotd 2>/dev/null; rc=$?; t1=$(date +%s%N)
ENABLE_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
expect "systemctl enable --now exits 0" "$rc" 0
expect "is-enabled" "$(ct systemctl is-enabled buzzbotd)" enabled
expect "is-active" "$(ct systemctl is-active buzzbotd)" active
contains "StatusText is the daemon's ready line" "$(prop StatusText)" "ready:"
contains "systemctl status shows it" "$(ct systemctl status buzzbotd --no-pager -n 0)" 'Status: "ready:'
expect "WatchdogUSec" "$(prop WatchdogUSec)" 30s
expect "NRestarts" "$(prop NRestarts)" 0
PID=$(main_pid)
expect "the main process runs as buzzbotd" "$(ct stat -c %U /proc/"$PID")" buzzbotd
status=$(ct cat /proc/"$PID"/status)
contains "no capabilities" "$status" $'CapEff:\t0000000000000000'
contains "no new privileges" "$status" $'NoNewPrivs:\t1'
contains "seccomp filter on" "$status" $'Seccomp:\t2'
expect "the lock file holds the main pid" "$(ct cat /run/buzzbotd/buzzbotd.lock | tr -d '\n')" "$PID"
expect "the database is in StateDirectory, owned by buzzbotd" \
    "$(ct stat -c '%U %a' /var/lib/buzzbotd /var/lib/buzzbotd/buzzbotd.db | tr '\n' ' ')" "buzzbotd 750 buzzbotd 640 "
out=$(ct buzzbotd status 2>&1); rc=$?
expect "buzzbotd status (root, read-only) exits 0 while it runs" "$rc" 0
contains "... and names the running pid" "$out" "pid $PID"

out=$(ct systemd-analyze security buzzbotd.service 2>&1)
SCORE=$(sed -n 's/.*Overall exposure level for buzzbotd.service: \([0-9.]*\).*/\1/p' <<<"$out")
if [ -n "$SCORE" ] && awk -v s="$SCORE" 'BEGIN { exit !(s <= 1.5) }'; then
    pass "systemd-analyze security: exposure $SCORE <= 1.5"
else
    fail "systemd-analyze security: exposure <= 1.5" "got '${SCORE:-?}': $(grep '✗' <<<"$out" | head -20)"
fi

section "second instance by hand (runuser -u buzzbotd -- buzzbotd run)"
out=$(ct timeout 30 runuser -u buzzbotd -- buzzbotd run 2>&1); rc=$?
expect "it exits 75" "$rc" 75
contains "it names the holder" "$out" "another buzzbotd (pid $PID) holds"
expect "the service is untouched (same MainPID)" "$(main_pid)" "$PID"

section "watchdog pings keep it alive (drop-in WatchdogSec=3, 8 s)"
dropin 50-watchdog "WatchdogSec=3"
start_timed restart
PID=$(main_pid); n0=$(prop NRestarts); w0=$(prop WatchdogTimestampMonotonic)
sleep 8
w1=$(prop WatchdogTimestampMonotonic)
if [ "$w1" -gt "$w0" ] 2>/dev/null; then pass "WATCHDOG=1 arrives (last ping moved on)"
else fail "WATCHDOG=1 arrives" "WatchdogTimestampMonotonic $w0 -> $w1"; fi
expect "still the same process after 8 s > 2 x WatchdogSec" "$(main_pid)" "$PID"
expect "no restart meanwhile" "$(prop NRestarts)" "$n0"
undrop 50-watchdog

section "a hung event loop is killed by the watchdog (BUZZBOTD_TEST_HANG=loop:3, WatchdogSec=4)"
dropin 50-hang "WatchdogSec=4
Environment=BUZZBOTD_TEST_HANG=loop:3"
c=$(cursor); n0=$(prop NRestarts)
start_timed restart
PID=$(main_pid)
if wait_for 30 pid_changed "$PID"; then pass "systemd restarted it (new MainPID $(main_pid))"
else fail "systemd restarted it" "MainPID still $(main_pid), state $(prop ActiveState)/$(prop SubState)"; fi
if [ "$(prop NRestarts)" -gt "$n0" ]; then pass "NRestarts went up ($n0 -> $(prop NRestarts))"
else fail "NRestarts went up" "still $(prop NRestarts)"; fi
wait_for 5 journal_has "$c" "Watchdog timeout"
contains "the journal says Watchdog timeout" "$(journal_after "$c")" "Watchdog timeout"
contains "systemd killed it for the watchdog" "$(journal_after "$c")" "Failed with result 'watchdog'"
contains "the journal has the stacks of the hung process (faulthandler)" "$(journal_after "$c")" "Fatal Python error: Aborted"
warnings=$(journal_after "$c" -p warning)
contains "journalctl -p warning shows the warning" "$warnings" "test fault hook BUZZBOTD_TEST_HANG=loop:3 is set"
lacks "journalctl -p warning hides info lines" "$warnings" "starting (pid"
contains "journalctl -p info shows them" "$(journal_after "$c" -p info)" "starting (pid"
prio=$(journal_after "$c" -o json | python3 -c 'import json, sys
for line in sys.stdin:
    e = json.loads(line)
    m = e.get("MESSAGE", "")
    if isinstance(m, str) and ("test fault hook" in m or "starting (pid" in m):
        print(e["PRIORITY"], m.split(":")[0], m.split()[1] if " " in m else "")' | sort -u | head -4 | tr '\n' ' ')
contains "the warning has PRIORITY=4" "$prio" "4 buzzbotd.faults"
contains "the start line has PRIORITY=6" "$prio" "6 buzzbotd"
undrop 50-hang
start_timed restart
expect "active again without the fault" "$(ct systemctl is-active buzzbotd)" active

section "kill -STOP of the main process: watchdog timeout, restart (WatchdogSec=3)"
dropin 50-watchdog "WatchdogSec=3"
start_timed restart
c=$(cursor); PID=$(main_pid)
ct sh -c "kill -STOP $PID"   # the base system has no procps: the shell's kill
if wait_for 30 pid_changed "$PID"; then pass "systemd restarted it (new MainPID $(main_pid))"
else fail "systemd restarted it" "MainPID still $(main_pid), state $(prop ActiveState)/$(prop SubState)"; fi
wait_for 5 journal_has "$c" "Watchdog timeout"
contains "the journal says Watchdog timeout" "$(journal_after "$c")" "Watchdog timeout"
# systemd follows its SIGABRT with SIGCONT, so the stopped process wakes up
# to it at once (and usually dies of it; the faulthandler's dump of other
# threads' stacks can crash it first, which is as good).
contains "systemd killed it for the watchdog" "$(journal_after "$c")" "Failed with result 'watchdog'"
undrop 50-watchdog

section "kill -9 of the main process: Restart=on-failure"
start_timed restart
PID=$(main_pid); n0=$(prop NRestarts)
ct sh -c "kill -KILL $PID"
if wait_for 20 pid_changed "$PID"; then pass "restarted (new MainPID $(main_pid))"
else fail "restarted after kill -9" "MainPID $(main_pid), state $(prop ActiveState)/$(prop SubState)"; fi
expect "NRestarts went up by one" "$(prop NRestarts)" "$((n0 + 1))"
expect "no failed unit" "$(failed_units)" ""

section "systemctl stop: clean and quick"
c=$(cursor); t0=$(date +%s%N)
ct systemctl stop buzzbotd; t1=$(date +%s%N)
STOP_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
if awk -v s="$STOP_S" 'BEGIN { exit !(s < 10) }'; then pass "stopped in $STOP_S s (< 10)"
else fail "stopped in < 10 s" "took $STOP_S s"; fi
expect "inactive" "$(ct systemctl is-active buzzbotd)" inactive
expect "exit status 0" "$(prop ExecMainStatus)" 0
expect "Result=success" "$(prop Result)" success
wait_for 5 journal_has "$c" "buzzbotd: stopped"
contains "the journal says stopped" "$(journal_after "$c")" "buzzbotd: stopped"
if ct test -e /run/buzzbotd; then fail "RuntimeDirectory removed on stop" "/run/buzzbotd still there"
else pass "RuntimeDirectory removed on stop"; fi

section "a bad config: exit 78 and no restart loop"
printf '[daemon]\nlog_level = "loud"\n\n[x]\nenabled = false\n\n[telegram]\nenabled = false\n' | write_config
c=$(cursor)
ct systemctl start buzzbotd 2>/dev/null && fail "systemctl start fails" "it succeeded" || pass "systemctl start fails"
sleep 7   # longer than RestartSec=5s: a restart would have happened by now
expect "the unit is failed" "$(prop ActiveState)" failed
expect "Result=exit-code" "$(prop Result)" exit-code
expect "exit status 78" "$(prop ExecMainStatus)" 78
expect "not restarted (NRestarts 0: an explicit start resets it)" "$(prop NRestarts)" 0
contains "the journal names the key" "$(journal_after "$c")" 'daemon.log_level = "loud": expected one of'
contains "systemctl status shows it too" "$(ct systemctl status buzzbotd --no-pager -n 5)" "daemon.log_level"
ct systemctl reset-failed buzzbotd
expect "no failed unit after reset-failed" "$(failed_units)" ""

# --- a scheduled tweet, through the fake X server --------------------------------
section "X and Telegram on, against the fake servers, secrets via LoadCredential=: a scheduled tweet, once, across a restart"
if start_fakes 20; then
    pass "the fake X, price and Telegram servers run in the container"
    credentials_dropin
    SLOT=$(date -u -d '+8 seconds' +%H:%M:%S)
    fake_config "$SLOT" | write_config
    out=$(ct buzzbotd check-config 2>&1); rc=$?
    expect "without the credentials, check-config exits 78" "$rc" 78
    out=$(ct env CREDENTIALS_DIRECTORY=/etc/buzzbotd/credentials buzzbotd check-config 2>&1); rc=$?
    expect "with CREDENTIALS_DIRECTORY, check-config exits 0" "$rc" 0
    contains "... and says where they came from" "$out" "credentials from /etc/buzzbotd/credentials"
    c=$(cursor)
    start_timed start; XSTART_S=$START_S
    expect "active" "$(ct systemctl is-active buzzbotd)" active
    contains "StatusText names the next tweet" "$(prop StatusText)" "next tweet ${SLOT%:00} UTC"
    contains "StatusText counts reminders (Telegram on)" "$(prop StatusText)" "reminders"
    out=$(ask 42 /start 2>&1); rc=$?
    if [ $rc = 0 ] && [ -n "$out" ]; then pass "the bot answers /start through the fake Telegram: ${out%%$'\n'*}"
    else fail "the bot answers /start through the fake Telegram" "$(tail -c 300 <<<"$out")"; fi
    if wait_for 40 one_tweet; then pass "a tweet reached the fake X server at slot $SLOT"
    else fail "a tweet reached the fake X server" "none by $(date -u +%T); journal: $(journal_after "$c" | tail -5 | tr '\n' '|')"; fi
    contains "it carries the fake price" "$(ct cat /run/buzzbotd-test/tweets.jsonl 2>/dev/null)" '67,890.12'
    wait_for 10 journal_has "$c" ": posted"
    contains "the journal records the post" "$(journal_after "$c")" ": posted"
    PID=$(main_pid)
    start_timed restart
    if [ "$(main_pid)" != "$PID" ] && active; then pass "systemctl restart gives a new MainPID ($PID -> $(main_pid))"
    else fail "systemctl restart gives a new MainPID" "MainPID $(main_pid)"; fi
    sleep 4   # the restarted daemon's catch-up runs at once; give it time to (not) post
    expect "no duplicate tweet after the restart" "$(tweets)" 1
    out=$(ct env CREDENTIALS_DIRECTORY=/etc/buzzbotd/credentials buzzbotd status --json 2>&1)
    contains "buzzbotd status --json shows the slot posted" "$out" '"state": "posted"'

    # What an operator sees of a failure: systemctl status shows the daemon's
    # STATUS= line, and journalctl -p warning the run's warnings, exactly:
    # one retry per 503 of the fake X, each naming the slot, nothing else.
    section "systemctl status and journalctl -p warning as an operator sees them (a 503 from X)"
    SLOT2=$(date -u -d '+8 seconds' +%H:%M:%S)
    KEY2="$(date -u +%Y-%m-%d)T${SLOT2}Z"
    TEMPLATE='BTC ${price:,.2f} after a 503 #BTC' fake_config "$SLOT2" | write_config
    start_timed restart
    c=$(cursor); since=$(ct date +%s)
    out=$(ct python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
        "http://127.0.0.1:$CONTROL_PORT/fault?status=503&times=1" 2>&1)
    contains "the fake X will answer the next POST with 503" "$out" "get 503"
    two_tweets() { [ "$(tweets)" -ge 2 ]; }
    if wait_for 40 two_tweets; then pass "the slot $KEY2 was posted after the 503"
    else fail "the slot $KEY2 was posted after the 503" "$(journal_after "$c" | tail -5 | tr '\n' '|')"; fi
    wait_for 10 journal_has "$c" "slot $KEY2: posted"
    status_out=$(ct systemctl status buzzbotd --no-pager -n 0)
    contains "systemctl status shows the STATUS= line" "$status_out" "Status: \"$(prop StatusText)\""
    contains "... which names the next tweet" "$status_out" 'Status: "ready: next tweet'
    # As the operator types it, from when this run began (--since; with
    # --after-cursor, journalctl 252 loses matches of -p when the cursor's
    # own entry is not one of them).
    warnings=$(ct journalctl -q -u buzzbotd -p warning --since="@$since" -o cat)
    expect "journalctl -u buzzbotd -p warning: exactly one line for the one 503" \
        "$(grep -c . <<<"$warnings")" 1
    contains "... a retry of slot $KEY2" "$warnings" "slot $KEY2: retry"
    contains "... that says 503" "$warnings" "503"
    lacks "... and not the post itself (info)" "$warnings" ": posted"
    contains "journalctl -p info has the post" \
        "$(ct journalctl -q -u buzzbotd -p info --since="@$since" -o cat)" "slot $KEY2: posted"
else
    fail "the fake X, price and Telegram servers run in the container" \
        "$(ct journalctl -q -u buzzbotd-test-fakes -o cat | tail -5 | tr '\n' '|')"
fi
ct systemctl stop buzzbotd-test-fakes 2>/dev/null
undrop 50-credentials
quiet_config
start_timed restart

section "apt install --reinstall while it runs (the upgrade path) restarts it"
PID=$(main_pid)
out=$(ct apt-get install -y -q --reinstall "/deb/$(basename "$DEB")" 2>&1); rc=$?
expect "apt reinstall exits 0" "$rc" 0
if [ "$(main_pid)" != "$PID" ] && active; then pass "restarted on upgrade (MainPID $PID -> $(main_pid))"
else fail "restarted on upgrade" "MainPID $(main_pid), $(prop ActiveState)"; fi
expect "the admin's config is kept" "$(ct grep -c 'systemd test: no network parts' /etc/buzzbotd/buzzbotd.toml)" 1
expect "conffile still 0640 root:buzzbotd" \
    "$(ct stat -c '%a %U:%G' /etc/buzzbotd/buzzbotd.toml)" "640 root:buzzbotd"
expect "no failed unit" "$(failed_units)" ""

# --- removal -------------------------------------------------------------------
section "apt remove keeps config and state"
out=$(ct apt-get remove -y -q buzzbotd 2>&1); rc=$?
expect "apt remove exits 0" "$rc" 0
expect "dpkg says config-files" "$(ct dpkg-query -W -f '${Status}' buzzbotd)" "deinstall ok config-files"
expect "the service is stopped" "$(ct systemctl is-active buzzbotd)" inactive
expect "no failed unit" "$(failed_units)" ""
if ct test -f /etc/buzzbotd/buzzbotd.toml; then pass "config kept"; else fail "config kept" "gone"; fi
if ct test -f /var/lib/buzzbotd/buzzbotd.db; then pass "state kept"; else fail "state kept" "gone"; fi
if ct getent passwd buzzbotd >/dev/null; then pass "user kept"; else fail "user kept" "gone"; fi
if ct test -e /usr/lib/buzzbotd; then fail "program removed, byte-code too" "$(ct find /usr/lib/buzzbotd | head -5 | tr '\n' ' ')"
else pass "program removed, byte-code too"; fi

section "apt purge removes config, state and the user"
out=$(ct apt-get purge -y -q buzzbotd 2>&1); rc=$?
expect "apt purge exits 0" "$rc" 0
[ $rc = 0 ] || echo "$out" | tail -10
expect "dpkg no longer knows it" "$(ct dpkg-query -W -f '${Status}' buzzbotd 2>/dev/null)" ""
for d in /etc/buzzbotd /var/lib/buzzbotd /run/buzzbotd /usr/lib/buzzbotd /etc/systemd/system/multi-user.target.wants/buzzbotd.service; do
    if ct test -e "$d"; then fail "$d removed" "still there"; else pass "$d removed"; fi
done
if ct getent passwd buzzbotd >/dev/null; then fail "user removed" "still there"; else pass "user removed"; fi
if ct getent group buzzbotd >/dev/null; then fail "group removed" "still there"; else pass "group removed"; fi
expect "no failed unit at the end" "$(failed_units)" ""

# --- summary ---------------------------------------------------------------------
TOTAL_S=$((SECONDS - T0))
printf '\n== summary\n'
printf '%s\n' "${RESULTS[@]}"
if [ $FAILED -gt 0 ]; then
    printf '\n== the unit'"'"'s journal (last 40 lines)\n'
    ct journalctl -q -u buzzbotd -n 40 --no-pager
fi
cat <<EOF

figures: exposure ${SCORE:-?}; systemctl start to active: ${ENABLE_S}s (enable --now), ${XSTART_S:-?}s (X on);
         apt install ${INSTALL_S}s; stop ${STOP_S}s;
         from this script's start to the container running: ${BOOT_S}s; whole test ${TOTAL_S}s
         .deb $(du -k "$DEB" | cut -f1) KiB, Installed-Size $(dpkg-deb -f "$DEB" Installed-Size) KiB
systemd-test: $(( ${#RESULTS[@]} - FAILED )) passed, $FAILED failed
EOF
[ $FAILED -eq 0 ]
