"""A new price against every alert: which were crossed, recorded before any message.

`evaluate(currency, price, now)` runs in one transaction of the database owner:
1. for each side, one range query on its index (price_alert_up: up_level <= the
   price; price_alert_down: down_level >= it) copies every *armed* alert it
   reaches into the outbox `alert_message`, with the price that reached it;
2. the same two ranges move each reached row to its next trigger, set-based:
   - above L: fired (done); with `repeat`, "rearming" until the price is back
     1 % below L (down_level = 0.99 L), then armed at L again (no message for
     the re-arming: a price hovering at L sends one message, not a storm);
   - below L: the mirror image (re-arms at 1.01 L);
   - move N %: its reference becomes this price, its triggers N % either side.
So a crossing is found once, however often the price is evaluated, and the
outbox holds its message across a kill -9 or a failover until `settle` records
what Telegram said. The rows are never read one by one into Python to decide:
100,000 alerts cost two index range scans.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from buzzbotd.db import migrations
from buzzbotd.db.models import AlertMessage, database, utc_text
from buzzbotd.db.raw import execute, rows
from buzzbotd.price.quote import money
from buzzbotd.pricealerts.store import REARM_RATIO

log = logging.getLogger("buzzbotd.pricealerts")

# What one side's reached rows become. `level` is the user's level (move: the
# percentage); SET expressions read the row as it was before the update.
_NEXT = {
    "up": """UPDATE price_alert SET
        state = CASE WHEN kind = 'move' OR state = 'rearming' THEN 'armed'
                     WHEN repeats = {true} THEN 'rearming' ELSE 'fired' END,
        fired_at = CASE WHEN state = 'armed' THEN ? ELSE fired_at END,
        reference = CASE WHEN kind = 'move' THEN ? ELSE reference END,
        up_level = CASE WHEN kind = 'move' THEN ? * (1 + level / 100) ELSE NULL END,
        down_level = CASE WHEN kind = 'move' THEN ? * (1 - level / 100)
                          WHEN state = 'rearming' THEN level
                          WHEN repeats = {true} THEN level * (1 - ?) ELSE NULL END
        WHERE currency = ? AND up_level <= ? AND enabled = {true}""",
    "down": """UPDATE price_alert SET
        state = CASE WHEN kind = 'move' OR state = 'rearming' THEN 'armed'
                     WHEN repeats = {true} THEN 'rearming' ELSE 'fired' END,
        fired_at = CASE WHEN state = 'armed' THEN ? ELSE fired_at END,
        reference = CASE WHEN kind = 'move' THEN ? ELSE reference END,
        up_level = CASE WHEN kind = 'move' THEN ? * (1 + level / 100)
                        WHEN state = 'rearming' THEN level
                        WHEN repeats = {true} THEN level * (1 + ?) ELSE NULL END,
        down_level = CASE WHEN kind = 'move' THEN ? * (1 - level / 100) ELSE NULL END
        WHERE currency = ? AND down_level >= ? AND enabled = {true}""",
}
_RECORD = """INSERT INTO alert_message
    (alert_id, chat_id, kind, currency, level, reference, price, created_at)
    SELECT id, chat_id, kind, currency, level, reference, ?, ? FROM price_alert
    WHERE currency = ? AND {side} ? AND enabled = {true} AND state = 'armed'"""
_SIDES = {"up": "up_level <=", "down": "down_level >="}


def evaluate(currency: str, price: float, now: datetime) -> int:
    """Records every crossing `price` makes in `currency`; returns how many messages
    that leaves to send. Runs in the owner, in one transaction."""
    backend = migrations.backend_of(database.obj)
    at = utc_text(now)
    crossed = 0
    for side, condition in _SIDES.items():
        crossed += execute(migrations.render(_RECORD.replace("{side}", condition), backend),
                           price, at, currency, price)
        sql = migrations.render(_NEXT[side], backend)
        if side == "up":
            execute(sql, at, price, price, price, REARM_RATIO, currency, price)
        else:
            execute(sql, at, price, price, REARM_RATIO, price, currency, price)
    if crossed:
        log.info("%s at %.2f crossed %d alert(s)", currency, price, crossed)
    return crossed


def watched(currencies: tuple[str, ...]) -> list[str]:
    """The currencies with an alert waiting for a price (one index probe each): a check
    with none asks the price API nothing."""
    backend = migrations.backend_of(database.obj)
    found = []
    for code in currencies:
        if rows(migrations.render(
                "SELECT 1 FROM price_alert WHERE currency = ? AND enabled = {true} AND "
                "(up_level IS NOT NULL OR down_level IS NOT NULL) LIMIT 1", backend), code):
            found.append(code)
    return found


@dataclass(frozen=True)
class Crossing:
    """A message to send: an alert that was crossed."""

    id: int
    alert_id: int
    chat_id: int
    kind: str
    currency: str
    level: float
    reference: float | None
    price: float


def pending(limit: int = 500) -> list[Crossing]:
    """Crossings not yet told, oldest first."""
    query = (AlertMessage.select().where(AlertMessage.sent_at.is_null())
             .order_by(AlertMessage.id).limit(limit))
    return [Crossing(m.id, m.alert_id, m.chat_id, m.kind, m.currency, m.level, m.reference,
                     m.price) for m in query]


def settle(message_id: int, outcome: str, now: datetime) -> None:
    """What became of a crossing's message: sent, blocked, or failed (given up)."""
    AlertMessage.update(sent_at=now, outcome=outcome).where(
        (AlertMessage.id == message_id) & AlertMessage.sent_at.is_null()).execute()


def message_text(crossing: Crossing) -> str:
    """What the owner of the alert is told."""
    now = money(crossing.price, crossing.currency)
    if crossing.kind == "above":
        return (f"🔔 Bitcoin is at {now}: it rose to your level "
                f"{money(crossing.level, crossing.currency)}. (/alerts)")
    if crossing.kind == "below":
        return (f"🔔 Bitcoin is at {now}: it fell to your level "
                f"{money(crossing.level, crossing.currency)}. (/alerts)")
    reference = crossing.reference or crossing.price
    return (f"🔔 Bitcoin moved {(crossing.price / reference - 1) * 100:+.1f}% to {now} "
            f"since {money(reference, crossing.currency)} (your {crossing.level:g}% alert). "
            "(/alerts)")
