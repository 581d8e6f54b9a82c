"""What the tests (and tools/) share, like python-telegram-bot's tests/auxil/:
the daemon runner and its notify socket (daemon.py), the clocks a test moves
(clock.py), `wait_until` (waiting.py), `free_port` (net.py); beside them, not
imported here, the PostgreSQL server (postgres.py), either backend's database
(backends.py), a TCP proxy to cut (tcp_proxy.py) and the worlds a test builds
around a daemon (x_world.py, telegram_world.py, sheets_world.py). No pytest
fixtures here: those are in tests/conftest.py."""

from tests.support.clock import FileClock, ManualClock
from tests.support.daemon import (
                                  REPO,
                                  Daemon,
                                  NotifySocket,
                                  read_sqlite,
                                  rss_kib,
                                  toml_value,
                                  write_config,
)
from tests.support.net import free_port
from tests.support.waiting import wait_until

__all__ = ["REPO", "Daemon", "FileClock", "ManualClock", "NotifySocket", "free_port",
           "read_sqlite", "rss_kib", "toml_value", "wait_until", "write_config"]
