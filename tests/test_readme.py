"""The project documents itself: the README's tree of buzzbotd/ is the real tree."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_tree() -> set[str]:
    """Every path the README's "How it is built" tree names under buzzbotd/."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## How it is built"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w.]*/?)(?:\s{2,}|$)", line)
        if not match or not (match[2].endswith("/") or match[2].endswith(".py")):
            continue            # a description's second line, or not a name
        indent, name = len(match[1]), match[2]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "/".join([p for _, p in stack] + [name.rstrip("/")])
        if name.endswith("/"):
            stack.append((indent, name.rstrip("/")))
        paths.add(path)
    return {p for p in paths if p == "buzzbotd" or p.startswith("buzzbotd/")}


def test_the_readme_tree_is_the_real_tree() -> None:
    real = {str(p.relative_to(REPO)) for p in (REPO / "buzzbotd").rglob("*.py")
            if p.name != "_build.py"}       # written by debian/rules into the package only
    real |= {str(p.parent.relative_to(REPO)) for p in (REPO / "buzzbotd").rglob("__init__.py")}
    named = readme_tree()
    assert sorted(real - named) == [], "in the tree, missing from the README"
    assert sorted(named - real) == [], "in the README, missing from the tree"
