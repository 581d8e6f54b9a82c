"""The daemon: main.py (the composition root: start in order, the main loop, a
bounded stop in reverse) and parts.py (the parts it builds and how each stops)."""

from buzzbotd.daemon.main import STOP_BUDGET_S, Daemon

__all__ = ["STOP_BUDGET_S", "Daemon"]
