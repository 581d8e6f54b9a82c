"""The markers conftest.py gives each test by what it reaches, so that no test has
to say it (like python-telegram-bot's automatic `no_req`):

  process   starts a process: a daemon (`Daemon`, the `spawn` fixture) or any
            subprocess (the CLI, openssl, promtool, …)
  postgres  uses the test PostgreSQL server (a fixture on it, or the
            "postgresql" case of a test run on each backend)
  tool      needs a tool beside Python: chromium, prometheus, promtool, strace, openssl

"Reaches" is read from the code, not run: the names the test function, its
fixtures and every test-side function or class they name (in tests/ or tools/,
followed transitively; buzzbotd itself is not followed) refer to, and the strings
they hold (a tool by its name alone: which("strace")). `make test-fast` runs the
tests with none of these marks, nor `long` (written by hand on the minutes-long
runs: the kill -9 and failover trials at length, the quick bench run).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator
from typing import Any

import pytest

AUTO_MARKS = ("process", "postgres", "tool")
PROCESS_NAMES = frozenset({"Daemon", "subprocess", "Popen", "spawn"})
POSTGRES_NAMES = frozenset({"postgres_server", "start_server", "PostgresOwner"})
TOOLS = frozenset({"chromium", "prometheus", "promtool", "strace", "openssl"})
FOLLOWED = ("tests", "tools")       # the modules whose code is read through


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _strings(consts: tuple) -> Iterator[str]:
    for const in consts:
        if isinstance(const, str):
            yield const
        elif isinstance(const, (tuple, frozenset)):
            yield from _strings(tuple(const))


def _followed(obj: Any) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module.split(".")[0] in FOLLOWED or module == "conftest"


class Reach:
    """What a test-side object names and holds, through what it names (memoised)."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[frozenset[str], frozenset[str]]] = {}

    def of(self, obj: Any) -> tuple[frozenset[str], frozenset[str]]:
        """(names, strings) reached from a function or class."""
        key = id(obj)
        if key in self._seen:
            return self._seen[key]
        self._seen[key] = (frozenset(), frozenset())     # a cycle adds nothing
        names: set[str] = set()
        strings: set[str] = set()
        for func in self._functions(obj):
            for code in _codes(func.__code__):
                names.update(code.co_names)
                names.update(code.co_freevars)
                strings.update(_strings(code.co_consts))
                for name in code.co_names:
                    target = func.__globals__.get(name)
                    if target is not None and target is not obj and _followed(target) and (
                            inspect.isfunction(target) or inspect.isclass(target)):
                        more_names, more_strings = self.of(target)
                        names |= more_names
                        strings |= more_strings
        result = (frozenset(names), frozenset(strings))
        self._seen[key] = result
        return result

    @staticmethod
    def _functions(obj: Any) -> list[types.FunctionType]:
        obj = inspect.unwrap(obj) if callable(obj) else obj
        if inspect.isfunction(obj):
            return [obj]
        if inspect.isclass(obj):
            found = []
            for value in vars(obj).values():
                value = getattr(value, "__func__", value)
                if isinstance(value, property):
                    value = value.fget
                if inspect.isfunction(value):
                    found.append(value)
            return found
        return []


def marks_for(item: pytest.Function, reach: Reach) -> set[str]:
    """The automatic marks `item` earns."""
    names: set[str] = set(item.fixturenames)
    strings: set[str] = set()
    objects: list[Any] = [item.function]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        objects.extend(d.func for d in defs if _followed(d.func))
    for obj in objects:
        more_names, more_strings = reach.of(obj)
        names |= more_names
        strings |= more_strings
    params = getattr(getattr(item, "callspec", None), "params", {})
    marks = set()
    if names & PROCESS_NAMES:
        marks.add("process")
    # A test run on each backend (a "sqlite" / "postgresql" parameter: the backend
    # fixture, a module's world) reaches both in its code; its parameter says which.
    backends = {value for value in params.values() if value in ("sqlite", "postgresql")}
    if "postgres_server" in item.fixturenames or "postgresql" in backends or (
            not backends and names & POSTGRES_NAMES):
        marks.add("postgres")
    if strings & TOOLS:          # a tool's name as a string: which("strace"), ["openssl", …]
        marks.add("tool")
    return marks
