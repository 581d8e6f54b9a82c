"""The import layers of buzzbotd/, enforced: an `ast` walk over every module
(imports under TYPE_CHECKING and inside functions included) that fails on an
import going up a layer and on any import cycle between modules, naming each
offending import as file:line. In-process, no import of our code: well under
a second."""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "buzzbotd"

# Lowest first. A module may import from its own layer or a lower one, never
# from a higher one; no two modules may import each other, directly or round
# a cycle. A name covers the module and everything under it ("runtime" is
# runtime/*). A new module must be placed here: a module no name covers fails.
LAYERS: list[tuple[str, ...]] = [
    ("buzzbotd",                 # the package root: __version__
     "clock", "retry", "timeofday", "timeinput", "template", "testhooks", "zonealiases",
     "runtime", "ops.health", "ops.metrics"),
    ("config",),
    ("db",),
    ("price", "pricealerts", "posting", "reminders", "sheets", "ops.alerts", "ops.status"),
    ("telegram", "web"),
    ("daemon", "cli", "__main__"),
]


@dataclass(frozen=True)
class Import:
    source: str      # the importing module, dotted ("buzzbotd.web.server")
    target: str      # the module it loads
    file: str        # relative to the repository
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source} imports {self.target}"


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name; a package by its __init__."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@functools.cache
def imports() -> list[Import]:
    """Every import of a buzzbotd module by a buzzbotd module."""
    known = modules()
    return [edge for name, path in known.items() for edge in imports_of(name, path, known)]


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """The imports of module `name` of buzzbotd, wherever they stand in the file.
    `from a import b` loads a.b when that is a module, else a."""
    found = []
    is_package = path.name == "__init__.py"
    file = str(path.relative_to(PACKAGE.parent)) if path.is_relative_to(PACKAGE) else str(path)
    for node in ast.walk(ast.parse(path.read_text(), file)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:        # relative: from the importing module's package
                here = name.split(".") if is_package else name.split(".")[:-1]
                anchor = ".".join(here[:len(here) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target == "buzzbotd" or target.startswith("buzzbotd."):
                while target not in known and "." in target:   # buzzbotd._build
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    found.append(Import(name, target, file, node.lineno))
    return found


@functools.cache
def layer_of(module: str) -> int | None:
    """The layer of a dotted module name; an empty package __init__ is a leaf."""
    relative = module.removeprefix("buzzbotd.") if module != "buzzbotd" else "buzzbotd"
    best: tuple[int, int] | None = None     # (length of the name matched, layer)
    for level, names in enumerate(LAYERS):
        for covered in names:
            if relative == covered or relative.startswith(covered + "."):
                if best is None or len(covered) > best[0]:
                    best = (len(covered), level)
    if best is None and modules()[module].read_text().strip() == "":
        return 0
    return None if best is None else best[1]


def cycles(edges: list[Import]) -> list[list[Import]]:
    """Each cycle between modules, once, as the imports that close it (Tarjan's
    strongly connected components; one cycle shown per component)."""
    graph: dict[str, list[Import]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for edge in graph.get(node, []):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(sorted(component)[0], component, graph) for component in components]


def _one_cycle(start: str, component: set[str], graph: dict[str, list[Import]]) -> list[Import]:
    """A shortest path of imports from `start` back to itself inside `component`."""
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph.get(node, []):
                if edge.target == start:
                    return paths[node] + [edge]
                if edge.target in component and edge.target not in paths:
                    paths[edge.target] = paths[node] + [edge]
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules() if layer_of(name) is None]
    assert not unplaced, f"modules no layer covers (add them to LAYERS): {unplaced}"


def test_no_import_goes_up_a_layer() -> None:
    upward = [f"{edge} (layer {layer_of(edge.source)} → {layer_of(edge.target)})"
              for edge in imports()
              if None not in (layer_of(edge.source), layer_of(edge.target))
              and layer_of(edge.target) > layer_of(edge.source)]    # type: ignore[operator]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    found = cycles(imports())
    assert not found, "import cycles:\n" + "\n\n".join(
        "\n".join(str(edge) for edge in cycle) for cycle in found)


def test_every_module_says_what_it_is() -> None:
    """Each module opens with a docstring (its first line saying what the module
    is: that part is for review); an empty package __init__ needs none."""
    silent = [str(path.relative_to(PACKAGE.parent)) for path in modules().values()
              if (text := path.read_text()).strip() and ast.get_docstring(ast.parse(text)) is None]
    assert silent == [], f"modules without a docstring: {silent}"


@pytest.mark.parametrize("source, expected", [
    ("import buzzbotd.web.server\n", ["buzzbotd.web.server"]),
    ("from buzzbotd.db import meta, DatabaseOwner\n", ["buzzbotd.db.meta", "buzzbotd.db"]),
    ("from buzzbotd import _build\n", ["buzzbotd"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from buzzbotd.price import Quote\n",
     ["buzzbotd.price"]),
    ("def f():\n    from . import handlers\n", ["buzzbotd.web.handlers"]),
    ("import json\nfrom tornado import web\n", []),
])
def test_the_walk_sees_every_kind_of_import(tmp_path: Path, source: str,
                                             expected: list[str]) -> None:
    """The walk itself, on a module written here: a test that cannot see an
    import cannot fail on it."""
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    found = [edge.target for edge in imports_of("buzzbotd.web.probe", probe, modules())]
    assert found == expected


def test_an_upward_import_and_a_cycle_are_caught() -> None:
    edges = [Import("buzzbotd.config", "buzzbotd.db.owner", "buzzbotd/config/__init__.py", 3),
             Import("buzzbotd.db.owner", "buzzbotd.config", "buzzbotd/db/owner.py", 9)]
    assert layer_of("buzzbotd.config") < layer_of("buzzbotd.db.owner")   # type: ignore[operator]
    assert [[str(edge) for edge in cycle] for cycle in cycles(edges)] == [[
        "buzzbotd/config/__init__.py:3: buzzbotd.config imports buzzbotd.db.owner",
        "buzzbotd/db/owner.py:9: buzzbotd.db.owner imports buzzbotd.config"]]


# What `check-config` must never load: the check is the daemon's first step on
# a Pi (ExecStartPre=, every package upgrade) and reads nothing but the file.
NOT_FOR_CHECK_CONFIG = ("peewee", "sqlite3", "_sqlite3", "psycopg", "tweepy", "telegram",
                        "tornado", "httpx", "gspread", "prometheus_client")


def test_check_config_imports_no_database_network_or_web_library(tmp_path: Path) -> None:
    """With every part on and a PostgreSQL database.url (which used to import
    peewee and sqlite3 for the URL's helpers): `python -X importtime` lists every
    module the process loaded."""
    import subprocess
    import sys

    from tests.support import REPO, write_config

    config = write_config(
        tmp_path, x={"enabled": True, "consumer_key": "ck", "consumer_secret": "cs",
                     "access_token": "at", "access_token_secret": "ats"},
        telegram={"enabled": True, "token": "123456:TEST-token_abc"},
        http={"listen": "127.0.0.1:8780"},
        database={"url": "postgresql://buzzbotd:hunter2@db.example:5432/buzzbotd"})
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "buzzbotd", "check-config",
                           "--config", str(config)], capture_output=True, text=True, cwd=REPO,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
              if line.startswith("import time:") and "|" in line}
    assert "buzzbotd.config" in loaded, done.stderr[-2000:]     # the listing is real
    unwanted = sorted(name for name in loaded if name.split(".")[0] in NOT_FOR_CHECK_CONFIG)
    assert unwanted == [], f"check-config loaded {unwanted}"
