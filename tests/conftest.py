from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import NotifySocket


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A new directory whose path is short: a config error shows a value whole only up to
    80 characters, and tmp_path is longer under pytest-xdist (…/popen-gw1/<test name>)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def spawn() -> Iterator:
    """Starts daemons with tests.support.Daemon(...) arguments; kills leftovers at teardown."""
    from tests.support import Daemon

    started: list[Daemon] = []

    def start(*args, **kwargs) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill9()


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """cli(*args, env=None): `buzzbotd <args>` run by its entry in this process; its
    returncode, stdout and stderr (tests/support/cli.py)."""
    from tests.support.cli import run_in_process

    return lambda *args, env=None: run_in_process(monkeypatch, *args, env=env)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    """Debian's PostgreSQL, started for this test run (tests/support/postgres.py)."""
    from tests.support.postgres import start_server

    server = start_server()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes a database owner runs on both backends."""
    return request.param


@pytest.fixture
def make_owner(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """make_owner(**kwargs): a new, not yet started owner of an empty database
    on `backend` (SQLite in tmp_path, or a fresh database on the test server)."""
    from buzzbotd.db import SqliteOwner

    made: list = []

    def make(**kwargs):
        if backend == "sqlite":
            owner = SqliteOwner(tmp_path / "buzzbotd.db", **kwargs)
        else:
            from buzzbotd.db.postgres import PostgresOwner

            server = request.getfixturevalue("postgres_server")
            owner = PostgresOwner(server.create_database(), **kwargs)
        made.append(owner)
        return owner

    yield make
    for owner in made:
        owner.stop()


@pytest.fixture
def daemon_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    """The database of a daemon whose config is written in tmp_path, on `backend`."""
    from tests.support.backends import on_backend

    return on_backend(backend, tmp_path, request)


@pytest.fixture
def owner(make_owner) -> Iterator:
    """A started owner of an empty database, on each backend."""
    owner = make_owner()
    owner.start()
    yield owner


@pytest.fixture
def x() -> Iterator:
    """The fake X. It accepts duplicates (X refuses them with a 403), so that a second
    POST of the same text would show as a second tweet instead of being hidden."""
    from tests.fakes.x import FakeX
    fake = FakeX(reject_duplicates=False).start()
    yield fake
    fake.stop()


@pytest.fixture
def price() -> Iterator:
    """The fake price API at 67,890.12 USD, -1.23 % (a module may define its own)."""
    from tests.fakes.price import FakePrice
    fake = FakePrice(67890.12, -1.23).start()
    yield fake
    fake.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test process / postgres / tool by what it reaches (tests/support/marks.py)."""
    from tests.support.marks import Reach, marks_for

    reach = Reach()
    for item in items:
        if isinstance(item, pytest.Function):
            for mark in sorted(marks_for(item, reach)):
                item.add_marker(mark)
