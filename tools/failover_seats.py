"""The two seats of the failover trials (tools/failover_trials.py): a daemon each,
on one PostgreSQL database, and how to tell that one leads and the other stands by."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from buzzbotd.db.leadership import LOCK_KEY
from buzzbotd.db.postgres import load_driver
from tests.fakes.price import FakePrice
from tests.fakes.telegram import TOKEN
from tests.fakes.x import FakeX
from tests.support import Daemon, NotifySocket, wait_until
from tests.support.telegram_world import ADMIN
from tests.support.x_world import hhmmss, x_config

WATCHDOG_S = 2.0            # WATCHDOG_USEC: the scheduler beats every WATCHDOG_S / 6
LEADER_NOW = "this daemon is the leader now"
LOST = "leadership lost"          # the daemon's line before it exits with status 1
SETTLE_S = 60.0                   # for the roles to settle, a restart included


class Seat:
    """One daemon's place: its directory, its URLs of the fakes, its process."""

    def __init__(self, name: str, workdir: Path, telegram_url: str, x_url: str) -> None:
        self.name, self.dir = name, workdir / name
        self.telegram_url, self.x_url = telegram_url, x_url
        self.daemon: Daemon | None = None
        self.notify: NotifySocket | None = None
        self.starts = 0

    def configure(self, x: FakeX, price: FakePrice, url: str, slots: list[datetime]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        bot = {"enabled": True, "api_base": self.telegram_url, "token": TOKEN,
               "admin_ids": [ADMIN]}
        self.config = x_config(self.dir, x, price, [hhmmss(t) for t in slots], telegram=bot,
                               database_url=url, api_base=self.x_url)

    def start(self, env: dict[str, str]) -> Daemon:
        self.launch(env)
        return self.ready()

    def launch(self, env: dict[str, str]) -> None:
        self.stop()
        self.starts += 1
        self.notify = NotifySocket(self.dir / f"notify{self.starts}.sock")
        self.daemon = Daemon(self.config, self.notify, env=env,
                             watchdog_usec=int(WATCHDOG_S * 1e6))

    def ready(self) -> Daemon:
        assert self.notify is not None and self.daemon is not None
        self.notify.wait_message("READY=1", timeout=60)
        return self.daemon

    def standing_by(self) -> bool:
        assert self.notify is not None
        return any(s.startswith("standby: leader") for s in self.notify.statuses())

    def came_back_as_standby(self) -> bool:
        """READY as a standby: "standby: leader …", or "standby: no leader seen yet" when
        its first try could not reach PostgreSQL (a stall) and the next one found it."""
        assert self.notify is not None
        return any(s.startswith("standby:") for s in self.notify.statuses())

    def lost_by_itself(self) -> str | None:
        """The "leadership lost" line of a daemon that exited with status 1 after it."""
        daemon = self.daemon
        if daemon is None or daemon.proc.poll() != 1:
            return None
        daemon.wait(5)               # all of its output read
        return next((line for _, line in daemon.lines if LOST in line), None)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon = None
        if self.notify is not None:
            self.notify.close()
            self.notify = None


def settle(one: Seat, other: Seat, url: str, env: dict[str, str], lost: list[str],
            label: str) -> tuple[Seat, Seat]:
    """Waits until one seat leads (its daemon logged "leader now", the leadership
    row names its pid, the advisory lock is held) and the other is READY; returns
    (leader, standby). A seat whose daemon lost its leadership by itself and exited
    is started again, as systemd would, and the loss recorded in `lost`; any other
    exit is a failure."""
    holder: list[int | None] = [None]

    def settled() -> tuple[Seat, Seat] | None:
        for seat in (one, other):
            assert seat.daemon is not None
            if seat.daemon.proc.poll() is None:
                continue
            assert seat.lost_by_itself() is not None, (
                f"seat {seat.name} exited with status {seat.daemon.proc.returncode}:"
                f"\n{seat.daemon.log}")
            record_lost(seat, label, lost)
            seat.launch(env)
        holder[0] = _lock_holder(url)
        for leader, standby in ((one, other), (other, one)):
            assert leader.daemon is not None and standby.notify is not None
            if (holder[0] == leader.daemon.pid and leader.daemon.proc.poll() is None
                    and any(LEADER_NOW in line for _, line in list(leader.daemon.lines))
                    and standby.notify.times_of("READY=1")):
                return leader, standby
        return None

    return wait_until(settled, SETTLE_S, lambda: (
        f"{label}: no settled leader and standby (lock held by pid {holder[0]}); seat "
        f"{one.name}:\n{one.daemon and one.daemon.log}\n"
        f"seat {other.name}:\n{other.daemon and other.daemon.log}"), interval=0.2)


def record_lost(seat: Seat, label: str, lost: list[str]) -> None:
    """Records that `seat`'s daemon lost its leadership by itself, and why."""
    assert seat.daemon is not None
    reason = seat.lost_by_itself() or ""
    lost.append(f"{label}: seat {seat.name} (pid {seat.daemon.pid}): "
                f"{reason.split(LOST, 1)[-1].strip(' :')}")


def _lock_holder(url: str) -> int | None:
    """The pid the leadership row names, if the leadership lock is held; else None."""
    rows = pg(url, "SELECT pid FROM leadership WHERE id = 1 AND EXISTS (SELECT 1 FROM "
                    "pg_locks WHERE locktype = 'advisory' AND granted AND classid = "
                    f"{LOCK_KEY >> 32} AND objid = {LOCK_KEY & 0xFFFF_FFFF} AND objsubid = 1)")
    return rows[0][0] if rows else None


def pg(url: str, sql: str) -> list[tuple]:
    with load_driver().connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()
