"""What a user asks for with /alert: its words → a kind, a level and a currency."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from buzzbotd.timeinput import InputError

FORMS = ("/alert above 100000 [eur] [repeat] · /alert below 90000 [eur] [repeat] · "
         "/alert move 5%")
MAX_ARGUMENT_CHARS = 64
MAX_LEVEL = 1e12               # beyond any price; keeps the numbers printable
MOVE_MIN, MOVE_MAX = 0.1, 100.0    # percent
_NUMBER = re.compile(r"^[0-9][0-9,_]*(?:\.[0-9]+)?$")
_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*%?$")


@dataclass(frozen=True)
class AlertRequest:
    kind: str                  # above | below | move
    level: float               # a price for above/below; a percentage for move
    currency: str | None       # None: the user's currency
    repeat: bool = False


def parse_request(args: list[str], currencies: tuple[str, ...]) -> AlertRequest:
    """`/alert` arguments → a request, or InputError naming the problem and the form."""
    if not args:
        raise InputError(f"Tell me when to alert you: {FORMS}")
    if len(" ".join(args)) > MAX_ARGUMENT_CHARS or len(args) > 4:
        raise InputError(f"That is more than I understand. The forms: {FORMS}")
    kind, rest = args[0].lower(), [a.lower() for a in args[1:]]
    if kind not in ("above", "below", "move"):
        raise InputError(f'"{args[0]}" is not a kind of alert; expected above, below or move. '
                         f"The forms: {FORMS}")
    if not rest:
        raise InputError(f"/alert {kind} needs a {'percentage' if kind == 'move' else 'price'}."
                         f" The forms: {FORMS}")
    level = _percent(rest[0]) if kind == "move" else _price(rest[0], kind)
    currency, repeat = None, False
    for word in rest[1:]:
        if word == "repeat" and kind != "move":
            if repeat:
                raise InputError(f"repeat once is enough. The forms: {FORMS}")
            repeat = True
        elif word in currencies and currency is None:
            currency = word
        elif word == "repeat":
            raise InputError("a move alert repeats by itself (each time the price has moved "
                             "that much again); write /alert move 5%")
        else:
            raise InputError(f'"{word}" is not one of the currencies '
                             f"({', '.join(currencies)}) nor repeat. The forms: {FORMS}")
    return AlertRequest(kind, level, currency, repeat)


def _price(word: str, kind: str) -> float:
    example = f"/alert {kind} {'100000' if kind == 'above' else '90000'}"
    if word.startswith("-"):
        raise InputError(f"{word} is not a price: the level must be above 0, e.g. {example}")
    if not _NUMBER.match(word):
        raise InputError(f'"{word}" is not a price; write digits, e.g. {example}')
    value = float(word.replace(",", "").replace("_", ""))
    if not math.isfinite(value) or value <= 0 or value >= MAX_LEVEL:
        raise InputError(f"{word} is not a price I can watch: expected a number above 0 and "
                         f"below {MAX_LEVEL:,.0f}, e.g. {example}")
    return value


def _percent(word: str) -> float:
    match = _PERCENT.match(word)
    value = float(match[1]) if match else math.nan
    if not (MOVE_MIN <= value <= MOVE_MAX):
        raise InputError(f'"{word}" is not a move I can watch: expected a percentage from '
                         f"{MOVE_MIN:g}% to {MOVE_MAX:g}%, e.g. /alert move 5%")
    return value
