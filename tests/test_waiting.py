"""tests/support/waiting.py: a wait returns what it waited for, or fails naming it."""

from __future__ import annotations

import threading

import pytest

from tests.support import wait_until
from tests.support.waiting import wait_on


def test_wait_until_returns_the_first_truthy_value_or_names_what_never_came() -> None:
    calls = []
    assert wait_until(lambda: calls.append(1) or (len(calls) >= 3 and calls), 5, "three") \
        == [1, 1, 1]
    with pytest.raises(AssertionError, match=r"^the moon \(2 asked\): not within 0.05 s$"):
        wait_until(lambda: None, 0.05, lambda: f"the moon ({len(calls) - 1} asked)")


def test_wait_on_wakes_on_notify_and_stops_early_when_nothing_more_can_come() -> None:
    changed, box = threading.Condition(), []

    def put() -> None:
        with changed:
            box.append("it")
            changed.notify_all()
    timer = threading.Timer(0.05, put)
    timer.name = "test-put"
    timer.start()
    assert wait_on(changed, lambda: box[0] if box else None, 5, lambda: "nothing") == "it"
    with pytest.raises(AssertionError, match="^gone$"):
        wait_on(changed, lambda: None, 60, lambda: "gone", ended=lambda: True)
