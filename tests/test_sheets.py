"""The Google Sheets sync: the real gspread and google-auth against the fake
Sheets API and token endpoint (tests/fakes/sheets.py), which checks the JWT's
RS256 signature with the test key's public half."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from buzzbotd import config
from buzzbotd.db import Post, SqliteOwner
from buzzbotd.db.models import Reminder, TelegramUser
from buzzbotd.ops import status
from buzzbotd.sheets.sync import SheetsSync
from tests.fakes.base import Fault
from tests.fakes.sheets import (
    RATE_LIMITED,
    SPREADSHEET_ID,
    FakeSheets,
    ServiceAccountKey,
    make_key,
)
from tests.support import REPO, write_config
from tests.support.cli import buzzbotd_process
from tests.support.sheets_world import expected_sheet, sheets_config, start_fake

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
TABLES = ("users", "reminders", "posts")


def fill() -> None:
    """Users in a private chat and a group (negative 13-digit chat id), reminders on
    and off, posts with NULLs, a comma, a quote and a leading '='."""
    alice = TelegramUser.create(id=1_234_567_890, chat_id=1_234_567_890,
                                timezone="Europe/Berlin", created_at=NOW, updated_at=NOW)
    group = TelegramUser.create(id=42, chat_id=-1_001_234_567_890, timezone="+05:30",
                                blocked=True, created_at=NOW, updated_at=NOW)
    for user, local, enabled in ((alice, "08:00", True), (alice, "21:30", False),
                                 (group, "07:15", True)):
        Reminder.create(user=user, chat_id=user.chat_id, local_time=local,
                        timezone=user.timezone, next_due_at=NOW + timedelta(hours=1),
                        enabled=enabled, created_at=NOW)
    Post.create(slot_key="2026-11-22T08:00:00Z", kind="scheduled", due_at=NOW, state="posted",
                text='BTC $67,890.12 (+1.2%) "up"', tweet_id="1800000000000000001",
                attempts=1, created_at=NOW, updated_at=NOW)
    Post.create(slot_key="manual-2026-11-22T09:00:00Z", kind="manual", due_at=NOW,
                state="failed", text="=HYPERLINK(\"x\")", reason="price API: 503",
                attempts=3, created_at=NOW, updated_at=NOW)


def many() -> None:
    """12,000 users with a reminder each: ~1.4 MB of reminder rows."""
    users = range(10_000_000, 10_012_000)
    TelegramUser.insert_many([{"id": u, "chat_id": u, "timezone": "UTC", "created_at": NOW,
                               "updated_at": NOW} for u in users]).execute()
    Reminder.insert_many([{"user": u, "chat_id": u, "local_time": "08:00", "timezone": "UTC",
                           "next_due_at": NOW, "created_at": NOW} for u in users]).execute()


def change() -> None:
    """Fewer reminders, one more user, a post that moved on."""
    Reminder.delete().where(Reminder.local_time == "21:30").execute()
    TelegramUser.create(id=7, chat_id=7, timezone="UTC", created_at=NOW, updated_at=NOW)
    Post.update(state="posted", tweet_id="1800000000000000002", reason=None) \
        .where(Post.kind == "manual").execute()


class World:
    def __init__(self, directory: Path) -> None:
        self.fake, self.key = start_fake(directory / "keys")
        self.settings = config.load(sheets_config(directory, self.fake, self.key))
        self.database = self.settings.daemon.database
        self.database.parent.mkdir(parents=True)
        self.owner = SqliteOwner(self.database)
        self.owner.start()

    def sync(self, backoff_first_s: float = 1.0) -> tuple[bool, SheetsSync]:
        job = SheetsSync(self.settings, self.owner)
        job.http.backoff_first_s = backoff_first_s
        return job.run(), job

    def report(self) -> dict:
        return self.owner.call(status.collect, self.settings, datetime.now(UTC))

    def close(self) -> None:
        self.owner.stop()
        self.fake.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with closing(World(tmp_path)) as world:
        yield world


def test_sync_writes_exactly_the_database_rows(world: World) -> None:
    world.owner.call(fill)
    ok, job = world.sync()
    assert ok
    for table in TABLES:
        assert world.fake.values(table) == expected_sheet(world.database, table), table
        sheet = world.fake.sheet(table)
        assert sheet is not None and sheet.rows == len(expected_sheet(world.database, table))
    # Spot checks of the encoding: ids as text, booleans, NULL as empty, RAW text.
    users = world.fake.values("users")
    assert users[1][:4] == ["42", "-1001234567890", "+05:30", True]
    posts = world.fake.values("posts")
    assert posts[1][7] == "" and posts[2][6] == '=HYPERLINK("x")'
    assert all(r.query["valueInputOption"] == ["RAW"] for r in world.fake.calls("values.update"))
    # One token for the whole sync, granted to a correctly signed assertion.
    assert len(world.fake.grants) == 1
    assert world.fake.grants[0]["scope"] == "https://www.googleapis.com/auth/spreadsheets"
    # A first sync: open, list, one batch to add the three sheets, one write per sheet.
    assert [world.fake.route(r) for r in world.fake.requests if r.path != "/token"] == [
        "get", "get", "batchUpdate", "values.update", "values.update", "values.update"]
    report = world.report()["sheets"]
    assert report["last_ok_at"] and report["last_error"] is None


def test_second_sync_after_changes_replaces_the_rows(world: World) -> None:
    world.owner.call(fill)
    assert world.sync()[0]
    before = {t: world.fake.values(t) for t in TABLES}
    world.owner.call(change)
    world.fake.requests.clear()
    assert world.sync()[0]
    for table in TABLES:
        assert world.fake.values(table) == expected_sheet(world.database, table), table
    assert len(world.fake.values("reminders")) == len(before["reminders"]) - 1
    assert len(world.fake.values("users")) == len(before["users"]) + 1
    rows = [tuple(r) for r in world.fake.values("reminders")]
    assert len(rows) == len(set(rows)), "a row written twice"
    # The sheets exist now: one batch resizes the two grids that changed size.
    batches = world.fake.calls("batchUpdate")
    assert len(batches) == 1
    assert {r["updateSheetProperties"]["properties"]["gridProperties"]["rowCount"]
            for r in batches[0].json()["requests"]} == {3, 4}


def test_a_third_sync_with_no_change_rewrites_without_resizing(world: World) -> None:
    world.owner.call(fill)
    assert world.sync()[0] and world.sync()[0]
    world.fake.requests.clear()
    ok, job = world.sync()
    assert ok and not world.fake.calls("batchUpdate")
    assert len(world.fake.calls("values.update")) == 3
    for table in TABLES:
        assert world.fake.values(table) == expected_sheet(world.database, table)


def test_429_twice_then_success_waits_a_jittered_backoff(world: World) -> None:
    world.owner.call(fill)
    world.fake.add_fault("values.update", Fault.status_code(429, RATE_LIMITED), times=2)
    ok, job = world.sync(backoff_first_s=0.4)
    assert ok
    attempts = world.fake.calls("values.update")[:3]
    assert len(world.fake.calls("values.update")) == 5      # 2 refused + 3 sheets written
    first, second = (attempts[1].at - attempts[0].at, attempts[2].at - attempts[1].at)
    # Equal jitter: the n-th wait is in [step/2, step], step = 0.4 s * 2^(n-1).
    assert 0.2 <= first <= 0.4 + 0.3, first
    assert 0.4 <= second <= 0.8 + 0.3, second
    for table in TABLES:
        assert world.fake.values(table) == expected_sheet(world.database, table)


def test_backoff_is_jittered_and_capped() -> None:
    from buzzbotd.sheets.api import BACKOFF_MAX_S, QuotaClient
    client = QuotaClient(None, session=object())       # type: ignore[arg-type]
    waits = [client.backoff(1) for _ in range(200)]
    assert min(waits) >= 0.5 and max(waits) <= 1.0 and len(set(waits)) > 150
    assert all(BACKOFF_MAX_S / 2 <= client.backoff(20) <= BACKOFF_MAX_S for _ in range(50))
    assert client.backoff(1, retry_after="30") == 30


def test_429_without_end_fails_the_sync_after_bounded_attempts(world: World) -> None:
    world.owner.call(fill)
    world.fake.add_fault("values.update", Fault.status_code(429, RATE_LIMITED), times=100)
    ok, job = world.sync(backoff_first_s=0.02)
    assert not ok
    assert len(world.fake.calls("values.update")) == 6
    report = world.report()["sheets"]
    assert report["last_error"].startswith("Sheets API answered 429: Quota exceeded")
    assert "Sheets sync failing since" in status.status_line(world.report())


def test_token_endpoint_down_is_an_error_in_status(world: World) -> None:
    world.owner.call(fill)
    world.fake.token_down = True
    ok, job = world.sync()
    assert not ok
    assert not world.fake.calls("values.update")
    report = world.report()
    assert report["sheets"]["last_error"].startswith(
        f"cannot get an access token from {world.fake.token_uri}")
    assert report["sheets"]["failing_since"]
    line = status.status_line(report)
    assert "Sheets sync failing since" in line and "access token" in line
    assert "FAILING since" in status.render(report, pid=None)
    # Back up: the next sync succeeds and the error is gone from status.
    world.fake.token_down = False
    assert world.sync()[0]
    report = world.report()
    assert report["sheets"]["last_error"] is None and report["sheets"]["failing_since"] is None
    assert "Sheets" not in status.status_line(report)


def test_a_key_whose_signature_does_not_verify_gets_no_token(world: World,
                                                             tmp_path: Path) -> None:
    """The fake checks the assertion against the public half it knows: a JWT
    signed by another key (a broken signing path) is refused."""
    other = make_key(tmp_path / "other", world.fake.token_uri)
    world.fake.public_key = other.public
    ok, job = world.sync()
    assert not ok and world.fake.grants == []
    error = world.report()["sheets"]["last_error"]
    assert "invalid_grant" in error and "Invalid JWT Signature" in error
    assert world.key.private_pem.splitlines()[1] not in error


def test_the_private_key_never_reaches_the_error(world: World) -> None:
    """Whatever fails, the error recorded and logged names no part of the key."""
    world.fake.token_down = True
    ok, job = world.sync()
    error = world.report()["sheets"]["last_error"]
    lines = [line for line in world.key.private_pem.splitlines() if "-----" not in line]
    assert not ok and not any(line in error for line in lines)
    assert world.settings.sheets.service_account.reveal() not in repr(world.settings)


def test_an_unknown_spreadsheet_is_reported(world: World, tmp_path: Path) -> None:
    world.fake.spreadsheet_id = "1SomeOtherSpreadsheetId_0000000000"
    ok, job = world.sync()
    assert not ok
    assert world.report()["sheets"]["last_error"] == (
        f"spreadsheet {world.settings.sheets.spreadsheet_id} not found (404); check "
        "sheets.spreadsheet_id and share the spreadsheet with "
        "buzzbotd@test-project.iam.gserviceaccount.com")


def test_key_from_the_credentials_directory_wins(tmp_path: Path) -> None:
    fake: FakeSheets
    fake, key = start_fake(tmp_path / "keys")
    try:
        path = sheets_config(tmp_path, fake, key)
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        info = json.loads(key.path.read_text()) | {"client_email": "from-credential@x.test"}
        (credentials / "sheets_service_account").write_text(json.dumps(info))
        settings = config.load(path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
        assert settings.sheets.service_account.source == str(
            credentials / "sheets_service_account")
        assert json.loads(settings.sheets.service_account.reveal())["client_email"] == \
            "from-credential@x.test"
        assert key.private_pem.splitlines()[1] in settings.secrets()
    finally:
        fake.stop()


# -- configuration errors: exit 78 naming the key, never showing the key --------

def _config_with_key(tmp_path: Path, key_text: str | None, **sheets: object) -> Path:
    key_file = tmp_path / "key.json"
    if key_text is not None:
        key_file.write_text(key_text)
    return write_config(tmp_path, sheets={"enabled": True, "spreadsheet_id": SPREADSHEET_ID,
                                          "service_account_file": str(key_file), **sheets})


@pytest.fixture(scope="module")
def real_key(tmp_path_factory: pytest.TempPathFactory) -> ServiceAccountKey:
    return make_key(tmp_path_factory.mktemp("key"), "https://oauth2.googleapis.com/token")


def _broken_keys(key: ServiceAccountKey) -> dict[str, tuple[str | None, str]]:
    info = dict(key.info)
    no_email = {k: v for k, v in info.items() if k != "client_email"}
    return {
        "missing file": (None, "sheets.service_account_file = \"{dir}/key.json\": cannot read "
                               "{dir}/key.json: No such file or directory"),
        "malformed JSON": (json.dumps(info)[:-40],
                           "key.json is not valid JSON (Expecting "),
        "not an object": (json.dumps([info]), "expected a JSON object"),
        "no client_email": (json.dumps(no_email), "key.json has no client_email; expected a "
                                                  "service account key"),
        "private_key not PEM": (json.dumps(info | {"private_key": "MIIEv" + "A" * 80}),
                                "private_key is not a PEM private key (value not shown)"),
        "bad token_uri": (json.dumps(info | {"token_uri": "oauth2.googleapis.com/token"}),
                          'token_uri = "oauth2.googleapis.com/token": expected an http://'),
    }


@pytest.mark.parametrize("case", ["missing file", "malformed JSON", "not an object",
                                  "no client_email", "private_key not PEM", "bad token_uri"])
def test_a_broken_key_file_is_exit_78_naming_the_key(short_tmp_path: Path, real_key, case: str
                                                     ) -> None:
    text, expected = _broken_keys(real_key)[case]
    out = buzzbotd_process("check-config", "--config",
                           str(_config_with_key(short_tmp_path, text)))
    assert out.returncode == 78, out.stderr
    assert expected.format(dir=short_tmp_path) in out.stderr
    assert "sheets.service_account_file" in out.stderr and "Traceback" not in out.stderr
    secret_lines = [line for line in real_key.private_pem.splitlines() if "-----" not in line]
    assert not any(line[:20] in out.stderr + out.stdout for line in secret_lines)
    assert "MIIEvAAAA" not in out.stderr


@pytest.mark.parametrize(("value", "expected"), [
    ("", 'sheets.spreadsheet_id = "": expected the spreadsheet\'s id'),
    ("abc", 'sheets.spreadsheet_id = "abc": expected the spreadsheet\'s id'),
    (f"https://docs.google.com/spreadsheets/d/{SPREADSHEET_ID}/edit#gid=0",
     f'its id is "{SPREADSHEET_ID}"'),
])
def test_a_bad_spreadsheet_id_is_exit_78(tmp_path: Path, real_key, value: str,
                                         expected: str) -> None:
    path = _config_with_key(tmp_path, json.dumps(real_key.info), spreadsheet_id=value)
    out = buzzbotd_process("check-config", "--config", str(path))
    assert out.returncode == 78 and expected in out.stderr, out.stderr


def test_no_key_at_all_is_exit_78(tmp_path: Path) -> None:
    path = write_config(tmp_path, sheets={"enabled": True, "spreadsheet_id": SPREADSHEET_ID})
    out = buzzbotd_process("check-config", "--config", str(path))
    assert out.returncode == 78
    assert "sheets.service_account_file: is empty; expected the path of a Google service " \
           "account key (JSON), or the credential $CREDENTIALS_DIRECTORY/sheets_service_account" \
           in out.stderr


def test_a_key_google_auth_cannot_read_stops_run_with_78_and_no_key_in_the_journal(
        tmp_path: Path, real_key) -> None:
    """It looks like a PEM key (config passes) but is not one: `run` exits 78
    before READY, and the journal shows no part of it."""
    lines = real_key.private_pem.splitlines()
    garbled = "\n".join([lines[0], *(line[::-1] for line in lines[1:-1]), lines[-1]])
    path = _config_with_key(tmp_path, json.dumps(real_key.info | {"private_key": garbled}))
    out = buzzbotd_process("run", "--config", str(path))
    assert out.returncode == 78, out.stderr
    assert "sheets.service_account_file" in out.stderr
    assert "private_key is not an RSA private key google-auth can read (value not shown)" \
        in out.stderr
    assert not any(line[:20] in out.stderr for line in garbled.splitlines()[1:-1])
    assert "Traceback" not in out.stderr


def test_sheets_off_needs_no_key_and_imports_no_google(tmp_path: Path) -> None:
    path = write_config(tmp_path, sheets={"enabled": False})
    assert buzzbotd_process("check-config", "--config", str(path)).returncode == 0
    code = ("import sys; from buzzbotd import config, daemon; "
            f"daemon.Daemon(config.load({str(path)!r}))._build_parts(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('gspread', 'google', 'rsa', 'pyasn1')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


# -- the real daemon: a failing sync shows, and blocks nothing ------------------

def test_token_endpoint_down_in_the_daemon_posting_and_the_bot_unaffected(
        tmp_path: Path, notify, spawn) -> None:
    from buzzbotd.timeofday import slot_key
    from tests.fakes.price import FakePrice
    from tests.fakes.telegram import TOKEN, FakeTelegram
    from tests.fakes.x import CREDENTIALS, FakeX
    from tests.support.x_world import (
        TEMPLATE,
        SlotClock,
        expected_text,
        hhmmss,
        status_json,
        wait_final,
    )

    sheets, key = start_fake(tmp_path / "keys")
    sheets.token_down = True
    x, price, telegram = FakeX().start(), FakePrice(67890.12, -1.23).start(), \
        FakeTelegram().start()
    try:
        clock = SlotClock(tmp_path, x)
        due = clock.due
        config = sheets_config(
            tmp_path, sheets, key, interval_s=30,
            price={"url": price.endpoint, "timeout_s": 2},
            x={"enabled": True, "api_base": x.url, "times": [hhmmss(due)], "timezone": "UTC",
               "template": TEMPLATE, **CREDENTIALS},
            telegram={"enabled": True, "api_base": telegram.url, "token": TOKEN,
                      "admin_ids": [1000]})
        daemon = spawn(config, notify, **clock.daemon_args(TZ="Europe/Berlin"))
        notify.wait_message("READY=1", timeout=30)
        failed = daemon.wait_log("sheets: sync of spreadsheet", timeout=30)
        assert "failed: cannot get an access token from " + sheets.token_uri in failed
        # At once, not at the next 30 s refresh of STATUS=.
        notify.wait_for(lambda m: m.startswith("STATUS=") and "Sheets sync failing" in m,
                        timeout=5)
        # The bot answers and the slot is posted while the sync keeps failing.
        assert "67,890.12" in telegram.ask(user_id=555, text="/price", contains="67,890")
        clock.arrive(daemon)
        assert ": posted: tweet " in wait_final(daemon, slot_key(due), timeout=30)
        assert x.texts() == [expected_text(67890.12, -1.23, due)]
        report = status_json(config)["sheets"]
        assert report["last_error"].startswith("cannot get an access token")
        assert report["last_ok_at"] is None and report["failing_since"]
        assert not sheets.calls("values.update")
        # export reads the same database while the daemon runs.
        out = subprocess.run([sys.executable, "-m", "buzzbotd", "export", "posts",
                              "--format", "json", "--config", str(config)],
                             capture_output=True, text=True, cwd=REPO, timeout=30)
        assert [p["tweet_id"] for p in json.loads(out.stdout)] == [x.tweets[0].id]
        secret_lines = [line for line in key.private_pem.splitlines() if "-----" not in line]
        assert not any(line[:20] in daemon.log for line in secret_lines)
        assert daemon.terminate() == 0
    finally:
        for fake in (sheets, x, price, telegram):
            fake.stop()


def test_the_status_line_stays_latin_1_for_sdnotify() -> None:
    """sdnotify encodes STATUS= as Latin-1 and silently drops what it cannot encode."""
    report = {"health": {}, "x": {"enabled": False}, "telegram": {"enabled": False},
              "sheets": {"enabled": True, "failing_since": "2026-11-22T09:30:00Z",
                         "last_error": "Sheets API answered 400: Ung\u00fcltig \u2192 " + "x" * 99}}
    line = status.status_line(report)
    line.encode("latin-1")
    assert "Sheets sync failing since 2026-11-22T09:30:00Z: Sheets API answered 400: " \
           "Ung\u00fcltig ?" in line and line.endswith("...")


def test_a_big_table_is_written_in_parts_under_the_size_limit(world: World, monkeypatch
                                                              ) -> None:
    """Google refuses a request over 10 MB: past MAX_BODY_BYTES a sheet's rows go
    in several values.update requests, each at its own start row, none twice."""
    import buzzbotd.sheets.sync
    monkeypatch.setattr(buzzbotd.sheets.sync, "MAX_BODY_BYTES", 300_000)
    world.owner.call(many)
    assert world.sync()[0]
    updates = [r for r in world.fake.calls("values.update") if "reminders" in r.path]
    assert len(updates) >= 3 and all(len(r.body) < 300_000 + 1_500_000 for r in updates)
    starts = [r.json()["range"] for r in updates]
    assert starts[0] == "'reminders'!A1" and len(set(starts)) == len(starts)
    for table in TABLES:
        assert world.fake.values(table) == expected_sheet(world.database, table), table
    assert len(world.fake.values("reminders")) == 12_001


def _during_the_first_write(world: World, what: Callable[[], None]) -> None:
    """`what` runs in the database after the fake has stored the sync's first
    values.update (the first part of `users`) and before the sync gets the answer."""
    world.fake.add_fault("values.update", Fault.status_code(
        200, {"spreadsheetId": SPREADSHEET_ID}, after=True,
        on_hit=lambda request: world.owner.call(what)))


def test_rows_added_and_removed_during_the_sync_are_in_the_sheet(world: World) -> None:
    """The sync counts the rows, sizes the grids, then reads and sends page by page:
    a table that changed in between has its grid grown or shrunk, and every sheet
    ends up holding exactly the database's rows."""
    world.owner.call(fill)
    assert world.sync()[0]
    world.fake.requests.clear()

    def meanwhile() -> None:
        Reminder.delete().where(Reminder.local_time == "21:30").execute()
        for minute in ("10", "11"):
            Post.create(slot_key=f"2026-11-22T10:{minute}:00Z", kind="manual", due_at=NOW,
                        state="posted", text="BTC $1", attempts=1, created_at=NOW,
                        updated_at=NOW)

    _during_the_first_write(world, meanwhile)
    assert world.sync()[0]
    for table in TABLES:
        expected = expected_sheet(world.database, table)
        assert world.fake.values(table) == expected, table
        assert world.fake.sheet(table).rows == len(expected), table
    # Nothing had changed size at the count: no batch before the writes, then
    # reminders shrunk after they were sent and posts grown before they were.
    assert [world.fake.route(r) for r in world.fake.requests if r.path != "/token"] == [
        "get", "get", "values.update", "values.update", "batchUpdate", "batchUpdate",
        "values.update"]


def test_a_big_table_is_sent_part_by_part_as_it_is_read(world: World, monkeypatch) -> None:
    """The first part of `users` is sent before its last page is read: a user who
    arrives meanwhile (largest id: the last page) is in the sheet, its grid grown."""
    import buzzbotd.sheets.sync
    monkeypatch.setattr(buzzbotd.sheets.sync, "MAX_BODY_BYTES", 300_000)
    world.owner.call(many)
    _during_the_first_write(world, lambda: TelegramUser.create(
        id=99_000_000, chat_id=99_000_000, timezone="UTC", created_at=NOW, updated_at=NOW))
    assert world.sync()[0]
    users = world.fake.values("users")
    assert users[-1][0] == "99000000" and len(users) == 12_002
    assert world.fake.sheet("users").rows == 12_002
    for table in TABLES:
        assert world.fake.values(table) == expected_sheet(world.database, table), table
