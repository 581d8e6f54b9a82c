"""Handing freed heap memory back to the operating system after a big job.

glibc keeps the pages of freed buffers in the arena of the thread that freed
them (a worker thread's arena is not trimmed as the main heap's top is), so a
job that once built megabytes of request bodies would keep the daemon's RSS
up until the next one. `malloc_trim(0)` returns every whole free page of every
arena. Elsewhere (musl, macOS) `trim` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load() -> Callable[[], object]:
    name = ctypes.util.find_library("c")
    malloc_trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if malloc_trim is None:
        return lambda: None
    return lambda: malloc_trim(0)


_trim = _load()


def trim() -> None:
    """Returns the free pages of glibc's arenas to the system (a no-op without glibc)."""
    _trim()
