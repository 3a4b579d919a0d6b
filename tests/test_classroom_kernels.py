"""`lk.join` in two real kernels: lesson 05's chat client, one class server, messages both ways."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest
from kernel_session import run as execute

from labkit.course.kernels import start_kernel

pytestmark = pytest.mark.notebook


@pytest.fixture
def class_server():
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "serve", "--classroom", "--host",
                             "127.0.0.1", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip()
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.timeout(180)
def test_two_kernels_share_one_room(class_server):
    # two students: two machines, so each kernel keeps its personal class token in its own folder
    homes = [tempfile.mkdtemp(prefix="student-", dir=os.environ["XDG_CONFIG_HOME"]) for _ in range(2)]
    kernels = [start_kernel(env={**os.environ, "XDG_CONFIG_HOME": home})
               for home in homes]
    try:
        (_, a), (_, b) = kernels
        for client, name in ((a, "ada"), (b, "bo")):
            execute(client, f"import labkit as lk\nlab = lk.join({class_server!r})\n"
                            f"me = lk.chat_ws(lab, {name!r})\n")
        clash = execute(b, "try:\n    lk.chat_ws(lab, '\\u0430da')\n    print('joined')\n"
                           "except Exception as exc:\n    print('refused', exc)\n")
        assert clash.startswith("refused") and "409" in clash
        execute(a, "me.send('hello from kernel A')")
        execute(b, "me.send('hello from kernel B')")
        deadline = time.time() + 20
        seen: dict[str, str] = {}
        while time.time() < deadline:  # read again until both kernels saw both (or time is up)
            for label, client in (("a", a), ("b", b)):
                seen[label] = execute(client, "print(sorted(m['data']['text'] for m in me.messages))")
            if all("kernel A" in s and "kernel B" in s for s in seen.values()):
                break
            time.sleep(0.3)
        for label in ("a", "b"):
            assert "hello from kernel A" in seen[label] and "hello from kernel B" in seen[label], seen
        # one machine, one clock: the estimate is off by at most half its fastest round trip (so by
        # less than half of the whole sync), however busy the machine is
        offset = execute(a, "import time\nstarted = time.time()\nestimate = lab.sync_clock()\n"
                            "print(abs(estimate) <= (time.time() - started) / 2, lab.url.count('@'))")
        assert offset.split() == ["True", "1"]
    finally:
        for km, client in kernels:
            client.stop_channels()
            km.shutdown_kernel(now=True)
