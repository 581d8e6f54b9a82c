"""Every slot on all four networks with the daemon a real process (issue 23): X,
Bluesky, Mastodon and a Telegram channel against their fakes; the channel's
lost answer and its refusal; kill -9 trials (tests/network_trials.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from buzzbotd.timeofday import slot_key
from tests.fakes import Fault
from tests.support import Daemon
from tests.support.telegram_world import ADMIN
from tests.support.x_world import hhmmss, slot_in
from tools.network_trials import CHANNEL, NETWORKS, Networks, run_trials, wait_settled


@pytest.fixture
def fakes() -> Iterator[Networks]:
    made = Networks()
    yield made
    made.stop()


def run_slot(tmp_path: Path, fakes: Networks) -> tuple[str, dict, Daemon, Path]:
    due = slot_in(6)
    key = slot_key(due)
    config = fakes.config(tmp_path, [hhmmss(due)])
    daemon = Daemon(config)
    rows = wait_settled(tmp_path / "state" / "buzzbotd.db", key, daemon, timeout=60)
    return key, rows, daemon, config


def test_a_slot_is_posted_once_on_each_of_the_four_networks(tmp_path: Path,
                                                           fakes: Networks) -> None:
    key, rows, daemon, _ = run_slot(tmp_path, fakes)
    try:
        assert {net: state for net, (state, _) in rows.items()} == dict.fromkeys(NETWORKS,
                                                                                   "posted")
        text = rows["x"][1]
        assert {text} == {t for _, t in rows.values()}
        assert fakes.posts_of(text) == dict.fromkeys(NETWORKS, 1)
        for network in NETWORKS[1:]:
            daemon.wait_log(f"slot {key} on {network}: posted", timeout=5)
        daemon.wait_log(f"slot {key}: posted: tweet ", timeout=5)
    finally:
        assert daemon.terminate() == 0, daemon.log


def test_a_lost_channel_answer_is_unknown_and_never_sent_again(tmp_path: Path,
                                                               fakes: Networks) -> None:
    fakes.telegram.add_fault("sendMessage", Fault.drop(after=True))
    key, rows, daemon, config = run_slot(tmp_path, fakes)
    try:
        assert rows["channel"][0] == "unknown"
        assert [rows[net][0] for net in ("x", "bluesky", "mastodon")] == ["posted"] * 3
        assert fakes.telegram.messages_to(CHANNEL) == [rows["channel"][1]]
        line = daemon.wait_log(f"slot {key} on channel: unknown", timeout=5)
        assert "never posted again" in line
    finally:
        assert daemon.terminate() == 0, daemon.log
    again = Daemon(config)                     # a restart neither settles nor resends it
    try:
        again.wait_log("ready: ", timeout=30)
        assert fakes.telegram.messages_to(CHANNEL) == [rows["channel"][1]]
    finally:
        assert again.terminate() == 0, again.log


def test_a_channel_the_bot_cannot_post_to_fails_naming_the_key(tmp_path: Path,
                                                               fakes: Networks) -> None:
    fakes.telegram.forget_chat(CHANNEL)
    key, rows, daemon, _ = run_slot(tmp_path, fakes)
    try:
        assert rows["channel"][0] == "failed"
        assert [rows[net][0] for net in ("x", "bluesky", "mastodon")] == ["posted"] * 3
        line = daemon.wait_log(f"slot {key} on channel: failed", timeout=5)
        assert "Chat not found" in line and "telegram.channel" in line, line
        assert fakes.telegram.messages_to(CHANNEL) == []
        alert = fakes.telegram.wait_for_message(ADMIN, "the Telegram channel", timeout=20)
        assert "telegram.channel" in alert.text
    finally:
        assert daemon.terminate() == 0, daemon.log


def test_kill_9_trials_with_all_four_networks(tmp_path: Path) -> None:
    result = run_trials(3, tmp_path, seed=23)
    for network in NETWORKS:
        posts = result[f"{network}_posts"]
        assert posts.get("with_2_or_more", 0) == 0, result
        if network != "channel":
            assert posts.get("with_0", 0) == 0, result
