"""What the tests that drive a real kernel share: a lesson cell's source, running code in a kernel
(plain, or with the stop button pressed at a chosen moment: `Kernel`), and what a cell may have left
behind (the lab's hub subscribers, connections to the lab's port, read from /proc/net/tcp).

Imported by tests/test_interrupts_*.py and tests/test_classroom_kernels.py (tests/ is on the path,
as for notebook_runner.py).
"""

from __future__ import annotations

import json
import os
import queue
import time
import urllib.request
from pathlib import Path

from labkit.course.kernels import start_kernel

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def cell_source(lesson: str, cell_id: str) -> str:
    """The source of the cell `cell_id` of notebooks/`lesson`."""
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


def reply_to(client, msg_id: str, timeout: float = 60) -> dict:
    """The execute_reply of `msg_id` (other replies are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


class Kernel:
    """A real python3 kernel in normal mode (LABKIT_QUICK unset), working in notebooks/."""

    def __init__(self):
        env = {k: v for k, v in os.environ.items() if k != "LABKIT_QUICK"}  # normal mode
        self.km, self.kc = start_kernel(env=env, cwd=str(NOTEBOOKS))

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
