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

import pytest
from kernel_session import Kernel, cell_source

pytestmark = [pytest.mark.timeout(300)]


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
    assert kernel.run(cell_source("00-start-here.ipynb", "536bdb71"))["error"] is None  # lab = lk.start()
    longest = cell_source("00-start-here.ipynb", "e496e9ca")  # the 5 s ping meter
    # ~4 widget updates per 0.1 s slice: interrupt about a second in
    stopped = kernel.run(longest, interrupt_at_output=40)
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(longest + "\nprint(lk.ping_summary(pings))")
    assert again["error"] is None and "echoes: median" in again["text"], again
    assert _left(kernel) == NOTHING


def test_interrupting_lesson_01s_4g_conditional_gets_leaves_no_connection(kernel):
    assert kernel.run(cell_source("01-rest-request-response.ipynb", "a774b333"))["error"] is None
    setup = ('mine = lk.own_lab(lab)\n'  # as the cell before it does: the kernel's own lab
             'with lk.rest(lab) as maker:\n'
             '    note_url = maker.post("/api/notes", json={"title": "big", "body": "x" * 20000})'
             '.headers["Location"]')
    assert kernel.run(setup)["error"] is None
    longest = cell_source("01-rest-request-response.ipynb", "b9f94ee3")  # 200 vs 304 through 4G
    stopped = kernel.run(longest, interrupt_after="measuring")
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(longest)
    assert again["error"] is None and "measuring" in again["text"], again
    assert _left(kernel) == NOTHING


def test_interrupting_lesson_01s_shared_cache_tour_leaves_no_connection(kernel):
    assert kernel.run(cell_source("01-rest-request-response.ipynb", "a774b333"))["error"] is None
    assert kernel.run("from labkit.lessons import caching\nmine = lk.own_lab(lab)")["error"] is None
    tour = cell_source("01-rest-request-response.ipynb", "c7a1e004")  # eight cases, two shared caches
    stopped = kernel.run(tour, interrupt_after_s=1.0)  # mid-way through its cases (no output)
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(tour)
    assert again["error"] is None, again
    assert _left(kernel) == NOTHING


def test_interrupting_lesson_04s_server_cpu_runs_leaves_no_subscriber(kernel):
    assert kernel.run(cell_source("04-live-updates.ipynb", "bb547034"))["error"] is None
    longest = cell_source("04-live-updates.ipynb", "3eaa3ae0")  # 20 clients × 4 transports, 4 s each
    stopped = kernel.run(longest, interrupt_after_s=8.0)  # during the second of five runs
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == NOTHING
    again = kernel.run(longest)
    assert again["error"] is None, again
    assert _left(kernel) == NOTHING
