"""How a tweet is worded: the x.template's fields (price, change_24h, time and
price_<code>), its rendering, the checks that it can word a tweet, and a
tweet's length as X counts it (posting/compose.py makes a slot's text).

X's weighted length (twitter-text's v3 configuration, "Counting characters"
in X's docs): after NFC normalisation each code point weighs 1 in the ranges
U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F, U+2032–U+2037 and 2 elsewhere
(CJK, most emoji); an emoji sequence (ZWJ joins, skin tones, flags, keycaps)
weighs 2 in all; a URL weighs 23 whatever its length (X wraps it in t.co).
At most 280. Written here because no maintained, small pure-Python
implementation exists: `twitter-text-parser` 3.0.0 (the only port of v3) was
last released 2023-05, and importing it took 440 ms and 20.3 MiB of RSS here
(it agrees with this count on ASCII, CJK, emoji sequences, flags and URLs).
"""

from __future__ import annotations

import re
import string
import unicodedata

TWEET_MAX_CHARS = 280       # X's weighted length
URL_WEIGHT = 23
LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
FIELDS = ("price", "change_24h", "time")
CURRENCY_FIELD = re.compile(r"price_([a-z]{3})")     # {price_eur}: one of price.currencies
# What X takes for a URL in a tweet (twitter-text also links bare domains; a
# template with one should say https://).
URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
# Code points that join or modify the emoji before them into one sequence.
_EMOJI_JOINERS = {0x200D, 0xFE0F, 0x20E3}
# The worst case a template is checked with: the widest price and change a
# format spec can produce, and the longest time label (a zone abbreviation
# such as "+0530" or "ACDT").
_WIDEST = {"price": 9_999_999.99, "change_24h": -999.99, "time": "23:59:59 +0530"}


_WIDEST_ARGS = {"price": _WIDEST["price"], "change_24h": _WIDEST["change_24h"],
                "when": _WIDEST["time"]}


def weighted_length(text: str) -> int:
    """The length X counts for `text` (see the module's docstring)."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    for part in URL.split(text):
        total += _weighted_plain(part)
    return total + URL_WEIGHT * len(URL.findall(text))


def has_url(text: str) -> bool:
    """X prices a post with a URL higher (x.price_post_with_url_usd)."""
    return URL.search(text) is not None


def _weighted_plain(text: str) -> int:
    total, i = 0, 0
    while i < len(text):
        point = ord(text[i])
        if _is_emoji(point):
            i += 1                          # the sequence weighs 2 however long it is
            while i < len(text) and (ord(text[i]) in _EMOJI_JOINERS
                                     or 0x1F3FB <= ord(text[i]) <= 0x1F3FF
                                     or 0xE0020 <= ord(text[i]) <= 0xE007F
                                     or (ord(text[i - 1]) == 0x200D and _is_emoji(ord(text[i])))
                                     or (0x1F1E6 <= point <= 0x1F1FF
                                         and 0x1F1E6 <= ord(text[i]) <= 0x1F1FF
                                         and ord(text[i - 1]) == point)):
                i += 1
            total += 2
            continue
        total += 1 if any(low <= point <= high for low, high in LIGHT_RANGES) else 2
        i += 1
    return total


def _is_emoji(point: int) -> bool:
    return 0x1F000 <= point <= 0x1FAFF or 0x2600 <= point <= 0x27BF


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


def _widest(template: str) -> dict[str, object]:
    """The worst case for `template`: every price field at the widest price."""
    return {**_WIDEST_ARGS, **{f"price_{code}": _WIDEST["price"]
                               for code in template_currencies(template)}}


def grapheme_count(text: str) -> int:
    """User-perceived characters (Unicode extended grapheme clusters), as Bluesky
    counts them; graphemeu is imported only when a Bluesky text is counted."""
    import grapheme
    return grapheme.length(text)


def widest_text(template: str) -> str:
    """`template` rendered at the widest price and change (a valid template)."""
    return render_template(template, **_widest(template))


def template_problem(template: str, length_checked: bool = True) -> str | None:
    """Why `template` cannot word a tweet (what the operator should write instead),
    or None; without `length_checked`, X's length is left to the caller."""
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
        widest = render_template(template, **_widest(template))
    except (ValueError, TypeError, KeyError, IndexError) as e:
        return (f"not a valid format string ({e}); expected text with {fields}, "
                'e.g. "BTC ${price:,.2f}"')
    if not sample.strip():
        return "renders to an empty tweet"
    if length_checked and (length := weighted_length(widest)) > TWEET_MAX_CHARS:
        return (f"can render to {length} characters as X counts them (a URL 23, CJK and "
                f"emoji 2; at a price of {_WIDEST['price']:,.2f}); expected at most "
                f"{TWEET_MAX_CHARS}")
    return None


def template_note(template: str) -> str | None:
    """What check-config says about a valid template that costs more, or None."""
    if has_url(render_template(template, **_widest(template))):
        return ("x.template has a URL: X prices such a post higher "
                "(x.price_post_with_url_usd, against x.price_post_usd)")
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
