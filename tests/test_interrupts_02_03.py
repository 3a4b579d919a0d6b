"""The kernel's stop button during the longest cell of lessons 02 and 03 leaves no connection behind.

Each test starts a real kernel in normal mode, runs the lesson's first cell (the lab) and then its
longest cell (02: the upload during push, over an emulated 4G link; 03: the payload sweep over 4G),
waits until that cell has connections open to the lab (counted in /proc/net/tcp by this process),
interrupts the kernel as the stop button does, and then reads the lab's /api/hub and the
connection table: the cell ends with KeyboardInterrupt, no hub topic has a subscriber, no
connection to the lab is left, no emulator process of the kernel is left running, and the kernel
and its lab go on working.
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


def hub_subscribers(url: str) -> dict[str, int]:
    """Subscribers per topic and transport from /api/hub (empty: nobody follows a topic)."""
    with urllib.request.urlopen(url + "/api/hub", timeout=10) as resp:
        hub = json.load(resp)
    return {f"{topic}/{kind}": n for topic, state in hub["topics"].items()
            for kind, n in state.get("subscribers", {}).items() if n}


def connections_to(port: int) -> int:
    """Established TCP connections whose far end is 127.0.0.1:`port`: every connection to the lab,
    from a client or from a proxy in front of it (the wire tap, the emulator), by /proc/net/tcp."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def emulators_of(pid: int) -> int:
    """Running child processes of `pid` that are an emulated link (python -m labkit.net.netem)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if parent == pid and state != "Z" and b"labkit.net.netem" in cmdline:
            count += 1
    return count


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
    # lesson, its lab cell, cells run before the longest one, the longest cell
    "02": ("02-websocket-push.ipynb", "0e380659", (), "c1988132"),
    "03": ("03-latency-lab.ipynb", "0fac65db", (), "63b73072"),
}
SETUP = {"03": "sizes = lk.pick([64, 16384], [16, 1024, 16384, 65536])"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lesson", sorted(CASES))
def test_interrupting_the_longest_cell_leaves_no_connection(lesson):
    path, lab_cell, before, long_cell = CASES[lesson]
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_QUICK"}  # normal mode: long cells
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(NOTEBOOKS))
    try:
        run(client, cell_source(path, lab_cell), timeout=120)
        for cell in before:
            run(client, cell_source(path, cell), timeout=120)
        if lesson in SETUP:
            run(client, SETUP[lesson])
        url = run(client, "print(lab.url)").strip()
        kernel_pid = int(run(client, "import os; print(os.getpid())").strip())
        port = int(url.rsplit(":", 1)[1])
        assert hub_subscribers(url) == {} and connections_to(port) == 0

        msg_id = client.execute(cell_source(path, long_cell))
        assert wait_for(lambda: connections_to(port) > 0, 60), "the cell never reached the lab"
        time.sleep(1.5)  # well inside the cell (it runs several seconds in normal mode)
        during = connections_to(port)
        assert emulators_of(kernel_pid) >= 1   # the cell talks through an emulated link
        manager.interrupt_kernel()
        reply = reply_to(client, msg_id, timeout=120)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply

        # every connection the cell opened is closed, the emulator's process is gone, and the
        # lab's hub has no subscriber; a bounded wait lets the last closes land
        assert wait_for(lambda: connections_to(port) == 0, 20), (during, connections_to(port))
        assert wait_for(lambda: emulators_of(kernel_pid) == 0, 20), emulators_of(kernel_pid)
        assert hub_subscribers(url) == {}
        time.sleep(2)  # and nothing the cell started comes back
        assert connections_to(port) == 0 and hub_subscribers(url) == {}
        # the kernel is usable again, and the cell runs to its end after the interrupt
        assert run(client, "print(lab.running)").strip() == "True"
        run(client, cell_source(path, long_cell), timeout=180)
        assert wait_for(lambda: connections_to(port) == 0, 20), connections_to(port)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
