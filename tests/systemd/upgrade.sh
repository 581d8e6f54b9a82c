#!/usr/bin/env bash
# Upgrades and a downgrade of the .deb under a real systemd, in the Debian 12
# container of run.sh: the previous release (prev_deb.sh builds it from its
# git tag) is installed, runs and writes state, then:
#   1. upgrade, service enabled, conffile as shipped: the conffile becomes the
#      new one without a question, every database row is kept (migrated to
#      the new schema), the service is restarted exactly once and healthy;
#   2. downgrade over a database newer than the old code: the old daemon
#      refuses it with a clear message and leaves it as it was;
#   3. upgrade, service disabled, conffile edited by the admin: the edit is
#      kept (unattended: --force-confdef --force-confold, the new one beside
#      it as .dpkg-dist), the service stays disabled and stopped.
#
#   bash tests/systemd/upgrade.sh [NEW.deb [OLD.deb]]   (make systemd-test)
set -uo pipefail
exec </dev/null

REPO=$(cd "$(dirname "$0")/../.." && pwd)
T0=$SECONDS
. "$REPO/tests/systemd/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (systemd-nspawn)"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing: apt-get install systemd-container"
the_deb "${1:-}"; NEW=$DEB
OLD=${2:-$(bash "$REPO/tests/systemd/prev_deb.sh")} || die "could not build the previous release"
NEW_V=$(dpkg-deb -f "$NEW" Version); OLD_V=$(dpkg-deb -f "$OLD" Version)
dpkg --compare-versions "$NEW_V" gt "$OLD_V" || die "$NEW_V is not newer than $OLD_V: bump debian/changelog"
ROOTFS=$(bash "$REPO/tests/systemd/rootfs.sh") || die "could not make the root file system"
cp "$NEW" "$WORK/deb/new.deb"; cp "$OLD" "$WORK/deb/old.deb"

# The conffile as each package ships it.
shipped_md5() { dpkg-deb --fsys-tarfile "$1" | tar -xO ./etc/buzzbotd/buzzbotd.toml | md5sum | cut -d' ' -f1; }
NEW_CONF=$(shipped_md5 "$NEW"); OLD_CONF=$(shipped_md5 "$OLD")

section "boot; install $OLD_V, the previous release"
boot "$ROOTFS"
out=$(ct apt-get install -y -q /deb/old.deb 2>&1); rc=$?
expect "apt install $OLD_V exits 0" "$rc" 0
[ $rc = 0 ] || echo "$out" | tail -20

# The state the old version writes: a posted slot with its events, a
# Telegram user with a reminder. The config is a second file (BUZZBOTD_CONFIG
# in a runtime drop-in), so that the conffile stays as shipped.
TEST_CONF=/etc/buzzbotd/test.toml
start_fakes 20 || die "the fake servers did not start"
credentials_dropin
dropin 50-config "Environment=BUZZBOTD_CONFIG=$TEST_CONF"
ct install -m 0640 -g buzzbotd /dev/null $TEST_CONF
quiet_config $TEST_CONF
ct systemctl enable --now buzzbotd 2>/dev/null   # the first start: the slot below is its
c0=$(cursor)
SLOT=$(date -u -d '+6 seconds' +%H:%M:%S)
fake_config "$SLOT" | write_config $TEST_CONF
ct systemctl restart buzzbotd
out=$(ask 42 "/remind 08:30 Europe/Berlin" 2>&1)
contains "$OLD_V: the bot sets a reminder" "$out" "08:30"
if wait_for 40 one_tweet; then pass "$OLD_V: a tweet was posted"; else fail "$OLD_V: a tweet was posted" "none"; fi

# db version | rows [TABLE...] | meta-keys | dump: the schema version;
# "table:count:sum of ids" per table (but meta); meta's keys; a digest of it all
db() { ct python3 - "$@" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:/var/lib/buzzbotd/buzzbotd.db?mode=ro", uri=True)
what = sys.argv[1]
if what == "version":
    print(db.execute("PRAGMA user_version").fetchone()[0])
elif what == "rows":
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    for t in sys.argv[2:] or tables:
        if t == "meta":   # key/value state, rewritten as it runs: its keys stay
            continue
        ids = [r[0] for r in db.execute(f'SELECT rowid FROM "{t}" ORDER BY rowid')]
        print(f"{t}:{len(ids)}:{sum(ids)}")
elif what == "meta-keys":
    print(" ".join(r[0] for r in db.execute("SELECT key FROM meta ORDER BY key")))
elif what == "dump":
    import hashlib
    print(hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest())
PY
}
latest() { ct env PYTHONPATH=/usr/lib/buzzbotd python3 -c 'from buzzbotd.db import migrations; print(migrations.LATEST)'; }
wait_for 10 journal_has "$c0" ": posted"
OLD_LATEST=$(latest)
ROWS=$(db rows)
TABLES=$(cut -d: -f1 <<<"$ROWS" | tr '\n' ' ')
META=$(db meta-keys)
# meta_kept: every key the old version stored is still there
meta_kept() { local k now; now=" $(db meta-keys) "; for k in $META; do [[ $now == *" $k "* ]] || return 1; done; }
echo "  $OLD_V wrote: $(tr '\n' ' ' <<<"$ROWS") (schema $(db version))"
for t in post post_event telegram_user reminder; do
    n=$(sed -n "s/^$t:\([0-9]*\):.*/\1/p" <<<"$ROWS")
    if [ "${n:-0}" -ge 1 ]; then pass "$OLD_V wrote rows in $t ($n)"; else fail "$OLD_V wrote rows in $t" "${n:-none}"; fi
done

section "1. upgrade $OLD_V -> $NEW_V: enabled, conffile as shipped"
expect "the conffile is as $OLD_V shipped it" "$(ct md5sum /etc/buzzbotd/buzzbotd.toml | cut -d' ' -f1)" "$OLD_CONF"
PID=$(main_pid); c=$(cursor); n0=$(prop NRestarts)
t0=$(now_ns)
out=$(ct apt-get install -y -q /deb/new.deb 2>&1); rc=$?
UPGRADE_S=$(since_s "$t0")
expect "apt install $NEW_V exits 0 (no question asked)" "$rc" 0
[ $rc = 0 ] || echo "$out" | tail -20
expect "dpkg has $NEW_V" "$(ct dpkg-query -W -f '${Version}' buzzbotd)" "$NEW_V"
expect "the conffile is now $NEW_V's" "$(ct md5sum /etc/buzzbotd/buzzbotd.toml | cut -d' ' -f1)" "$NEW_CONF"
expect "... and nothing beside it" "$(ct sh -c 'ls /etc/buzzbotd/ | grep -c dpkg-')" 0
expect "conffile still 0640 root:buzzbotd" "$(ct stat -c '%a %U:%G' /etc/buzzbotd/buzzbotd.toml)" "640 root:buzzbotd"
wait_for 30 active
expect "the service is active" "$(ct systemctl is-active buzzbotd)" active
if [ "$(main_pid)" != "$PID" ]; then pass "it runs a new process ($PID -> $(main_pid))"; else fail "it runs a new process" "MainPID still $PID"; fi
wait_for 10 journal_has "$c" "starting (pid"
expect "it was started exactly once by the upgrade" "$(journal_after "$c" | grep -c 'starting (pid')" 1
expect "no restart by failure meanwhile" "$(prop NRestarts)" "$n0"
expect "still enabled" "$(ct systemctl is-enabled buzzbotd)" enabled
NEW_LATEST=$(latest)
expect "the database has $NEW_V's schema version" "$(db version)" "$NEW_LATEST"
expect "every row of $OLD_V is still there (table:rows:sum of ids)" "$(db rows $TABLES)" "$ROWS"
if meta_kept; then pass "every meta key of $OLD_V is still there ($META)"; else fail "every meta key of $OLD_V is still there" "$META -> $(db meta-keys)"; fi
if [ "$NEW_LATEST" -gt "$OLD_LATEST" ]; then
    contains "the journal says it migrated" "$(journal_after "$c")" "database migrated to version $NEW_LATEST"
fi
out=$(ct env CREDENTIALS_DIRECTORY=/etc/buzzbotd/credentials buzzbotd status --config $TEST_CONF 2>&1); rc=$?
expect "buzzbotd status exits 0" "$rc" 0
contains "... and sees the daemon running" "$out" "running (pid $(main_pid))"
contains "... and the slot of $OLD_V posted" "$out" "posted"
out=$(ask 42 /reminders 2>&1)
contains "$NEW_V's bot lists the reminder $OLD_V stored" "$out" "08:30"
expect "no failed unit" "$(failed_units)" ""

section "2. downgrade to $OLD_V over a database newer than its code"
ct systemctl stop buzzbotd
if [ "$NEW_LATEST" -gt "$OLD_LATEST" ]; then
    FUTURE=$NEW_LATEST
else
    # Same schema in both: a database written by a later version is what
    # the old code must refuse; say so in its version number.
    FUTURE=$((OLD_LATEST + 1))
    ct python3 -c "import sqlite3; db = sqlite3.connect('/var/lib/buzzbotd/buzzbotd.db'); db.execute('PRAGMA user_version = $FUTURE'); db.commit()"
    echo "  (same schema, $OLD_LATEST, in both versions: the database is marked version $FUTURE as a later buzzbotd would)"
fi
DUMP=$(db dump)
c=$(cursor)
out=$(ct apt-get install -y -q --allow-downgrades /deb/old.deb 2>&1); rc=$?
expect "apt install --allow-downgrades $OLD_V exits 0" "$rc" 0
wait_for 30 journal_has "$c" "newer than this buzzbotd knows"
log=$(journal_after "$c")
contains "the old daemon refuses the database, naming both versions" "$log" "schema version $FUTURE, newer than this buzzbotd knows ($OLD_LATEST)"
contains "... and what to do" "$log" "install the newer buzzbotd again or restore a backup"
lacks "... without a traceback" "$log" "Traceback"
if active; then fail "the old daemon is not running on it" "it is active"; else pass "the old daemon is not running on it ($(prop ActiveState))"; fi
sleep 12   # two RestartSec=5s: what systemd does with a daemon that keeps refusing
DOWN_RESTARTS=$(prop NRestarts)
echo "  systemd restarted the refusing daemon $DOWN_RESTARTS times in ~12 s (Restart=on-failure, exit 1)"
ct systemctl stop buzzbotd
expect "the database is unchanged, row for row" "$(db dump)" "$DUMP"
expect "... and still at version $FUTURE" "$(db version)" "$FUTURE"
if [ "$FUTURE" != "$NEW_LATEST" ]; then
    ct python3 -c "import sqlite3; db = sqlite3.connect('/var/lib/buzzbotd/buzzbotd.db'); db.execute('PRAGMA user_version = $NEW_LATEST'); db.commit()"
fi
ct systemctl reset-failed buzzbotd 2>/dev/null

section "3. upgrade $OLD_V -> $NEW_V: disabled, conffile edited by the admin"
ct systemctl disable buzzbotd 2>/dev/null
printf '\n# edited by the admin\n' | ct sh -c 'cat >> /etc/buzzbotd/buzzbotd.toml'
EDITED=$(ct md5sum /etc/buzzbotd/buzzbotd.toml | cut -d' ' -f1)
opts=()
if [ "$OLD_CONF" != "$NEW_CONF" ]; then
    # Both the admin and the new version changed it: dpkg would ask. An
    # unattended upgrade answers as README.Debian says.
    opts=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    out=$(ct apt-get install -y -q /deb/new.deb 2>&1); rc=$?
    if [ $rc != 0 ] && grep -q "conffile" <<<"$out"; then
        pass "without an answer, dpkg stops at the conffile question (no terminal)"
    else fail "without an answer, dpkg stops at the conffile question" "rc $rc: $(tail -3 <<<"$out" | tr '\n' '|')"; fi
fi
out=$(ct apt-get install -y -q "${opts[@]}" /deb/new.deb 2>&1); rc=$?
expect "apt install $NEW_V ${opts[*]:+(--force-confold) }exits 0" "$rc" 0
[ $rc = 0 ] || echo "$out" | tail -20
expect "dpkg has $NEW_V, configured" "$(ct dpkg-query -W -f '${Version} ${Status}' buzzbotd)" "$NEW_V install ok installed"
expect "the admin's conffile is kept" "$(ct md5sum /etc/buzzbotd/buzzbotd.toml | cut -d' ' -f1)" "$EDITED"
if [ "$OLD_CONF" != "$NEW_CONF" ]; then
    expect "the new one is beside it as .dpkg-dist" "$(ct md5sum /etc/buzzbotd/buzzbotd.toml.dpkg-dist 2>/dev/null | cut -d' ' -f1)" "$NEW_CONF"
fi
expect "the service is still disabled" "$(ct systemctl is-enabled buzzbotd)" disabled
expect "... and not started" "$(ct systemctl is-active buzzbotd)" inactive
expect "every row is still there" "$(db rows $TABLES)" "$ROWS"
if meta_kept; then pass "every meta key is still there"; else fail "every meta key is still there" "$META -> $(db meta-keys)"; fi
expect "no failed unit" "$(failed_units)" ""

summary "figures: upgrade $OLD_V -> $NEW_V with the service running: ${UPGRADE_S}s (apt install to return);
         downgrade: the refusing old daemon restarted $DOWN_RESTARTS times in ~12 s; whole test $((SECONDS - T0))s"
