# Shared by the systemd tests (run.sh, arm64.sh, upgrade.sh): the record of
# checks, a Debian 12 container booted with systemd as PID 1, and commands
# run inside it. Sourced, not run; the caller sets REPO and T0.
# shellcheck shell=bash

X_PORT=18081
PRICE_PORT=18082
TELEGRAM_PORT=18083
CONTROL_PORT=18084
MACHINE=buzzbotd-test-$$

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

# --- checks and their record -------------------------------------------------
RESULTS=()
FAILED=0
pass() { RESULTS+=("PASS  $1"); printf '  PASS  %s\n' "$1"; }
fail() { RESULTS+=("FAIL  $1: $2"); FAILED=$((FAILED + 1)); printf '  FAIL  %s: %s\n' "$1" "$2"; }
# expect NAME ACTUAL EXPECTED
expect() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected '$3', got '$2'"; fi; }
# contains NAME TEXT NEEDLE
contains() {
    if grep -qF -- "$3" <<<"$2"; then pass "$1"
    else fail "$1" "no '$3' in: $(tail -c 600 <<<"$2" | tr '\n' '|')"; fi
}
lacks() {
    if grep -qF -- "$3" <<<"$2"; then fail "$1" "unexpected '$3' in: $(grep -F -- "$3" <<<"$2" | head -3 | tr '\n' '|')"
    else pass "$1"; fi
}
# wait_for SECONDS cmd...: polls every 0.2 s until cmd succeeds
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}
section() { printf '\n== %s (at %d s)\n' "$1" $((SECONDS - T0)); }
# now_ns / since_s T0_NS: wall-clock seconds, two decimals
now_ns() { date +%s%N; }
since_s() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# --- the container -------------------------------------------------------------
# the_deb [PATH]: sets DEB (absolute) to PATH or the newest dist/*.deb
the_deb() {
    DEB=${1:-$(ls -t "$REPO"/dist/buzzbotd_*_all.deb 2>/dev/null | head -n1)}
    [ -n "$DEB" ] && [ -f "$DEB" ] || die "no .deb given and none in dist/: run 'make deb' first"
    DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
}

NSPAWN_PID=
CPID=
EMULATED=no
WORK=$(mktemp -d /tmp/buzzbotd-systemd-test.XXXXXX)
mkdir -p "$WORK/deb"   # bound read-only at /deb in the container
cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        # nspawn's SIGTERM halts a native container; under qemu-user the
        # emulated PID 1 never sees it, but halts when asked from inside.
        if [ $EMULATED = yes ]; then ct systemctl poweroff --no-block >/dev/null 2>&1; fi
        kill -TERM "$NSPAWN_PID"
        for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BOOT_OPTS=()   # more systemd-nspawn options for boot()
# boot ROOTFS [SECONDS]: boots ROOTFS (a clean --volatile=overlay boot, only
# loopback network, the repository's tests at /src/tests, $WORK/deb at /deb)
# and waits until its systemd says 'running'; sets NSPAWN_PID, CPID, BOOT_S.
boot() {
    local rootfs=$1 limit=${2:-60} t0 state
    t0=$(now_ns)
    # --system-call-filter=bpf: without it, systemd's IP filtering is silently off.
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --boot \
        --directory="$rootfs" --volatile=overlay --machine="$MACHINE" \
        --register=no --keep-unit --system-call-filter=bpf --private-network \
        --bind-ro="$WORK/deb:/deb" --bind-ro="$REPO/tests:/src/tests" "${BOOT_OPTS[@]}" \
        --console=pipe </dev/null >"$WORK/console.log" 2>&1 &
    NSPAWN_PID=$!
    # The container's PID 1 is the child of nspawn that runs systemd (an
    # intermediate child that sets things up comes and goes first).
    CPID=
    for _ in $(seq $((limit * 10))); do
        for c in $(cat /proc/"$NSPAWN_PID"/task/*/children 2>/dev/null); do
            [ "$(cat /proc/"$c"/comm 2>/dev/null)" = systemd ] && CPID=$c
        done
        [ -n "$CPID" ] && break
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$CPID" ] || { cat "$WORK/console.log" >&2; die "systemd-nspawn did not start a container"; }
    wait_for "$limit" ct test -S /run/systemd/private || die "the container's systemd did not come up: $(tail -5 "$WORK/console.log")"
    state=$(ct timeout "$limit" systemctl is-system-running --wait 2>/dev/null)
    [ "$state" = running ] || { ct systemctl --failed >&2; die "the container's systemd is '$state', not 'running', before the package is even installed"; }
    BOOT_S=$(since_s "$t0")
    echo "  container PID 1 is host pid $CPID; booted to 'running' in ${BOOT_S}s"
}

# ct cmd...: runs cmd inside the container, with a clean environment.
ct() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive \
        nsenter -t "$CPID" -a "$@"
}
prop() { ct systemctl show -p "$1" --value buzzbotd; }
active() { [ "$(prop ActiveState)" = active ] && [ "$(prop SubState)" = running ]; }
main_pid() { prop MainPID; }
cursor() { ct journalctl -q -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p'; }
# journal_after CURSOR [journalctl options]: the unit's journal since CURSOR
journal_after() { ct journalctl -q -u buzzbotd --after-cursor="$1" -o cat "${@:2}"; }
journal_has() { journal_after "$1" | grep -qF -- "$2"; }
pid_changed() { local p; p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$1" ] && active; }
failed_units() { ct systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' '; }
dropin() {  # dropin NAME CONTENT: a runtime drop-in for the unit, then daemon-reload
    ct mkdir -p /run/systemd/system/buzzbotd.service.d
    printf '[Service]\n%s\n' "$2" | ct sh -c "cat > /run/systemd/system/buzzbotd.service.d/$1.conf"
    ct systemctl daemon-reload
}
undrop() { ct rm -f "/run/systemd/system/buzzbotd.service.d/$1.conf"; ct systemctl daemon-reload; }
write_config() { ct sh -c "cat > ${1:-/etc/buzzbotd/buzzbotd.toml}"; }   # keeps mode and owner
quiet_config() {
    printf '# systemd test: no network parts\n[x]\nenabled = false\n\n[telegram]\nenabled = false\n' | write_config "$@"
}
# start_timed [start|restart]: sets START_S to the seconds systemctl took
# (Type=notify: systemctl returns once READY=1 arrived)
start_timed() {
    local t0 rc
    t0=$(now_ns); ct systemctl "${1:-start}" buzzbotd; rc=$?
    START_S=$(since_s "$t0")
    return $rc
}

# --- the fake X, price and Telegram servers, inside the container ----------------
# start_fakes [SECONDS]: the fakes as the unit buzzbotd-test-fakes; they write
# the credentials they accept to /etc/buzzbotd/credentials.
start_fakes() {
    ct mkdir -p /run/buzzbotd-test
    ct systemd-run --quiet --unit=buzzbotd-test-fakes \
        --setenv=PYTHONPATH=/src --setenv=PYTHONDONTWRITEBYTECODE=1 \
        python3 /src/tests/systemd/fake_apis.py --x-port $X_PORT --price-port $PRICE_PORT \
        --telegram-port $TELEGRAM_PORT --control-port $CONTROL_PORT \
        --tweets /run/buzzbotd-test/tweets.jsonl --credentials /etc/buzzbotd/credentials \
        --ready /run/buzzbotd-test/ready
    wait_for "${1:-20}" ct test -s /run/buzzbotd-test/ready
}
# fake_config SLOT [inline]: a config against the fakes, posting at SLOT
# (HH:MM:SS UTC); with "inline", the fakes' credentials are written into it
# (for a unit without LoadCredential=), else they come from LoadCredential=.
# TEMPLATE=... sets x.template (the fake X refuses a text it already has).
fake_config() {
    local secrets=()
    if [ "${2:-}" = inline ]; then
        local k
        for k in consumer_key consumer_secret access_token access_token_secret; do
            secrets+=("$k = \"$(ct cat /etc/buzzbotd/credentials/x_$k)\"")
        done
        secrets+=("token = \"$(ct cat /etc/buzzbotd/credentials/telegram_token)\"")
    fi
    printf '%s\n' '# systemd test: against the fake servers' \
        '[price]' "url = \"http://127.0.0.1:$PRICE_PORT/api/v3/simple/price?ids=bitcoin&vs_currencies=usd&include_24hr_change=true\"" \
        'timeout_s = 10' '' '[x]' 'enabled = true' "api_base = \"http://127.0.0.1:$X_PORT\"" \
        "times = [\"$1\"]" 'timezone = "UTC"' ${TEMPLATE:+"template = \"$TEMPLATE\""} \
        "${secrets[@]:0:4}" '' \
        '[telegram]' 'enabled = true' "api_base = \"http://127.0.0.1:$TELEGRAM_PORT\"" \
        'admin_ids = [42]' "${secrets[@]:4}"
}
credentials_dropin() {
    local creds="" k
    for k in x_consumer_key x_consumer_secret x_access_token x_access_token_secret telegram_token; do
        creds+="LoadCredential=$k:/etc/buzzbotd/credentials/$k"$'\n'
    done
    dropin 50-credentials "$creds"
}
# ask USER_ID TEXT: the bot's reply to TEXT from USER_ID, through the fake Telegram
ask() {
    ct python3 -c 'import sys, urllib.parse, urllib.request
q = urllib.parse.urlencode({"user_id": sys.argv[2], "text": sys.argv[3]})
print(urllib.request.urlopen(sys.argv[1] + "?" + q, timeout=60).read().decode())' \
        "http://127.0.0.1:$CONTROL_PORT/ask" "$1" "$2"
}
tweets() { ct sh -c 'cat /run/buzzbotd-test/tweets.jsonl 2>/dev/null' | grep -c .; }
one_tweet() { [ "$(tweets)" -ge 1 ]; }

# summary FIGURES: the record, the journal if something failed, exit status
summary() {
    printf '\n== summary\n'
    printf '%s\n' "${RESULTS[@]}"
    if [ $FAILED -gt 0 ] && [ -n "$CPID" ]; then
        printf '\n== the unit'"'"'s journal (last 40 lines)\n'
        ct journalctl -q -u buzzbotd -n 40 --no-pager
    fi
    printf '\n%s\n%s: %d passed, %d failed\n' "$1" "$(basename "$0" .sh)" $(( ${#RESULTS[@]} - FAILED )) "$FAILED"
    [ $FAILED -eq 0 ]
}
