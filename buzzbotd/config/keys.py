"""How a config key is declared and read: `key(kind, default)` on a field of a
section's dataclass, `read_section` the one loop that converts and checks them
all, `Check` that collects every problem as `file: key = value: expected …`,
and `Secret`, a value that never prints itself. The kinds of value are kinds.py.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buzzbotd.runtime.text import shorten

MISSING: Any = dataclasses.MISSING


class Secret:
    """A credential. Its value is only reachable through `reveal()`."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # where it came from, safe to print

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"<secret from {self.source}>" if self._value else "<empty secret>"

    __str__ = __repr__


@dataclass
class Check:
    """One reading of a config file: where it is, the environment, every problem so far."""

    path: Path
    environ: dict[str, str]
    problems: list[str] = dataclasses.field(default_factory=list)

    def problem(self, key: str, message: str, value: Any = MISSING) -> None:
        shown = "" if value is MISSING else f" = {show(value)}"
        self.problems.append(f"{self.path}: {key}{shown}: {message}")


class Invalid(Exception):
    """The value cannot be used (the key keeps its default); `expected` says why."""

    def __init__(self, expected: str, value: Any = MISSING) -> None:
        super().__init__(expected)
        self.expected, self.value = expected, value


class Kind:
    """A kind of config value. `convert` returns the value Settings holds or raises
    Invalid; problems with single items of a list it reports to `check` itself."""

    def absent(self, default: Any, key: str, check: Check) -> Any:
        """The value of a key the file does not set."""
        return default

    def convert(self, value: Any, key: str, check: Check) -> Any:
        raise NotImplementedError


def key(kind: Kind, default: Any) -> Any:
    """A config key of a section: its kind and its default, declared once."""
    return dataclasses.field(default=default, metadata={"kind": kind})


def config_keys(cls: type) -> list[dataclasses.Field]:
    """The fields of a section that are keys of the file (others are derived)."""
    return [f for f in dataclasses.fields(cls) if "kind" in f.metadata]


def read_section(cls: type, name: str, table: Any, check: Check) -> Any:
    """The [name] table → an instance of `cls`; every key checked by its kind."""
    if not isinstance(table, dict):
        check.problem(name, f"expected a [{name}] table", table)
        table = {}
    keys = config_keys(cls)
    known = {f.name for f in keys}
    for given in table:
        if given not in known:
            check.problem(f"{name}.{given}", "unknown key" + did_you_mean(given, known))
    values = {}
    for f in keys:
        kind, dotted = f.metadata["kind"], f"{name}.{f.name}"
        if f.name not in table:
            values[f.name] = kind.absent(f.default, dotted, check)
            continue
        try:
            values[f.name] = kind.convert(table[f.name], dotted, check)
        except Invalid as e:
            check.problem(dotted, e.expected, e.value)
            values[f.name] = f.default
    return cls(**values)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def show(value: Any) -> str:
    """A value as the operator wrote it in TOML, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace('"', '\\"') + '"'
    else:
        text = repr(value)
    return shorten(text, 80)
