"""The import arrows of DESIGN.md hold: notebooks -> labkit -> clients/measure/plots/widgets, and the
server only through sockets. Read from the source with `ast`, so a new module is checked too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "labkit"


def labkit_imports(path: Path) -> set[str]:
    """Absolute names of the labkit modules a file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            found.update(n for n in names if n.startswith("labkit"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("labkit"))
    return found


def files(sub: str) -> list[Path]:
    root = PACKAGE / sub
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


RULES = [
    ("clients", "labkit.server", "clients talk to the server only through sockets"),
    ("server", "labkit.clients", "the server never imports clients"),
    ("server", "labkit.plots", "the server never imports plots"),
    ("server", "labkit.widgets", "the server never imports widgets"),
    ("measure", "labkit.", "measure.py imports nothing of ours"),
]


@pytest.mark.parametrize(("where", "forbidden", "why"), RULES, ids=[r[2] for r in RULES])
def test_import_arrows(where, forbidden, why):
    offenders = {}
    for path in files(where):
        bad = sorted(n for n in labkit_imports(path) if n.startswith(forbidden))
        if bad:
            offenders[str(path.relative_to(PACKAGE.parent))] = bad
    assert not offenders, f"{why}: {offenders}"


def test_the_checker_sees_imports():
    """The rules above could pass by finding nothing: make sure imports are really read."""
    assert "labkit.clients.ws" in labkit_imports(PACKAGE / "widgets" / "ping.py")
    assert "labkit._loop" in labkit_imports(PACKAGE / "clients" / "rest.py")
