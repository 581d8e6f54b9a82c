"""The generic driver of a network other than X: one ledger row per slot, driven
through a NetworkClient (outcome.py: post, settle) to a final state.

    claimed ─▶ sending (committed before the request) ─▶ post() ─▶ Posted    → posted
                                                              ├─▶ NotSent   → claimed, retried
                                                              │   (retry.wait_s, or the
                                                              │   network's not_before) within
                                                              │   the slot's window
                                                              ├─▶ Unknown   → stays sending:
                                                              │   settle() before any retry
                                                              └─▶ Failed    → failed, naming
                                                                  the config key (alerts)

A row found `sending` (an unknown outcome, or a crash mid-request) is settled
first: Posted, NotSent (then posted again: the network's own key makes that
safe), or Unknown (asked again after a wait; failed, its outcome unknown, at
the end of the window, as X's). A client that cannot settle (`settles = False`: a Telegram channel,
whose history a bot cannot read) never posts twice: its unknown outcome is
final at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from buzzbotd import retry, timeofday
from buzzbotd.clock import Clock
from buzzbotd.config import Settings
from buzzbotd.db import DatabaseOwner
from buzzbotd.db.models import Post
from buzzbotd.posting import ledger
from buzzbotd.posting.outcome import Failed, NetworkClient, NotSent, Outcome, Posted
from buzzbotd.posting.runner import Quotes, SlotRunner

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class NetworkDriver(SlotRunner):
    def __init__(self, client: NetworkClient, settings: Settings, owner: DatabaseOwner,
                 quotes: Quotes, clock: Clock) -> None:
        self.network = client.network
        super().__init__(settings, owner, quotes, clock)
        self.client = client
        self.settles = getattr(client, "settles", True)
        self.log = logging.getLogger(f"buzzbotd.{self.network}")

    def _drive_row(self, post: Post, kind: str, due: datetime) -> Post:
        deadline = due + self.grace
        failures = 0
        while post.state not in ledger.FINAL and not self._stop.is_set():
            retry_at = None
            if post.state == "sending":
                if not self.settles:
                    return self._finish(post, "unknown", f"{post.reason or 'no answer'}; "
                                        f"{self.network} cannot be read back, so it is never "
                                        "posted again (at most one post)")
                post, retry_at = self._settle(post)
                if post.state == "sending" and self.clock() >= deadline:
                    # As X's: a failure (which alerts); `unknown` is for what cannot be read.
                    post = self._finish(post, "failed", "outcome unknown at the end of the "
                                        f"slot's window ({post.reason})")
            else:
                post, text, price = self._ready(post, kind, due, self._gave_up)
                if text is not None:
                    # Committed (and fsync'd) before the request: a crash after it is an
                    # unknown outcome, settled at the next start.
                    post = self.owner.call(ledger.sending, post, text, self.clock(), price)
                    post, retry_at = self._take(post, self.client.post(post.slot_key, text),
                                                deadline)
            if post.state not in ledger.FINAL:
                failures += 1
                wait = retry.wait_s(failures, RETRY_FIRST_S, RETRY_MAX_S)
                self._wait_until(retry_at or self.clock() + timedelta(seconds=wait), deadline)
        return post

    @staticmethod
    def _gave_up(post: Post) -> str:
        return "gave up at the end of the slot's window" + (
            f" ({post.reason})" if post.reason else "")

    def _settle(self, post: Post) -> tuple[Post, datetime | None]:
        """A row in `sending`: does its post exist?"""
        first = self.owner.call(ledger.first_sending_at, post) or post.updated_at
        found = self.client.settle(post.slot_key, post.text or "", first)
        if isinstance(found, NotSent):
            return self.owner.call(ledger.not_sent, post, f"{found.reason}: the earlier "
                                   "attempt did not post", self.clock()), found.not_before
        return self._take(post, found, post.due_at + self.grace)

    def _take(self, post: Post, result: Outcome, deadline: datetime
              ) -> tuple[Post, datetime | None]:
        """The row after one request's outcome, and when to try again (a reset)."""
        now = self.clock()
        if isinstance(result, Posted):
            return self.owner.call(ledger.posted, post, result.id or None, result.how, now,
                                   result.url or None), None
        if isinstance(result, Failed):
            named = f" (check {result.config_key})" if result.config_key else ""
            return self._finish(post, "failed", f"{result.reason}{named}"), None
        if isinstance(result, NotSent):
            if result.not_before and result.not_before > deadline:
                return self._finish(post, "failed", f"{result.reason}; {self.network}'s reset "
                                    f"{timeofday.slot_key(result.not_before)} is after the "
                                    "slot's window"), None
            if post.state == "sending":
                post = self.owner.call(ledger.not_sent, post, result.reason, now)
            return post, result.not_before
        if not self.settles:
            return self._finish(post, "unknown", f"{result.reason}; {self.network} cannot be "
                                "read back, so it is never posted again (at most one post)"), None
        return self.owner.call(ledger.note, post, "unknown", f"{result.reason}; settling "
                               "before any retry", now), None
