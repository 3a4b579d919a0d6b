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
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def cell_source(lesson: str, cell_id: str) -> str:
    nb = json.loads((NOTEBOOKS / lesson).read_text())
    cell = next(c for c in nb["cells"] if c.get("id") == cell_id)
    return "".join(cell["source"])


def run(client, code: str, timeout: float = 60) -> str:
    """Run `code` in the kernel; returns its stdout; fails on an error."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")

    client.execute_interactive(code, output_hook=hook, timeout=timeout)
    assert not errors, errors
    return "".join(out)


def subscribers(url: str) -> dict[str, int]:
    """Subscribers per topic and transport, e.g. {"feed/ws": 67, "feed/sse": 67}, from /api/hub."""
    with urllib.request.urlopen(url + "/api/hub", timeout=10) as resp:
        hub = json.load(resp)
    return {f"{topic}/{kind}": n for topic, state in hub["topics"].items()
            for kind, n in state.get("subscribers", {}).items() if n}


def connections_to(port: int) -> int:
    """Established TCP connections whose far end is 127.0.0.1:`port` (the clients' side of every
    connection to the lab), from /proc/net/tcp: what the client closed, whatever the lab's
    bookkeeping says."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def publish_one(url: str) -> None:
    """One feed event: the lab notices a closed SSE stream only when it next writes to it (the
    handler of an idle stream is not cancelled when its client goes), so after the clients'
    side is closed, one event lets the lab's count catch up."""
    body = json.dumps({"rate_hz": 10, "ticks": 1, "kind": "walk"}).encode()
    request = urllib.request.Request(url + "/api/feed/source", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def wait_for(predicate, limit_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def reply_to(client, msg_id: str, timeout: float = 60) -> dict:
    """The execute_reply of `msg_id` (other replies are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


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
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(NOTEBOOKS))
    try:
        run(client, cell_source(path, lab_cell), timeout=120)
        url = run(client, "print(lab.url)").strip()
        port = int(url.rsplit(":", 1)[1])
        assert subscribers(url) == {}

        msg_id = client.execute(cell_source(path, long_cell))
        assert wait_for(lambda: started(subscribers(url)), 90), subscribers(url)
        time.sleep(1.0)  # well inside the cell (it runs 10 s or more in normal mode)
        during = subscribers(url)
        manager.interrupt_kernel()
        reply = reply_to(client, msg_id, timeout=120)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply

        # every socket the cell opened is closed (the clients' side, and the lab's count); a
        # bounded wait lets the lab see the last closes
        assert wait_for(lambda: connections_to(port) == 0, 20), connections_to(port)
        publish_one(url)
        assert wait_for(lambda: subscribers(url) == {}, 20), (during, subscribers(url))
        time.sleep(2)  # and no reconnect loop brings any of them back
        assert subscribers(url) == {} and connections_to(port) == 0, (during, subscribers(url))
        # the kernel is usable again and its lab still answers
        assert run(client, "print(lab.running)").strip() == "True"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
