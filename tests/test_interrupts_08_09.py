"""Interrupting the longest cell of lessons 08 and 09 in a real kernel leaves nothing connected.

Each test starts a real IPython kernel (this venv's), runs the lesson's own set-up and its longest
cell in normal mode (so it runs long enough to be caught mid-way), waits for the cell's first
progress line, interrupts the kernel as the ■ button does (SIGINT) and checks the cell ended with
KeyboardInterrupt. A last cell then reads the lab's `/api/hub` (every hub topic's subscribers),
`/api/games` and the kernel's own TCP connections to the lab: none is left behind. The same cell
is run again afterwards and completes (the lab is still usable).
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
        with urllib.request.urlopen(lab.url + "/api/games") as reply:
            games = json.load(reply)
        ports = {lab.port}
        conns = [c for c in psutil.Process().net_connections("tcp") if c.status == "ESTABLISHED"
                 and c.raddr and (c.laddr.port in ports or c.raddr.port in ports)]
        found = {"subscribers": {t: v["subscribers"] for t, v in hub["topics"].items()
                                 if v["subscribers"]},
                 "game_sockets": sum(g.get("sockets", 0) for g in games["games"]),
                 "established": len(conns)}
        if not (found["subscribers"] or found["established"]) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
print("LEFT " + json.dumps(_left_behind()))
"""


@pytest.fixture
def kernel():
    k = Kernel()
    yield k
    k.close()


def _left(kernel) -> dict:
    out = kernel.run(LEFT_BEHIND)
    assert out["error"] is None, out
    return json.loads(out["text"].split("LEFT ", 1)[1])


def test_interrupting_lesson_08s_move_delay_games_leaves_no_connection(kernel):
    assert kernel.run(cell_source("08-games-and-collaboration.ipynb", "ce6666cc"))["error"] is None
    longest = cell_source("08-games-and-collaboration.ipynb", "a1095d51")  # 12 games over 3 links at once
    stopped = kernel.run(longest, interrupt_after="moves played")
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert "240 of 240" not in stopped["text"]  # caught mid-way
    assert _left(kernel) == {"subscribers": {}, "game_sockets": 0, "established": 0}


def test_interrupting_lesson_09s_commands_to_devices_leaves_no_connection(kernel):
    assert kernel.run(cell_source("09-capstone-bank.ipynb", "9e45e285"))["error"] is None
    longest = cell_source("09-capstone-bank.ipynb", "4ab8b1d5")  # polled, then pushed commands
    stopped = kernel.run(longest, interrupt_after="ws:")  # the devices hold their WebSockets
    assert stopped["interrupted"] and stopped["error"] == "KeyboardInterrupt", stopped
    assert _left(kernel) == {"subscribers": {}, "game_sockets": 0, "established": 0}
    again = kernel.run(longest)  # the lab is still usable: the same cell runs to its end
    assert again["error"] is None and "ws: " in again["text"]
    assert _left(kernel) == {"subscribers": {}, "game_sockets": 0, "established": 0}
