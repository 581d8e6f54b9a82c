"""Alerts to admins: the windows and delays with an injected clock, a real database
owner for the mute list, and the real loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from buzzbotd.db import DatabaseOwner, SqliteOwner
from buzzbotd.ops import alerts
from buzzbotd.ops.health import Health
from tests.support import ManualClock


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[DatabaseOwner]:
    owner = SqliteOwner(tmp_path / "buzzbotd.db")
    owner.start()
    yield owner
    owner.stop()


def run(owner: DatabaseOwner, script, admins=frozenset({1, 2})) -> list[tuple[int, str]]:
    """Runs `script(alerts, metrics, clock, settle)` in a loop; returns what was sent."""
    sent: list[tuple[int, str]] = []

    async def send(chat: int, text: str) -> None:
        sent.append((chat, text))

    async def main() -> None:
        clock = ManualClock(1_800_000_000.0)
        metrics = Health(clock=clock)       # the conditions the alerts listen to
        a = alerts.Alerts(admins, owner, send, health=metrics)
        a.attach(asyncio.get_running_loop())

        async def settle() -> None:
            for _ in range(5):
                await asyncio.sleep(0.02)
            while a._tasks:
                await asyncio.gather(*a._tasks)

        await script(a, metrics, clock, settle)

    asyncio.run(main())
    return sent


def texts(sent: list[tuple[int, str]], admin: int = 1) -> list[str]:
    return [t for chat, t in sent if chat == admin]


def test_one_message_per_kind_per_window_and_one_resolved(owner) -> None:
    async def script(a, metrics, clock, settle) -> None:
        metrics.problem("x", "slot A failed: 403")
        await settle()
        clock.now += 120
        metrics.problem("x", "slot B failed: 403")          # within 10 min: nothing
        await settle()
        clock.now += 60
        metrics.clear("x")                                  # resolved
        await settle()
        clock.now += 60
        metrics.problem("x", "slot C failed: 403")          # 4 min after the first: nothing
        await settle()
        metrics.clear("x")                                  # nobody was told: nothing
        await settle()
        clock.now += alerts.WINDOW_S
        metrics.problem("x", "slot D failed: 403")          # a new window: told
        await settle()

    sent = texts(run(owner, script))
    assert len(sent) == 3, sent
    assert "slot A failed" in sent[0] and sent[0].startswith("⚠️")
    assert sent[1].startswith("✅ Resolved: X posting") and "3 min" in sent[1]
    assert "slot D failed" in sent[2]


def test_price_is_told_only_after_ten_minutes_of_failing(owner) -> None:
    async def script(a, metrics, clock, settle) -> None:
        metrics.problem("price", "HTTP 500 (after 3 attempts)")
        await settle()
        clock.now += alerts.PRICE_AFTER_S - 1
        a.check()
        await settle()
        assert not sent_so_far(a)
        clock.now += 1
        a.check()
        await settle()
        a.check()                                           # told once, not at each check
        await settle()
        metrics.clear("price")
        await settle()

    def sent_so_far(a) -> list:
        return [kind for kind in alerts.TITLES if a._window.since(kind) is not None]

    sent = texts(run(owner, script))
    assert len(sent) == 2, sent
    assert "the price API (for 10 min): HTTP 500" in sent[0]
    assert sent[1].startswith("✅ Resolved: the price API")


def test_a_409_expires_into_resolved(owner) -> None:
    async def script(a, metrics, clock, settle) -> None:
        metrics.problem("telegram", "409 Conflict", ttl_s=180)
        await settle()
        clock.now += 100
        metrics.problem("telegram", "409 Conflict", ttl_s=180)   # still going: extends
        await settle()
        clock.now += 150
        a.check()
        await settle()
        assert "telegram" in metrics.conditions
        clock.now += 31
        a.check()
        await settle()

    sent = texts(run(owner, script))
    assert len(sent) == 2 and "409 Conflict" in sent[0] and "Resolved" in sent[1], sent


def test_a_muted_admin_gets_nothing_until_unmuted(owner) -> None:
    owner.call(alerts.set_muted, 2, True)

    async def script(a, metrics, clock, settle) -> None:
        metrics.problem("database", "database locked by another process")
        await settle()
        await asyncio.wrap_future(owner.submit(alerts.set_muted, 2, False))
        metrics.clear("database")
        await settle()

    sent = run(owner, script)
    assert [c for c, _ in sent] == [1, 1, 2], sent
    assert owner.call(alerts.muted_admins) == set()


def test_unclean_stop_is_known_at_the_next_start(owner) -> None:
    assert owner.call(alerts.mark_running)[0] is False       # first run: nothing to say
    owner.call(alerts.mark_stopped)
    assert owner.call(alerts.mark_running)[0] is False       # after a clean stop
    assert owner.call(alerts.mark_running)[0] is True        # no stop between: a crash


def test_a_condition_back_within_the_window_of_its_resolved_is_told_once_the_window_passes(
        owner) -> None:
    async def script(a, metrics, clock, settle) -> None:
        metrics.problem("database", "database locked by another process")
        await settle()
        clock.now += 60
        metrics.clear("database")                               # resolved
        resolved_at = clock.now
        await settle()
        clock.now += 60
        metrics.problem("database", "database locked by another process")   # back: held
        await settle()
        while clock.now + alerts.CHECK_EVERY_S < resolved_at + alerts.WINDOW_S:
            clock.now += alerts.CHECK_EVERY_S
            a.check()                                           # still within the window
            await settle()
        assert "database" not in a._told                        # not told yet
        clock.now += alerts.CHECK_EVERY_S                       # the window has passed
        a.check()
        await settle()
        clock.now += alerts.CHECK_EVERY_S
        a.check()                                               # told once, not at each check
        await settle()
        metrics.clear("database")
        await settle()

    told = texts(run(owner, script))
    assert len(told) == 4, told
    assert told[2].startswith("⚠️ buzzbotd: the database") and "locked" in told[2], told
    assert told[3].startswith("✅ Resolved: the database"), told


def test_a_skip_of_the_admins_own_doing_is_told_to_no_one() -> None:
    """The ledger says which skip is the admins' own (a /pause): a structured flag,
    not a reading of the reason's words."""
    from datetime import UTC, datetime

    from buzzbotd.ops.metrics import Metrics
    health = Health(clock=ManualClock(1_800_000_000.0))
    metrics = Metrics(health=health)
    due = datetime(2026, 12, 7, 8, tzinfo=UTC)
    metrics.slot_settled("k1", "scheduled", "skipped", "whatever the words", due, due,
                         alert=False)
    assert health.conditions == {}
    metrics.slot_settled("k2", "scheduled", "skipped", "posting was paused", due, due)
    assert "x" in health.conditions
