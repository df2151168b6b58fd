"""The README's Layout section names every package and module, and nothing that is not there.

Pure: reads README.md and lists the package's files; no import of the package, no I/O beyond.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "celery_watchdog"


def layout_tree() -> str:
    """The fenced block of the README's ``## Layout`` section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```\n(.*?)```", section, re.S)
    assert match, "the Layout section has no tree"
    return match.group(1)


def named_paths(tree: str) -> dict[str, str]:
    """Each path the tree names (relative to the package, ``/`` for folders), with its line.

    A line is ``<indent><name> <what it holds>``; two spaces of indent per level below
    ``celery_watchdog/``. A line that does not start with a name (a continuation) is skipped.
    """
    lines = tree.splitlines()
    assert lines[0].strip() == "celery_watchdog/", lines[0]
    stack: list[str] = []
    named: dict[str, str] = {}
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip(" "))
        name = line.strip().split(" ")[0] if line.strip() else ""
        if not (name.endswith("/") or "." in name) or indent % 2:
            continue
        depth = indent // 2 - 1
        stack[depth:] = [name]
        path = "".join(stack)
        assert line.strip() != name, f"{path}: says nothing about what it holds"
        named[path] = line
    return named


def actual_paths() -> set[str]:
    """Every package (``x/``) and module under celery_watchdog/, less ``__init__.py``."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts:
            continue
        if path.name == "__init__.py":
            if rel.parent != Path("."):
                found.add(rel.parent.as_posix() + "/")
        else:
            found.add(rel.as_posix())
    return found


def test_every_package_and_module_is_in_the_readme_layout() -> None:
    missing = actual_paths() - set(named_paths(layout_tree()))
    assert not missing, f"README's Layout does not name: {sorted(missing)}"


def test_everything_the_readme_layout_names_exists() -> None:
    named = named_paths(layout_tree())
    gone = [path for path in named if path != "__init__.py" and not (PACKAGE / path).exists()]
    assert not gone, f"README's Layout names what is not there: {sorted(gone)}"


def test_the_layout_parser_reads_nesting() -> None:
    tree = "celery_watchdog/\n  a.py   x\n  b/     y\n    c.py z\n  d.py   w\n"
    assert set(named_paths(tree)) == {"a.py", "b/", "b/c.py", "d.py"}
