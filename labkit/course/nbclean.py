"""Keep lesson notebooks clean in git: strip outputs, execution counts and widget state.

Used as a git "clean" filter (see README, contributors): git pipes each notebook it stages through
`python -m labkit clean-notebook` and stores what comes out, so a session's outputs never reach a
commit while your working copy keeps them. `python -m labkit clean-notebook FILE...` cleans files
in place instead.

    git config filter.labkit-notebook.clean "python -m labkit clean-notebook"
    git config filter.labkit-notebook.smudge cat
    # .gitattributes (committed): *.ipynb filter=labkit-notebook
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
"""Cell metadata a run or a front end writes (timings, folding), not part of the lesson."""


def clean(notebook: dict) -> dict:
    """`notebook` (parsed .ipynb JSON) without outputs, execution counts, widget state or run
    timings. The cells' sources and ids stay as they are."""
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook.get("cells", []):
        for key in VOLATILE_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return notebook


def clean_text(text: str) -> str:
    """The cleaned notebook as nbformat writes it (1-space indent, sorted keys, final newline)."""
    cleaned = clean(json.loads(text))
    return json.dumps(cleaned, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(paths: list[str]) -> int:
    """Clean stdin to stdout (git filter) or, given paths, each file in place."""
    if not paths:
        sys.stdout.write(clean_text(sys.stdin.read()))
        return 0
    for path in map(Path, paths):
        original = path.read_text(encoding="utf-8")
        cleaned = clean_text(original)
        if cleaned != original:
            path.write_text(cleaned, encoding="utf-8")
            print(f"cleaned {path}")
    return 0
