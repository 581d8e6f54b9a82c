"""The pause flag and its interval: a slot that passed while paused stays skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from buzzbotd.db import meta

T0 = datetime(2026, 11, 22, 7, 55, tzinfo=UTC)


def test_pause_interval_survives_resume(make_owner) -> None:
    owner = make_owner()
    owner.start()
    try:
        minute = timedelta(minutes=1)
        assert owner.call(meta.paused_at, T0) is False
        owner.call(meta.set_paused, True, T0)
        owner.call(meta.set_paused, True, T0 + 2 * minute)     # again: keeps the start
        assert owner.call(meta.paused) is True
        assert owner.call(meta.paused_at, T0 - 60 * minute) is True   # paused now: no posts
        owner.call(meta.set_paused, False, T0 + 10 * minute)
        assert owner.call(meta.paused) is False
        assert owner.call(meta.paused_at, T0 + 5 * minute) is True    # the 08:00 slot
        assert owner.call(meta.paused_at, T0 - minute) is False
        assert owner.call(meta.paused_at, T0 + 11 * minute) is False
    finally:
        owner.stop()
