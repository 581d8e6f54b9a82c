"""The ledger: the database's record of every slot on every network, which
makes a post happen at most once per (slot, network).

Each (slot key, network) has its own row (X's rows are network "x"); one
network's row never waits for, nor moves, another's. A row moves only along
TRANSITIONS:

    (none) ──▶ claimed ──▶ sending ──▶ posted
                  ▲           │
                  └───────────┘ (the request surely did not reach X: 5xx, 429, refused;
                  │           │  or the text was proven absent from the timeline)
                  ▼           ▼
           failed | skipped   failed | skipped | unknown   (final: no move out)

`claimed`: the slot is ours and nothing is in flight; a POST may be sent.
`sending`: a POST with `text` may have reached X. A row found in this state
(after a timeout, a dropped connection, or a crash) is an unknown outcome
and must be settled — found on X, or proven absent — before any new POST.
`unknown` (final): the outcome could not be settled and never will be (a
Telegram channel cannot be read): at most one post, perhaps none.

Every move is compare-and-set: the mover passes the row as it read it, and
the row moves only if it is still in that state (`UPDATE … WHERE state = ?`,
one row changed). A move the table forbids (posted → sending) or one whose
row moved meanwhile is a bug: it is logged and refused (IllegalMove), never
applied, and the owner's transaction rolls back.

Every function here runs inside the database owner; each change writes a
PostEvent row and, once it is committed, one journal line naming the slot key
(and the network, unless X).
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime
from typing import Any

from buzzbotd.db import after_commit, meta
from buzzbotd.db.models import Post, PostEvent, utc_text
from buzzbotd.ops.metrics import METRICS

log = logging.getLogger("buzzbotd.x")
FINAL = ("posted", "failed", "skipped", "unknown")
X = "x"

# The only moves a row may make: state read → states it may move to (None: no row yet).
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"claimed"}),
    "claimed": frozenset({"sending", "failed", "skipped"}),
    "sending": frozenset({"claimed", "posted", "failed", "skipped", "unknown"}),
    "posted": frozenset(),
    "unknown": frozenset(),
    "failed": frozenset(),
    "skipped": frozenset(),
}


class IllegalMove(Exception):
    """A ledger move that TRANSITIONS forbids, or whose row was not in the state
    the mover read. Always a bug; the move was not applied."""


def claim(network: str, key: str, kind: str, due: datetime, now: datetime) -> Post:
    """The slot's row on `network`: claimed now if nobody has it, else as it stands."""
    post = get(network, key)
    if post is None:
        post = Post.create(slot_key=key, network=network, kind=kind, due_at=due,
                           state="claimed", created_at=now, updated_at=now)
        _event(post, now, "claimed", None, logging.INFO)
    return post


def claim_new(network: str, key: str, kind: str, due: datetime, now: datetime
              ) -> Post | None:
    """A fresh row for `key` on `network`, or None if the key is taken there (e.g. a
    second /post in the same second)."""
    if get(network, key) is not None:
        return None
    return claim(network, key, kind, due, now)


def key_taken(key: str) -> bool:
    """Whether any network has a row for `key` (a /post's key is one for all)."""
    return Post.select().where(Post.slot_key == key).exists()


def get(network: str, key: str) -> Post | None:
    return Post.get_or_none((Post.slot_key == key) & (Post.network == network))


def rows_of(key: str) -> list[Post]:
    """Every network's row of slot `key`."""
    return list(Post.select().where(Post.slot_key == key).order_by(Post.id))


def sending(row: Post, text: str, now: datetime, price: float | None = None) -> Post:
    """About to POST `text` (made from `price`, kept for the status page's chart):
    from here on the outcome is unknown until settled."""
    extra = {} if price is None else {"price": price}
    post = _move(row, "sending", now, text=text, attempts=Post.attempts + 1, **extra)
    _event(post, now, "sending", f"attempt {post.attempts}", logging.INFO)
    return post


def not_sent(row: Post, reason: str, now: datetime) -> Post:
    """The request surely did not create a tweet (5xx, 429, connection refused)."""
    post = _move(row, "claimed", now, reason=reason)
    _event(post, now, "retry", reason, logging.WARNING)
    return post


def note(row: Post, event: str, detail: str, now: datetime, level: int = logging.WARNING
         ) -> Post:
    """An event that does not change the state (a failed price fetch, a timeline read…)."""
    post = _move(row, row.state, now, reason=detail)
    _event(post, now, event, detail, level)
    return post


def first_sending_at(row: Post) -> datetime | None:
    """When the row's first POST was announced (its first `sending` event)."""
    event = (PostEvent.select(PostEvent.at)
             .where(PostEvent.post == row.id, PostEvent.event == "sending")
             .order_by(PostEvent.at, PostEvent.id).first())
    return event.at if event is not None else None


def last_sending_at(row: Post) -> datetime | None:
    """When the row's newest POST was announced (its last `sending` event)."""
    event = (PostEvent.select(PostEvent.at)
             .where(PostEvent.post == row.id, PostEvent.event == "sending")
             .order_by(PostEvent.at.desc()).first())
    return event.at if event is not None else None


def posted(row: Post, tweet_id: str | None, how: str, now: datetime, url: str | None = None
           ) -> Post:
    post = _move(row, "posted", now, tweet_id=tweet_id, reason=how, url=url)
    what = "tweet" if post.network == X else "post"
    _event(post, now, "posted", f"{what} {tweet_id or '(id unknown)'}: {how}", logging.INFO)
    after_commit(functools.partial(METRICS.slot_settled, post.slot_key, post.kind, "posted", how,
                                   post.due_at, now, post.network))
    return post


def posted_as_found(row: Post, tweet_ids: list[str], how: str, now: datetime) -> Post | None:
    """posted() with the first of `tweet_ids` (the timeline's tweets of the row's
    text) that no other row holds, or None if there is none: a /tweet in a slot's
    own second words the same text, and each row owns its own tweet, never one
    tweet for both. Checked and written in one owner call, so two settlers cannot
    take the same tweet."""
    held = {tweet_id for (tweet_id,) in Post.select(Post.tweet_id).where(
        Post.tweet_id.in_(tweet_ids) & (Post.id != row.id) & (Post.network == row.network)
    ).tuples()} if tweet_ids else set()
    free = [tweet_id for tweet_id in tweet_ids if tweet_id not in held]
    return posted(row, free[0], how, now) if free else None


def finish(row: Post, state: str, reason: str, now: datetime, alert: bool = True) -> Post:
    """Marks the slot failed, skipped or unknown for good; `alert=False`: the admins'
    own doing (a /pause), which is told to no one."""
    if state not in ("failed", "skipped", "unknown"):
        _refuse(_name(row), row.state, state, "finish() only fails, skips or gives up")
    post = _move(row, state, now, reason=reason)
    _event(post, now, state, reason, logging.WARNING if state == "skipped" else logging.ERROR)
    after_commit(functools.partial(METRICS.slot_settled, post.slot_key, post.kind, state, reason,
                                   post.due_at, now, post.network, alert))
    return post


def skip_missed(network: str, key: str, kind: str, due: datetime, reason: str, now: datetime
                ) -> Post:
    """A slot whose window passed: claimed now if nobody had, and skipped if no
    POST was ever made for it. Any other row is returned as it stands: a final
    one as it is, an open one for the poster to drive (a `sending` row is looked
    up on the timeline before anything is decided; a `claimed` one whose POST was
    proven absent ends failed, its window being over)."""
    post = claim(network, key, kind, due, now)
    if post.state == "claimed" and post.attempts == 0:
        return finish(post, "skipped", reason, now)
    return post


def posted_with_text(network: str, text: str, other_than: str) -> Post | None:
    """The newest row of another key on `network` that posted `text`, or is sending it now."""
    return (Post.select()
            .where((Post.text == text) & (Post.slot_key != other_than) & (Post.network == network)
                   & Post.state.in_(("posted", "sending")))
            .order_by(Post.updated_at.desc(), Post.id.desc()).first())


def previous_final_reasons(network: str, key: str, n: int) -> list[str]:
    """The reasons of the `n` scheduled slots on `network` settled before `key`'s slot,
    newest first."""
    row = get(network, key)
    if row is None:
        return []
    return [reason or "" for (reason,) in Post.select(Post.reason)
            .where((Post.kind == "scheduled") & (Post.due_at < row.due_at)
                   & (Post.network == network)
                   & Post.state.in_(FINAL))
            .order_by(Post.due_at.desc()).limit(n).tuples()]


def final_keys(network: str, since: datetime) -> set[str]:
    """Keys of the slots due after `since` already settled on `network`."""
    return {key for (key,) in Post.select(Post.slot_key)
            .where((Post.due_at > since) & Post.state.in_(FINAL)
                   & (Post.network == network)).tuples()}


def open_rows(network: str, since: datetime) -> list[Post]:
    """Rows on `network` not yet final whose slot is due after `since` (e.g. a /post
    cut short)."""
    return list(Post.select().where(Post.state.not_in(FINAL) & (Post.due_at > since)
                                    & (Post.network == network))
                .order_by(Post.due_at))


def _move(row: Post, to: str, now: datetime, **fields: object) -> Post:
    """Compare-and-set: `row` (as the mover read it) goes to `to`, or IllegalMove."""
    name, expected = _name(row), row.state
    if to != expected and to not in TRANSITIONS.get(expected, frozenset()):
        _refuse(name, expected, to, "not a legal move")
    if to == expected and expected in FINAL:
        _refuse(name, expected, to, "a final row does not change")
    changed = (Post.update(state=to, updated_at=now, **fields)
               .where((Post.id == row.id) & (Post.state == expected)).execute())
    if changed != 1:
        current = Post.get_or_none(Post.id == row.id)
        _refuse(name, expected, to, f"the row is {current.state if current else 'missing'}, "
                f"not {expected} as read")
    return Post.get(Post.id == row.id)


def _name(row: Post) -> str:
    """The slot key, and the network unless X (whose lines read as they always did)."""
    return row.slot_key if row.network == X else f"{row.slot_key} on {row.network}"


def _refuse(key: str, expected: str | None, to: str, why: str) -> None:
    # Logged at once, not after commit: the transaction this runs in rolls back.
    log.error("slot %s: refused ledger move %s → %s: %s (a bug; nothing changed)",
              key, expected, to, why)
    raise IllegalMove(f"slot {key}: {expected} → {to}: {why}")


def _event(post: Post, now: datetime, event: str, detail: str | None, level: int) -> None:
    PostEvent.create(post=post, at=now, event=event, detail=detail)
    # The journal says what the database holds: the line goes out after the commit.
    after_commit(functools.partial(log.log, level, "slot %s: %s%s", _name(post), event,
                                   f": {detail}" if detail else ""))


# -- what X costs, and what X refuses to this app (meta, read by `status`) ----------

USAGE_PREFIX = "x.usage."               # + "YYYY-MM" (UTC): {"requests": {kind: n}, "spend_usd": x}
READS_REFUSED = "x.reads_refused"       # "<UTC time>|<X's reason>" of the last refused read


def usage_key(now: datetime) -> str:
    return f"{USAGE_PREFIX}{now:%Y-%m}"


def month_usage(now: datetime, values: dict[str, str] | None = None) -> dict[str, Any]:
    """This month's X requests by kind and estimated spend (from a meta snapshot, if given)."""
    text = (values.get(usage_key(now)) if values is not None else meta.get(usage_key(now)))
    usage = json.loads(text) if text else {}
    return {"requests": dict(usage.get("requests") or {}),
            "spend_usd": float(usage.get("spend_usd") or 0.0)}


def add_usage(kind: str, usd: float, now: datetime) -> float:
    """One request of `kind` costing `usd`; returns the month's new spend."""
    usage = month_usage(now)
    usage["requests"][kind] = usage["requests"].get(kind, 0) + 1
    usage["spend_usd"] = round(usage["spend_usd"] + usd, 6)
    meta.put(usage_key(now), json.dumps(usage, sort_keys=True))
    return usage["spend_usd"]


def record_reads_refused(reason: str, now: datetime) -> None:
    meta.put(READS_REFUSED, f"{utc_text(now)}|{reason}")


def reads_refused(values: dict[str, str] | None = None) -> tuple[datetime, str] | None:
    """When X last refused a timeline read to this app, and why (from a meta
    snapshot, if given)."""
    text = values.get(READS_REFUSED) if values is not None else meta.get(READS_REFUSED)
    at, bar, reason = (text or "").partition("|")
    when = meta.as_time(at) if bar else None
    return (when, reason) if when else None
