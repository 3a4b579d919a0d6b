"""Interrupting the longest cell of lessons 00, 01 and 04 in a real kernel leaves nothing connected.

Each test starts a real IPython kernel (this venv's), runs the lesson's own set-up cell and its
longest cell in normal mode (so that it runs long enough to be caught mid-way), interrupts the
kernel as the ■ button does (SIGINT) once the cell is under way, and checks the cell ended with
KeyboardInterrupt. A last cell then reads the lab's `/api/hub` (every hub topic's subscribers), the
lab's open WebSockets (`lab.status()`), the kernel's own TCP connections to the lab and its child
processes (the 4G emulator of lesson 01 runs in one): none is left behind. The cell is then run
again and completes: the lab is still usable. Counts only, no timing is asserted.
"""

from __future__ import annotations

import json
import os
import queue
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(300)]

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"

LEFT_BEHIND = """
import json, time, urllib.request
import psutil
def _left_behind(settle_s=5.0):
    deadline = time.monotonic() + settle_s
    while True:
        with urllib.request.urlopen(lab.url + "/api/hub") as reply:
            hub = json.load(reply)
        conns = [c for c in psutil.Process().net_connections("tcp") if c.status == "ESTABLISHED"
                 and c.raddr and lab.port in (c.laddr.port, c.raddr.port)]
        found = {"subscribers": {t: v["subscribers"] for t, v in hub["topics"].items()
                                 if v["subscribers"]},
                 "websockets": lab.status()["open_websockets"],
                 "established": len(conns),
                 "children": len([p for p in psutil.Process().children(recursive=True)
                                  if p.is_running() and p.status() != psutil.STATUS_ZOMBIE])}
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
print("LEFT " + json.dumps(_left_behind()))
"""
NOTHING = {"subscribers": {}, "websockets": 0, "established": 0, "children": 0}


def _cell(notebook: str, cell_id: str) -> str:
    nb = json.loads((NOTEBOOKS / notebook).read_text())
    return "".join(next(c for c in nb["cells"] if c.get("id") == cell_id)["source"])


class Kernel:
    def __init__(self):
        from jupyter_client.manager import KernelManager

        env = {k: v for k, v in os.environ.items() if k != "LABKIT_QUICK"}  # normal mode
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(NOTEBOOKS))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, *, interrupt_after: str | None = None,
            interrupt_at_output: int | None = None, interrupt_after_s: float | None = None,
            timeout: float = 240) -> dict:
        """Run `code`; interrupt the kernel once a line containing `interrupt_after` was printed,
        once the cell has sent `interrupt_at_output` outputs and widget updates (a widget prints
        nothing), or `interrupt_after_s` after it started (a cell that shows nothing). Returns
        the printed text, the error's name (or None), and the number of outputs and widget
        updates seen."""
        msg_id = self.kc.execute(code)
        text, error, interrupted, outputs = [], None, False, 0
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if (interrupt_after_s is not None and not interrupted
                    and time.monotonic() - started >= interrupt_after_s):
                self.km.interrupt_kernel()
                interrupted = True
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind in ("stream", "display_data", "comm_msg", "update_display_data"):
                outputs += 1
            if kind == "stream":
                text.append(content["text"])
            if not interrupted and (
                    (interrupt_after and kind == "stream" and interrupt_after in content["text"])
                    or (interrupt_at_output is not None and outputs >= interrupt_at_output)):
                self.km.interrupt_kernel()
                interrupted = True
            if kind == "error":
                error = content["ename"]
            elif kind == "status" and content["execution_state"] == "idle":
                return {"text": "".join(text), "error": error, "interrupted": interrupted,
                        "outputs": outputs}
        raise AssertionError(f"the cell did not finish in {timeout} s: {''.join(text)[-2000:]}")

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel():
    k = Kernel()
    yield k
    k.close()


def _left(kernel) -> dict:
    out = kernel.run(LEFT_BEHIND)
    assert out["error"] is None, out
    return json.loads(out["text"].split("LEFT ", 1)[1])


def test_interrupting_lesson_00s_ping_meter_leaves_no_connection(kernel):
    assert kernel.run(_cell("00-start-here.ipynb", "536bdb71"))["error"] is None  # lab = lk.start()
    longest = _cell("00-start-here.ipynb", "e496e9ca")  # the 5 s ping meter
    # ~4 widget updates per 0.1 s slice: interrupt about a second in
    stopped = kernel.run(longest, interrupt_at_output=40)
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(longest + "\nprint(lk.ping_summary(pings))")
    assert again["error"] is None and "echoes: median" in again["text"], again
    assert _left(kernel) == NOTHING


def test_interrupting_lesson_01s_4g_conditional_gets_leaves_no_connection(kernel):
    assert kernel.run(_cell("01-rest-request-response.ipynb", "a774b333"))["error"] is None
    setup = ('mine = lk.own_lab(lab)\n'  # as the cell before it does: the kernel's own lab
             'with lk.rest(lab) as maker:\n'
             '    note_url = maker.post("/api/notes", json={"title": "big", "body": "x" * 20000})'
             '.headers["Location"]')
    assert kernel.run(setup)["error"] is None
    longest = _cell("01-rest-request-response.ipynb", "b9f94ee3")  # 200 vs 304 through 4G
    stopped = kernel.run(longest, interrupt_after="measuring")
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(longest)
    assert again["error"] is None and "measuring" in again["text"], again
    assert _left(kernel) == NOTHING


def test_interrupting_lesson_01s_shared_cache_tour_leaves_no_connection(kernel):
    assert kernel.run(_cell("01-rest-request-response.ipynb", "a774b333"))["error"] is None
    assert kernel.run("from labkit.lessons import caching\nmine = lk.own_lab(lab)")["error"] is None
    tour = _cell("01-rest-request-response.ipynb", "c7a1e004")  # eight cases, two shared caches
    stopped = kernel.run(tour, interrupt_after_s=1.0)  # mid-way through its cases (no output)
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(tour)
    assert again["error"] is None, again
    assert _left(kernel) == NOTHING


def test_interrupting_lesson_04s_server_cpu_runs_leaves_no_subscriber(kernel):
    assert kernel.run(_cell("04-live-updates.ipynb", "bb547034"))["error"] is None
    longest = _cell("04-live-updates.ipynb", "3eaa3ae0")  # 20 clients × 4 transports, 4 s each
    stopped = kernel.run(longest, interrupt_after_s=8.0)  # during the second of five runs
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(longest)
    assert again["error"] is None, again
    assert _left(kernel) == NOTHING
