"""The price alerts of each owner (a user, or in a group the sender chat): add,
list, remove; and each user's currency.

An alert is stored with its first trigger: above L waits for the price to rise
to L (up_level), below L for it to fall to L (down_level), move N% for either
side of the price when it was set. An above/below level the price has already
reached is refused (it could never be crossed), so every armed trigger lies
beyond the last price and a crossing is simply "the new price reached it".

The functions taking `now` run inside the database owner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from buzzbotd.db.models import PriceAlert, TelegramUser
from buzzbotd.pricealerts.request import AlertRequest

log = logging.getLogger("buzzbotd.pricealerts")

MAX_PER_OWNER = 10
REARM_RATIO = 0.01     # a repeat alert re-arms once the price is back 1 % past its level


@dataclass(frozen=True)
class AlertView:
    number: int                # 1, 2, … in the owner's list (/unalert N)
    kind: str
    currency: str
    level: float
    repeat: bool
    state: str
    enabled: bool


@dataclass(frozen=True)
class AddResult:
    outcome: str               # created | full | reached
    alert: AlertView | None = None


def triggers(kind: str, level: float, price: float) -> tuple[float | None, float | None]:
    """(up_level, down_level) of an armed alert, `price` being now (move: its reference)."""
    if kind == "above":
        return level, None
    if kind == "below":
        return None, level
    return price * (1 + level / 100), price * (1 - level / 100)


def add_alert(owner_id: int, chat_id: int, request: AlertRequest, currency: str,
              price: float, now: datetime) -> AddResult:
    """A new alert in `currency` (the request's or the user's), `price` being its price
    now; at most MAX_PER_OWNER."""
    if PriceAlert.select().where(PriceAlert.owner_id == owner_id).count() >= MAX_PER_OWNER:
        return AddResult("full")
    if (request.kind == "above" and price >= request.level) or (
            request.kind == "below" and price <= request.level):
        return AddResult("reached")
    up, down = triggers(request.kind, request.level, price)
    PriceAlert.create(owner_id=owner_id, chat_id=chat_id, kind=request.kind,
                      currency=currency, level=request.level, repeats=request.repeat,
                      reference=price if request.kind == "move" else None, state="armed",
                      up_level=up, down_level=down, enabled=True, created_at=now)
    log.info("owner %d set an alert %s %g %s%s", owner_id, request.kind, request.level,
             currency, " (repeat)" if request.repeat else "")
    views = owner_alerts(owner_id)
    return AddResult("created", views[-1])


def owner_alerts(owner_id: int) -> list[AlertView]:
    query = PriceAlert.select().where(PriceAlert.owner_id == owner_id).order_by(PriceAlert.id)
    return [AlertView(n, a.kind, a.currency, a.level, bool(a.repeats), a.state, bool(a.enabled))
            for n, a in enumerate(query, 1)]


def remove_alerts(owner_id: int, number: int | None) -> int:
    """Removes alert number `number` of the owner's list (all of them if None);
    returns how many went."""
    ids = [a.id for a in PriceAlert.select(PriceAlert.id).where(
        PriceAlert.owner_id == owner_id).order_by(PriceAlert.id)]
    if number is not None:
        ids = ids[number - 1:number] if 1 <= number <= len(ids) else []
    removed = PriceAlert.delete().where(PriceAlert.id.in_(ids)).execute() if ids else 0
    if removed:
        log.info("owner %d removed %d alert(s)", owner_id, removed)
    return removed


def disable_chat_alerts(chat_id: int) -> int:
    """Telegram refused the chat for good (blocked): its alerts are switched off."""
    return PriceAlert.update(enabled=False).where(
        (PriceAlert.chat_id == chat_id) & (PriceAlert.enabled == True)).execute()  # noqa: E712


def user_currency(user_id: int, default: str, allowed: tuple[str, ...]) -> str:
    """The user's /currency, if it is still one of price.currencies, else `default`."""
    return user_currencies([user_id], default, allowed)[user_id]


def user_currencies(user_ids: list[int], default: str, allowed: tuple[str, ...]
                    ) -> dict[int, str]:
    """user_currency of each of `user_ids`, in one query (a reminder page's users)."""
    chosen = dict(TelegramUser.select(TelegramUser.id, TelegramUser.currency)
                  .where(TelegramUser.id.in_(user_ids)).tuples()) if user_ids else {}
    return {user: code if (code := chosen.get(user)) in allowed else default
            for user in user_ids}


def set_user_currency(user_id: int, chat_id: int, code: str, now: datetime,
                      default_timezone: str) -> None:
    updated = TelegramUser.update(currency=code, updated_at=now).where(
        TelegramUser.id == user_id).execute()
    if not updated:
        TelegramUser.create(id=user_id, chat_id=chat_id, timezone=default_timezone,
                            currency=code, created_at=now, updated_at=now)
