"""Text cut to fit where it is shown (a config error, a log line, STATUS=, a
Telegram message): one rule, so every cut reads alike."""

from __future__ import annotations

MARK = "..."      # ASCII: STATUS= is sent as Latin-1, where "…" would be lost


def shorten(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters, else its start and "..."
    within `limit`."""
    return text if len(text) <= limit else text[:max(limit - len(MARK), 0)] + MARK
