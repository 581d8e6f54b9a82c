"""How a tweet is worded: the x.template's fields, its rendering, the checks
that it can word a tweet, and a tweet's length (posting/compose.py makes a
slot's text from it)."""

from __future__ import annotations

import re
import string

TWEET_MAX_CHARS = 280
FIELDS = ("price", "change_24h", "time")
CURRENCY_FIELD = re.compile(r"price_([a-z]{3})")     # {price_eur}: one of price.currencies


def render_template(template: str, price: float, change_24h: float, when: str,
                    **prices: float) -> str:
    """The tweet text; `when` is the slot's local time, e.g. "16:00 UTC"; `prices`
    the price_<code> fields."""
    return template.format(price=price, change_24h=change_24h, time=when, **prices)


def template_currencies(template: str) -> list[str]:
    """The currency codes of the template's {price_<code>} fields (none if it is broken)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError:
        return []
    return [m.group(1) for name in names if (m := CURRENCY_FIELD.fullmatch(name))]


def template_problem(template: str) -> str | None:
    """Why `template` cannot word a tweet (what the operator should write instead),
    or None."""
    fields = "{price}, {change_24h}, {time} and {price_<code>} (e.g. {price_eur})"
    try:
        for _, name, spec, _ in string.Formatter().parse(template):
            if name is not None and name not in FIELDS and not CURRENCY_FIELD.fullmatch(name):
                return f"unknown field {{{name}}}; expected only {fields}"
            if problem := _format_spec_problem(spec or ""):
                return f"{{{name}:{spec}}} {problem}"
        sample = render_template(template, 123456.78, -12.34, "08:00 UTC",
                                 **{f"price_{c}": 123456.78
                                    for c in template_currencies(template)})
    except (ValueError, TypeError, KeyError, IndexError) as e:
        return (f"not a valid format string ({e}); expected text with {fields}, "
                'e.g. "BTC ${price:,.2f}"')
    if not sample.strip():
        return "renders to an empty tweet"
    if len(sample) > TWEET_MAX_CHARS:
        return f"renders to {len(sample)} characters; expected at most {TWEET_MAX_CHARS}"
    return None


def _format_spec_problem(spec: str) -> str | None:
    """Why a field's format spec cannot be rendered safely, or None. Checked
    before any rendering: formatting `{time:>999999999}` would allocate a
    gigabyte just to find out it is too long for a tweet."""
    if "{" in spec:
        # A nested field makes the width depend on the price at each slot.
        return "has a field inside its format spec; expected a fixed spec, e.g. {price:,.2f}"
    for number in re.findall(r"[0-9]+", spec):
        digits = number.lstrip("0") or "0"
        if len(digits) > 6 or int(digits) > TWEET_MAX_CHARS:
            shown = digits if len(digits) <= 12 else f"{digits[:6]}… ({len(digits)} digits)"
            return (f"asks for a width or precision of {shown}; expected at most "
                    f"{TWEET_MAX_CHARS} (a tweet's length)")
    return None
