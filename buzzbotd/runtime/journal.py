"""Logging to stderr in the form journald reads: `<N>` sd-daemon priority prefixes.

One line per event; tracebacks are folded into the same record so that a
journal entry is one event. Known secret values are masked in every line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

# syslog priorities, as in sd-daemon(3)
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
# Libraries that log every HTTP request, with URLs that carry the bot token.
_CHATTY = ("httpx", "httpcore", "telegram", "tweepy", "urllib3", "requests_oauthlib",
           "oauthlib", "schedule", "peewee", "tornado")


class JournalFormatter(logging.Formatter):
    """`<6>buzzbotd.x: message`; a traceback follows on the same record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(name)s: %(message)s")
        self.secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        priority = _PRIORITY.get(record.levelno, 6)
        # journald splits on newlines; each continuation keeps the priority.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def setup(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Routes all logging to stderr with priority prefixes and masks `secrets`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # Libraries speak only of trouble unless the operator asked for debug.
    third_party = logging.DEBUG if level == "debug" else logging.WARNING
    for name in _CHATTY:
        logging.getLogger(name).setLevel(third_party)
