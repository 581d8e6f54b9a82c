"""The versioned schema: every migration, in order, as plain SQL with the
placeholders of migrations.TYPES ({id}, {bigint}, {bool}, …), or as a pair
(SQLite, PostgreSQL) where the two must differ. Never edit a released
migration; append a new one (migrations.py applies them).
"""

from __future__ import annotations

from buzzbotd.zonealiases import ALIASES

# The renames of stored zones by "current zone names": legacy name → current name or offset.
_RENAMED = {**ALIASES, **{f"Etc/GMT{-h:+d}": f"{h:+03d}:00" for h in range(-12, 15) if h}}
_RENAMES = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in sorted(_RENAMED.items()))

MIGRATIONS: list[tuple[str, list[str | tuple[str, str]]]] = [
    ("X ledger and daemon state", [
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL)""",
        """CREATE TABLE post (
            id {id},
            slot_key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual')),
            due_at TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('claimed', 'sending', 'posted', 'failed', 'skipped')),
            text TEXT,
            tweet_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        "CREATE INDEX post_due_at ON post (due_at)",
        """CREATE TABLE post_event (
            id {id},
            post_id {bigint} NOT NULL REFERENCES post (id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            detail TEXT)""",
        "CREATE INDEX post_event_post_id ON post_event (post_id)",
    ]),
    ("Telegram users and reminders", [
        """CREATE TABLE telegram_user (
            id {bigint} PRIMARY KEY NOT NULL,
            chat_id {bigint} NOT NULL,
            timezone TEXT NOT NULL CHECK (timezone <> ''),
            blocked {bool} NOT NULL DEFAULT {false},
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE reminder (
            id {id},
            user_id {bigint} NOT NULL REFERENCES telegram_user (id) ON DELETE CASCADE,
            chat_id {bigint} NOT NULL,
            local_time TEXT NOT NULL,
            timezone TEXT NOT NULL CHECK (timezone <> ''),
            next_due_at TEXT NOT NULL,
            last_sent_local_date TEXT,
            enabled {bool} NOT NULL DEFAULT {true},
            created_at TEXT NOT NULL)""",
        # The dispatcher's one query: enabled reminders due by now, oldest first.
        "CREATE INDEX reminder_due ON reminder (enabled, next_due_at)",
        "CREATE INDEX reminder_user_id ON reminder (user_id)",
    ]),
    # The status page's chart draws the posted prices; the text alone depends on
    # the template. Older rows keep NULL (not drawn).
    ("the price a post's text was composed from; reminders by timezone", [
        "ALTER TABLE post ADD COLUMN price REAL",
        # The status page counts enabled reminders per timezone from this index alone.
        "CREATE INDEX reminder_zone ON reminder (enabled, timezone)",
    ]),
    ("leadership and daemons (PostgreSQL: one leader, standbys)", [
        # One row. `epoch` grows at each takeover; every write of the leader
        # checks it in its own transaction (db/leadership.py: fencing).
        """CREATE TABLE leadership (
            id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
            epoch {bigint} NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            since TEXT NOT NULL)""",
        "INSERT INTO leadership (id, epoch, host, pid, since) VALUES (1, 0, '', 0, '')",
        # Every daemon on the database says who it is and what it does, for `status`.
        """CREATE TABLE daemon_node (
            name TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('leader', 'standby', 'starting')),
            seen_at TEXT NOT NULL)""",
    ]),
    # GET /metrics and the status page read these counts on every request:
    # counting 100,000 reminders took 10-40 ms each time. Triggers keep them in
    # the same transaction as the row they count, whoever writes it (the
    # daemon, `buzzbotd migrate-db`, an operator's sqlite3 shell), so a read is
    # never stale. A count whose rows are all gone stays as a row with n = 0.
    ("counts of reminders and users kept by triggers; the last post found by index", [
        """CREATE TABLE reminder_tally (
            enabled {bool} NOT NULL,
            timezone TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (enabled, timezone))""",
        """INSERT INTO reminder_tally (enabled, timezone, n)
            SELECT enabled, timezone, COUNT(*) FROM reminder GROUP BY enabled, timezone""",
        """CREATE TABLE user_tally (
            id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
            n INTEGER NOT NULL)""",
        "INSERT INTO user_tally (id, n) SELECT 1, COUNT(*) FROM telegram_user",
        ("""CREATE TRIGGER reminder_tally_insert AFTER INSERT ON reminder BEGIN
            INSERT INTO reminder_tally (enabled, timezone, n) VALUES (NEW.enabled, NEW.timezone, 1)
                ON CONFLICT (enabled, timezone) DO UPDATE SET n = n + 1;
         END""",
         """CREATE FUNCTION reminder_tally_count() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
            IF TG_OP <> 'INSERT' THEN
                UPDATE reminder_tally SET n = n - 1
                    WHERE enabled = OLD.enabled AND timezone = OLD.timezone;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                INSERT INTO reminder_tally AS t (enabled, timezone, n)
                    VALUES (NEW.enabled, NEW.timezone, 1)
                    ON CONFLICT (enabled, timezone) DO UPDATE SET n = t.n + 1;
            END IF;
            RETURN NULL;
         END $$"""),
        ("""CREATE TRIGGER reminder_tally_delete AFTER DELETE ON reminder BEGIN
            UPDATE reminder_tally SET n = n - 1
                WHERE enabled = OLD.enabled AND timezone = OLD.timezone;
         END""",
         """CREATE TRIGGER reminder_tally_insert_delete AFTER INSERT OR DELETE ON reminder
            FOR EACH ROW EXECUTE FUNCTION reminder_tally_count()"""),
        # Only a change of the counted columns: the dispatcher's update of
        # next_due_at on every delivery costs the WHEN test and nothing more.
        ("""CREATE TRIGGER reminder_tally_update AFTER UPDATE OF enabled, timezone ON reminder
            WHEN OLD.enabled IS NOT NEW.enabled OR OLD.timezone IS NOT NEW.timezone BEGIN
            UPDATE reminder_tally SET n = n - 1
                WHERE enabled = OLD.enabled AND timezone = OLD.timezone;
            INSERT INTO reminder_tally (enabled, timezone, n) VALUES (NEW.enabled, NEW.timezone, 1)
                ON CONFLICT (enabled, timezone) DO UPDATE SET n = n + 1;
         END""",
         """CREATE TRIGGER reminder_tally_update AFTER UPDATE OF enabled, timezone ON reminder
            FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled
                               OR OLD.timezone IS DISTINCT FROM NEW.timezone)
            EXECUTE FUNCTION reminder_tally_count()"""),
        ("""CREATE TRIGGER user_tally_insert AFTER INSERT ON telegram_user BEGIN
            UPDATE user_tally SET n = n + 1 WHERE id = 1;
         END""",
         """CREATE FUNCTION user_tally_count() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
            UPDATE user_tally SET n = n + CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END
                WHERE id = 1;
            RETURN NULL;
         END $$"""),
        ("""CREATE TRIGGER user_tally_delete AFTER DELETE ON telegram_user BEGIN
            UPDATE user_tally SET n = n - 1 WHERE id = 1;
         END""",
         """CREATE TRIGGER user_tally_insert_delete AFTER INSERT OR DELETE ON telegram_user
            FOR EACH ROW EXECUTE FUNCTION user_tally_count()"""),
        # buzzbotd_last_post_timestamp_seconds: the newest posted row, not a scan of years.
        "CREATE INDEX post_posted ON post (state, updated_at)",
        # It served only the per-timezone count reminder_tally now keeps.
        "DROP INDEX reminder_zone",
    ]),
    # /alert and /currency. Evaluating a price change is one indexed range query per
    # side (price_alert_up, price_alert_down), however many alerts there are.
    ("price alerts, their outbox, and each user's currency", [
        "ALTER TABLE telegram_user ADD COLUMN currency TEXT",
        """CREATE TABLE price_alert (
            id {id},
            owner_id {bigint} NOT NULL,
            chat_id {bigint} NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('above', 'below', 'move')),
            currency TEXT NOT NULL,
            level {float} NOT NULL,
            repeats {bool} NOT NULL DEFAULT {false},
            reference {float},
            state TEXT NOT NULL CHECK (state IN ('armed', 'rearming', 'fired')),
            up_level {float},
            down_level {float},
            enabled {bool} NOT NULL DEFAULT {true},
            created_at TEXT NOT NULL,
            fired_at TEXT)""",
        "CREATE INDEX price_alert_owner ON price_alert (owner_id)",
        "CREATE INDEX price_alert_up ON price_alert (currency, up_level) WHERE enabled = {true}",
        "CREATE INDEX price_alert_down ON price_alert (currency, down_level) "
        "WHERE enabled = {true}",
        """CREATE TABLE alert_message (
            id {id},
            alert_id {bigint} NOT NULL,
            chat_id {bigint} NOT NULL,
            kind TEXT NOT NULL,
            currency TEXT NOT NULL,
            level {float} NOT NULL,
            reference {float},
            price {float} NOT NULL,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            outcome TEXT)""",
        "CREATE INDEX alert_message_pending ON alert_message (id) WHERE sent_at IS NULL",
    ]),
    # Debian 13 moved the legacy zone names (US/Eastern, GB, Zulu, …) to
    # tzdata-legacy: a stored one could not be loaded at all there. Each is
    # rewritten to its current name, in this one transaction (the tally
    # triggers move the counts along). Etc/GMT+5 is UTC-05:00 (POSIX's sign) and
    # is stored as that offset. The instant of the last send is kept from now on
    # (reminders.store: a new zone counts it, not a date of the old zone).
    ("current zone names; the instant of a reminder's last send", [
        "ALTER TABLE reminder ADD COLUMN last_sent_at TEXT",
        # One scan of each table: a CASE over every renamed name.
        *(f"UPDATE {table} SET timezone = CASE timezone {_RENAMES} END "
          f"WHERE timezone IN ({', '.join(repr(name) for name in _RENAMED)})"
          for table in ("telegram_user", "reminder")),
    ]),
    # /remind 08:30 mon-fri: the weekdays a reminder is sent on, as bits (Monday = 1,
    # Sunday = 64), local to its zone; 127 = every day, as every reminder was.
    ("weekday reminders", [
        "ALTER TABLE reminder ADD COLUMN days INTEGER NOT NULL DEFAULT 127 "
        "CHECK (days BETWEEN 1 AND 127)",
    ]),
    # Issue 23: a slot is posted to several networks, each with its own row (and
    # its own exactly-once): unique per (slot_key, network), X's rows keep 'x'.
    # `unknown` is final: a network that cannot be asked (a Telegram channel) and
    # whose answer was lost. `url` is where a person sees the post.
    # SQLite cannot drop an inline UNIQUE or CHECK: both tables are rebuilt here,
    # in the migration's transaction, in an order that foreign_keys=1 allows
    # (dropping `post` first would cascade-delete the events): the new event
    # table references the new post table, and the renames rewrite that reference.
    ("a ledger row per slot and network", [
        ('''CREATE TABLE post_new (
            id INTEGER PRIMARY KEY NOT NULL,
            slot_key TEXT NOT NULL,
            network TEXT NOT NULL DEFAULT 'x',
            kind TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual')),
            due_at TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('claimed', 'sending', 'posted', 'failed',
                                                 'skipped', 'unknown')),
            text TEXT,
            tweet_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            price REAL,
            url TEXT,
            UNIQUE (slot_key, network))''',
         "ALTER TABLE post ADD COLUMN network TEXT NOT NULL DEFAULT 'x'"),
        ('''CREATE TABLE post_event_new (
            id INTEGER PRIMARY KEY NOT NULL,
            post_id INTEGER NOT NULL REFERENCES post_new (id) ON DELETE CASCADE,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            detail TEXT)''',
         "ALTER TABLE post ADD COLUMN url TEXT"),
        ('''INSERT INTO post_new (id, slot_key, kind, due_at, state, text, tweet_id, attempts,
                                  reason, created_at, updated_at, price)
            SELECT id, slot_key, kind, due_at, state, text, tweet_id, attempts, reason,
                   created_at, updated_at, price FROM post''',
         "ALTER TABLE post DROP CONSTRAINT post_slot_key_key"),
        ('''INSERT INTO post_event_new (id, post_id, at, event, detail)
            SELECT id, post_id, at, event, detail FROM post_event''',
         "ALTER TABLE post ADD CONSTRAINT post_slot_key_network_key UNIQUE (slot_key, network)"),
        ("DROP TABLE post_event", "ALTER TABLE post DROP CONSTRAINT post_state_check"),
        ("DROP TABLE post",
         '''ALTER TABLE post ADD CONSTRAINT post_state_check CHECK (state IN ('claimed',
            'sending', 'posted', 'failed', 'skipped', 'unknown'))'''),
        ("ALTER TABLE post_new RENAME TO post", "SELECT 1"),
        ("ALTER TABLE post_event_new RENAME TO post_event", "SELECT 1"),
        ("CREATE INDEX post_due_at ON post (due_at)", "SELECT 1"),
        ("CREATE INDEX post_posted ON post (state, updated_at)", "SELECT 1"),
        ("CREATE INDEX post_event_post_id ON post_event (post_id)", "SELECT 1"),
    ]),
]
