"""A Bluesky post's text: its limits, and the facets that make its links and
tags clickable.

Bluesky shows a link or a hashtag as such only where the record says so: a
facet, with the span's byte offsets into the text's UTF-8. They are found here
as Bluesky's own client finds them (bluesky-social/atproto,
packages/api/src/rich-text/detection.ts), except bare domains (`example.com`
without a scheme), which would need its list of top-level domains.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from buzzbotd.template import grapheme_count

MAX_GRAPHEMES = 300          # app.bsky.feed.post text: maxGraphemes
MAX_TEXT_BYTES = 3000        # and maxLength (UTF-8 bytes)
MAX_TAG_GRAPHEMES = 64

_URL = re.compile(r"(^|\s|\()(https?://\S+)", re.IGNORECASE | re.MULTILINE)
_NOT_IN_TAG = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"    # zero-width spaces and marks
_TAG = re.compile(rf"(^|\s)[#＃]([^\s{_NOT_IN_TAG}]*)", re.MULTILINE)
_CASHTAG = re.compile(r"(^|\s|\()\$([A-Za-z][A-Za-z0-9]{0,4})(?=\s|$|[.,;:!?)\"'\u2019])",
                      re.MULTILINE)


def text_problem(text: str) -> str | None:
    """Why Bluesky would refuse `text` as a post's text, or None."""
    if not text.strip():
        return "the text is empty"
    graphemes = grapheme_count(text)
    if graphemes > MAX_GRAPHEMES:
        return f"the text has {graphemes} graphemes; Bluesky takes at most {MAX_GRAPHEMES}"
    size = len(text.encode())
    if size > MAX_TEXT_BYTES:
        return f"the text has {size} bytes of UTF-8; Bluesky takes at most {MAX_TEXT_BYTES}"
    return None


def facets(text: str) -> list[dict[str, Any]]:
    """The links, hashtags and cashtags of `text` as facets (see the module's doc)."""
    spans: list[tuple[int, int, dict[str, str]]] = []
    for match in _URL.finditer(text):
        uri = match.group(2)
        if uri[-1] in ".,;:!?":
            uri = uri[:-1]
        if uri.endswith(")") and "(" not in uri:
            uri = uri[:-1]
        start = match.start(2)
        spans.append((start, start + len(uri), {"$type": "app.bsky.richtext.facet#link",
                                                "uri": uri}))
    for match in _TAG.finditer(text):
        tag = match.group(2)
        if tag.startswith("\ufe0f") or all(c.isascii() and c.isdigit() or _punctuation(c)
                                           for c in tag):
            continue
        while tag and _punctuation(tag[-1]):
            tag = tag[:-1]
        if len(tag) > MAX_TAG_GRAPHEMES and grapheme_count(tag) > MAX_TAG_GRAPHEMES:
            continue
        start = match.start(2) - 1
        spans.append((start, start + 1 + len(tag), {"$type": "app.bsky.richtext.facet#tag",
                                                    "tag": tag}))
    for match in _CASHTAG.finditer(text):
        start = match.start(2) - 1
        spans.append((start, match.end(2), {"$type": "app.bsky.richtext.facet#tag",
                                            "tag": "$" + match.group(2).upper()}))
    return [{"index": {"byteStart": _byte(text, start), "byteEnd": _byte(text, end)},
             "features": [feature]} for start, end, feature in sorted(spans, key=lambda s: s[0])]


def _byte(text: str, index: int) -> int:
    return len(text[:index].encode())


def _punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")
