"""The X ledger: the database's record of every slot, which makes a tweet
happen at most once per slot.

A slot's row moves through these states:

    claimed ──▶ sending ──▶ posted
       ▲           │
       └───────────┘ (the request surely did not reach X: 5xx, 429, refused)
    claimed/sending ──▶ failed | skipped

`claimed`: the slot is ours and nothing is in flight; a POST may be sent.
`sending`: a POST with `text` may have reached X. A row found in this state
(after a timeout, a dropped connection, or a crash) is an unknown outcome
and must be settled — found on X, or proven absent — before any new POST.

Every function here runs inside the database owner; each change writes a
PostEvent row and, once it is committed, one journal line naming the slot key.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from buzzbotd.db import after_commit
from buzzbotd.db.models import Post, PostEvent
from buzzbotd.metrics import METRICS

log = logging.getLogger("buzzbotd.x")
FINAL = ("posted", "failed", "skipped")


def claim(key: str, kind: str, due: datetime, now: datetime) -> Post:
    """The slot's row: claimed now if nobody has it, else as it stands."""
    post = Post.get_or_none(Post.slot_key == key)
    if post is None:
        post = Post.create(slot_key=key, kind=kind, due_at=due, state="claimed",
                           created_at=now, updated_at=now)
        _event(post, now, "claimed", None, logging.INFO)
    return post


def get(key: str) -> Post | None:
    return Post.get_or_none(Post.slot_key == key)


def sending(key: str, text: str, now: datetime, price: float | None = None) -> Post:
    """About to POST `text`: from here on the outcome is unknown until settled."""
    post = Post.get(Post.slot_key == key)
    post.state, post.text, post.updated_at = "sending", text, now
    post.price = price if price is not None else post.price
    post.attempts += 1
    post.save()
    _event(post, now, "sending", f"attempt {post.attempts}", logging.INFO)
    return post


def not_sent(key: str, reason: str, now: datetime) -> Post:
    """The request surely did not create a tweet (5xx, 429, connection refused)."""
    post = Post.get(Post.slot_key == key)
    post.state, post.reason, post.updated_at = "claimed", reason, now
    post.save()
    _event(post, now, "retry", reason, logging.WARNING)
    return post


def note(key: str, event: str, detail: str, now: datetime, level: int = logging.WARNING) -> None:
    """An event that does not change the state (a failed price fetch, a timeline read…)."""
    post = Post.get(Post.slot_key == key)
    post.reason, post.updated_at = detail, now
    post.save()
    _event(post, now, event, detail, level)


def posted(key: str, tweet_id: str | None, how: str, now: datetime) -> Post:
    post = Post.get(Post.slot_key == key)
    post.state, post.tweet_id, post.reason, post.updated_at = "posted", tweet_id, how, now
    post.save()
    _event(post, now, "posted", f"tweet {tweet_id or '(id unknown)'}: {how}", logging.INFO)
    after_commit(functools.partial(METRICS.slot_settled, key, post.kind, "posted", how,
                                   post.due_at, now))
    return post


def finish(key: str, state: str, reason: str, now: datetime) -> Post:
    """Marks the slot failed or skipped for good."""
    assert state in ("failed", "skipped")
    post = Post.get(Post.slot_key == key)
    post.state, post.reason, post.updated_at = state, reason, now
    post.save()
    _event(post, now, state, reason, logging.ERROR if state == "failed" else logging.WARNING)
    after_commit(functools.partial(METRICS.slot_settled, key, post.kind, state, reason,
                                   post.due_at, now))
    return post


def skip_missed(key: str, kind: str, due: datetime, reason: str, now: datetime) -> Post | None:
    """A slot whose window passed: skipped if nobody had claimed it, failed if
    it was left open. Returns the row if it changed."""
    post = claim(key, kind, due, now)
    if post.state in FINAL:
        return None
    if post.state == "claimed" and post.attempts == 0:
        return finish(key, "skipped", reason, now)
    return finish(key, "failed", f"window passed before it was settled ({post.reason})", now)


def final_keys(since: datetime) -> set[str]:
    """Keys of the slots due after `since` that are already settled."""
    return {key for (key,) in Post.select(Post.slot_key)
            .where((Post.due_at > since) & Post.state.in_(FINAL)).tuples()}


def open_rows(since: datetime) -> list[Post]:
    """Rows not yet final whose slot is due after `since` (e.g. a /tweet cut short)."""
    return list(Post.select().where(Post.state.not_in(FINAL) & (Post.due_at > since))
                .order_by(Post.due_at))


def _event(post: Post, now: datetime, event: str, detail: str | None, level: int) -> None:
    PostEvent.create(post=post, at=now, event=event, detail=detail)
    # The journal says what the database holds: the line goes out after the commit.
    after_commit(functools.partial(log.log, level, "slot %s: %s%s", post.slot_key, event,
                                   f": {detail}" if detail else ""))
