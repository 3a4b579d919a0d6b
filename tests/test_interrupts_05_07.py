"""The kernel's stop button during the longest cell of lessons 05 and 07 leaves no connection behind.

Each test starts a real kernel in normal mode, runs the lesson's first cell (the lab) and then its
longest cell (05: the simulated room; 07: the chaos run), waits until that cell's clients are
connected (read from the lab's /api/hub by this process), interrupts the kernel as the stop button
does, and reads /api/hub again: the interrupted cell ends with KeyboardInterrupt, every subscriber
it opened is gone, and none comes back (no reconnect loop survives the interrupt).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest
from kernel_session import (
    NOTEBOOKS,
    cell_source,
    connections_to,
    hub_subscribers,
    reply_to,
    run,
)
from waiting import wait_until

from labkit.course.kernels import start_kernel

pytestmark = pytest.mark.notebook

def publish_one(url: str) -> None:
    """One feed event: the lab notices a closed SSE stream only when it next writes to it (the
    handler of an idle stream is not cancelled when its client goes), so after the clients'
    side is closed, one event lets the lab's count catch up."""
    body = json.dumps({"rate_hz": 10, "ticks": 1, "kind": "walk"}).encode()
    request = urllib.request.Request(url + "/api/feed/source", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


CASES = {
    # lesson, its lab cell, its longest cell, "the cell is in the middle" (subscribers seen)
    "05": ("05-chat.ipynb", "f73aac2a", "37984065", lambda subs: subs.get("chat/ws", 0) >= 2),
    "07": ("07-reliability.ipynb", "76dea02f", "585d8311",
           lambda subs: sum(n for k, n in subs.items() if k.startswith("feed/")) >= 100),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lesson", sorted(CASES))
def test_interrupting_the_longest_cell_leaves_no_connection(lesson):
    path, lab_cell, long_cell, started = CASES[lesson]
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_QUICK"}  # normal mode: long cells
    manager, client = start_kernel(env=env, cwd=str(NOTEBOOKS))
    try:
        run(client, cell_source(path, lab_cell), timeout=120)
        url = run(client, "print(lab.url)").strip()
        port = int(url.rsplit(":", 1)[1])
        assert hub_subscribers(url) == {}

        msg_id = client.execute(cell_source(path, long_cell))
        wait_until(lambda: started(hub_subscribers(url)), 90)
        time.sleep(1.0)  # well inside the cell (it runs 10 s or more in normal mode)
        during = hub_subscribers(url)
        manager.interrupt_kernel()
        reply = reply_to(client, msg_id, timeout=120)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply

        # every socket the cell opened is closed (the clients' side, and the lab's count); a
        # bounded wait lets the lab see the last closes
        wait_until(lambda: connections_to(port) == 0, 20)
        publish_one(url)
        wait_until(lambda: hub_subscribers(url) == {}, 20)
        time.sleep(2)  # and no reconnect loop brings any of them back
        assert hub_subscribers(url) == {} and connections_to(port) == 0, (during, hub_subscribers(url))
        # the kernel is usable again and its lab still answers
        assert run(client, "print(lab.running)").strip() == "True"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
