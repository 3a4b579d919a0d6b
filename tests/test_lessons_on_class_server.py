"""Every lesson on a class server: each notebook runs top to bottom in a real kernel (quick mode) with
`lab = lk.join(<join URL>)` in place of its `lab = lk.start(...)` line, as instructors/classroom.md
tells students to do, against a real `labkit serve --classroom` process.

What holds for each lesson:
- no cell fails and none prints a traceback (a part that must not touch the shared server, such as a
  restart or a load run, goes to the student's own lab through `lk.own_lab(lab)` and says so);
- the kernel really joined: it exchanged the join code for a personal token (kept in its
  joined.json), one the class server minted and accepts.

The lessons' browser widgets are not drawn here (no browser): tests/test_browser_class_server.py
drives a board and the whiteboard in Chromium against a class server on another origin (the token
on every fetch and WebSocket, CORS for the origins the class server allows).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import requests
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from notebook_runner import CELL_TIMEOUT_S, LESSON_TIMEOUT_S, LESSONS, NOTEBOOKS_DIR, error_outputs

from labkit._env import environment
from labkit.course.kernels import AsyncIpcKernelManager

pytestmark = pytest.mark.notebook

START_LINE = re.compile(r"^lab = lk\.start\(.*\)(.*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def class_server(tmp_path_factory):
    """A class server in its own process: its join URL."""
    folder = tmp_path_factory.mktemp("class")
    token_file = folder / "instructor-token"
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "serve", "--classroom", "--host",
                             "127.0.0.1", "--port", "0", "--instructor-token-file", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"no join URL from the class server: {url!r}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def joined(lesson: Path, url: str) -> nbformat.NotebookNode:
    """The lesson with its `lab = lk.start(...)` line replaced by `lab = lk.join(url)`."""
    nb = nbformat.read(lesson, as_version=4)
    swapped = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and not swapped and START_LINE.search(cell.source):
            cell.source = START_LINE.sub(lambda m: f"lab = lk.join({url!r}){m.group(1)}", cell.source,
                                         count=1)
            swapped = 1
    nb.metadata["labkit_joined"] = bool(swapped)
    return nb


@pytest.mark.timeout(LESSON_TIMEOUT_S)
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_on_a_class_server(path, class_server, lesson_kernel, tmp_path):
    url = class_server
    nb = joined(path, url)
    if not nb.metadata["labkit_joined"]:
        assert "lk.start(" not in path.read_text(), f"{path.name}: an lk.start line this test missed"
    config_home = tmp_path / "config"  # this kernel's joined.json, apart from the other lessons'
    env = {"LABKIT_QUICK": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "XDG_CONFIG_HOME": str(config_home)}
    if lesson_kernel.jupyter_path is not None:
        env["JUPYTER_PATH"] = lesson_kernel.jupyter_path
    with environment(env):
        try:
            NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=lesson_kernel.name, allow_errors=True,
                           kernel_manager_class=AsyncIpcKernelManager,
                           store_widget_state=False,
                           resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
        except (CellTimeoutError, DeadKernelError) as exc:
            pytest.fail(f"{path.name} on a class server: {type(exc).__name__}: {str(exc)[:2000]}")
    errors = error_outputs(nb.cells)
    assert not errors, f"{path.name} on a class server printed errors: {errors[:2]}"
    if not nb.metadata["labkit_joined"]:
        return
    tokens = json.loads((config_home / "labkit" / "joined.json").read_text())
    assert len(tokens) == 1, f"{path.name}: the kernel should hold one personal token, has {tokens}"
    personal = next(iter(tokens.values()))
    base = url.split("/?")[0]
    me = requests.get(base + "/api/clock", headers={"Authorization": f"Bearer {personal}"}, timeout=10)
    assert me.status_code == 200, f"{path.name}: the class server does not know the kernel's token"
