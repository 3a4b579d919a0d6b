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

import os
import time
from pathlib import Path

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
    manager, client = start_kernel(env=env, cwd=str(NOTEBOOKS))
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
        wait_until(lambda: connections_to(port) > 0, 60)
        time.sleep(1.5)  # well inside the cell (it runs several seconds in normal mode)
        during = connections_to(port)
        assert emulators_of(kernel_pid) >= 1   # the cell talks through an emulated link
        manager.interrupt_kernel()
        reply = reply_to(client, msg_id, timeout=120)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply

        # every connection the cell opened is closed, the emulator's process is gone, and the
        # lab's hub has no subscriber; a bounded wait lets the last closes land
        wait_until(lambda: connections_to(port) == 0, 20,
                   what=f"no connection left after the interrupt ({during} during the cell)")
        wait_until(lambda: emulators_of(kernel_pid) == 0, 20)
        assert hub_subscribers(url) == {}
        time.sleep(2)  # and nothing the cell started comes back
        assert connections_to(port) == 0 and hub_subscribers(url) == {}
        # the kernel is usable again, and the cell runs to its end after the interrupt
        assert run(client, "print(lab.running)").strip() == "True"
        run(client, cell_source(path, long_cell), timeout=180)
        wait_until(lambda: connections_to(port) == 0, 20)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
