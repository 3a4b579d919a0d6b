"""A malformed request prints one line in the kernel's output, not a traceback."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import socket, time
from labkit.server.runner import LabServer
with LabServer() as lab:
    with socket.create_connection(("127.0.0.1", lab.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        print(s.recv(1000).split(b"\r\n")[0].decode())
    time.sleep(0.3)
"""


def test_malformed_request_logs_one_line_without_traceback():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "HTTP/1.0 400 Bad Request"
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lab server: Error handling request"), run.stderr
    assert "Traceback" not in run.stderr and "BadHttpMessage" in lines[0]


def test_configured_logging_is_left_alone():
    script = "import logging; logging.basicConfig(level=logging.INFO)\n" + SCRIPT
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "Traceback" in run.stderr  # the user asked for full logs: they get them


