"""The automatic markers (tests/support/marks.py) see what a test reaches: the fast
lane (`make test-fast`) must hold no test that starts a process or needs a tool."""

from __future__ import annotations

import pytest

from tests import test_config, test_http, test_scheduler
from tests.support.marks import PROCESS_NAMES, TOOLS, Reach, marks_for


def test_a_process_is_seen_through_the_helpers_a_test_calls() -> None:
    reach = Reach()
    names, _ = reach.of(test_config.test_the_process_exits_78_naming_the_key_without_a_traceback)
    assert names & PROCESS_NAMES          # via assert_… → buzzbotd_process → subprocess
    names, _ = reach.of(test_config.test_broken_config_exits_78_naming_the_key)
    assert not names & PROCESS_NAMES      # the CLI's entry in-process


def test_a_tool_is_seen_by_its_name() -> None:
    reach = Reach()
    page_test = test_http.test_the_page_in_headless_chromium_at_desktop_and_phone_widths
    _, strings = reach.of(page_test)
    # (the tool's name is not written here: this test would then need it too)
    assert [tool for tool in strings & TOOLS if tool in page_test.__name__]
    names, strings = reach.of(test_scheduler.test_the_thread_beats_while_idle_and_stops_promptly)
    assert not strings & TOOLS and not names & PROCESS_NAMES


def test_a_case_run_on_each_backend_is_marked_by_its_parameter(
        request: pytest.FixtureRequest, make_owner, backend: str) -> None:
    """make_owner names PostgresOwner for both cases; only the postgresql one needs it."""
    assert isinstance(request.node, pytest.Function)
    assert ("postgres" in marks_for(request.node, Reach())) == (backend == "postgresql")
