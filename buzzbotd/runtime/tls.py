"""One TLS context for every HTTPS client of the daemon.

Building a context that trusts certifi's bundle costs about 43 ms here (more
on a Raspberry Pi), and httpx builds one per client unless given one: the
price client and python-telegram-bot's two clients made start-up pay it three
times. They share this one (certifi's bundle, as httpx would use).
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())
