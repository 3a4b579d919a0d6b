"""Helpers for browser tests: JupyterLab on a free loopback port, driven by Playwright in Debian Chromium.

No browser is downloaded: Playwright drives the system Chromium through `executable_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """The system Chromium, or None (then browser tests skip, saying why)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NO_CHROMIUM = "Chromium is not installed (apt-get install chromium); .ci/run installs it"

TRY_SOCKET = """(url) => new Promise((resolve) => {
    let ws;
    try { ws = new WebSocket(url); } catch (err) { resolve('error: ' + err); return; }
    const timer = setTimeout(() => resolve('no answer'), 8000);
    ws.onopen = () => { clearTimeout(timer); ws.close(); resolve('opened'); };
    ws.onclose = (e) => { clearTimeout(timer); resolve('refused ' + e.code); };
})"""
"""page.evaluate(TRY_SOCKET, url): 'opened', 'refused <close code>', 'no answer' or 'error: ...'."""


def host_rules(*names: str) -> str:
    """A Chromium flag mapping each name to 127.0.0.1 inside that browser only."""
    return "--host-resolver-rules=" + ", ".join(f"MAP {name} 127.0.0.1" for name in names)


@contextlib.contextmanager
def launch(extra_args: Sequence[str] = ()) -> Iterator:
    """The system Chromium, headless, driven by Playwright's sync API (CHROMIUM_FLAGS plus
    `extra_args`), closed on exit; skips the test when Chromium is not installed.

    Playwright's sync API keeps an event loop running in the main thread while it is open, so
    `asyncio.run` inside the `with` block fails: hold it in a module fixture or a block of its own.
    """
    path = chromium_path()
    if path is None:
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=[*CHROMIUM_FLAGS, *extra_args])
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def jupyterlab(workdir: Path, root: Path, token: str, *options: str, base_url: str = "/",
               env: dict | None = None, port: int | None = None) -> Iterator[int]:
    """JupyterLab serving `root` on 127.0.0.1 (its config and runtime files under `workdir`, quick
    mode for its kernels, `env` added), answering /api/status: its port (`port`, or a free one).
    Stopped on exit; a lab that does not start fails the test with the end of its log."""
    port = port or free_port()
    environ = {**os.environ, "LABKIT_QUICK": "1", "JUPYTER_CONFIG_DIR": str(workdir / "cfg"),
               "JUPYTER_RUNTIME_DIR": str(workdir / "rt"), **(env or {})}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--ServerApp.base_url={base_url}", "--LabApp.expose_app_in_browser=True", *options]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = workdir / "jupyter.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=environ)
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{base_url}api/status?token={token}",
                                           timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        proc.kill()
                        proc.wait(15)
                        break
                    time.sleep(0.3)
            if proc.poll() is not None:
                pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
            yield port
        finally:
            stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """End a server process the tests started: SIGTERM, then SIGKILL if it is still there after
    `timeout` seconds; never leaves it running."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    """JupyterLab serving a copy of notebooks/ on 127.0.0.1 (so a run never writes into the repo)."""
    if chromium_path() is None:
        pytest.skip(NO_CHROMIUM)
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", workdir / "notebooks")
    token = "labkit-browser-test"
    with jupyterlab(workdir, workdir / "notebooks", token, "--ServerApp.disable_check_xsrf=True") as port:
        yield {"base": f"http://127.0.0.1:{port}", "token": token, "workdir": workdir}


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (see `launch`), closed after its test module.

    Module scope matters: Playwright's sync API keeps an event loop running in the main thread while
    it is open, and `asyncio.run` in any later test would fail.
    """
    with launch() as chromium:
        yield chromium


def open_notebook(browser, lab: dict, name: str):
    """Open notebooks/<name> in JupyterLab and wait until its kernel is idle; returns the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=60_000,
    )
    return page


def run_all_cells(page) -> None:
    """Run every cell of the open notebook, as Run > Run All Cells does."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def open_page(browser, url: str, *, viewport: dict | None = None):
    """A page of its own browser context (own cookies: another person or tab) at `url`, a
    notebook in JupyterLab, returned once a cell shows and the notebook's kernel is idle."""
    context = browser.new_context(viewport=viewport or {"width": 1300, "height": 1000})
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }", timeout=90_000)
    return page


def run_cell(page, index: int) -> None:
    """Run the open notebook's cell `index` (as a click on it and Shift+Enter would)."""
    page.evaluate(
        "(i) => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = i;"
        " return window.jupyterapp.commands.execute('notebook:run-cell'); }", index)


def discs(game) -> list[str]:
    """A Connect Four widget's 42 cells (locator of its `.lk-game`), row by row: 'X', 'O' or ''."""
    return game.evaluate("game => [...game.querySelectorAll('.lk-cell')].map(c => c.dataset.disc || '')")


def wait_until_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until no cell is queued or running (no `[*]` prompts)."""
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-InputArea-prompt')]"
        ".some(p => p.textContent.includes('*'))",
        timeout=timeout_ms,
    )


def screenshot(page, name: str) -> Path:
    """Keep a screenshot under test-artifacts/ (CI can upload it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
