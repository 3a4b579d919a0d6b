"""The Python examples in README.md run as written (each block in a fresh interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(block, tmp_path):
    script = "import labkit as lk\n" + block
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=90, cwd=tmp_path, env={"LABKIT_QUICK": "1", "PATH": ""})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
