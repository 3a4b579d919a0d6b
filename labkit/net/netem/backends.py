"""Where the engine runs: its own process (default) or a thread of the caller's, and the control channel.

The process backend starts `python -S -m labkit.net.netem CONFIG_JSON` and talks JSON lines over its
stdin (calls) and stdout (answers): `{"op": ..., "args": {...}}` -> `{"ok": ...}` or
`{"error": ...}`; the first line the process writes is `{"port": N}` once it listens. Its own
process means its timers do not wait for the GIL of a kernel that computes. The process ends when
its stdin closes (stop(), garbage collection, exit or death of the owner). `-S` makes it start
faster, so everything it imports must be stdlib or labkit modules that import only stdlib.
The thread backend runs the same engine on a daemon thread of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from labkit.server.listen import raise_open_file_limit  # stdlib only, as this process needs

from .engine import NetemEngine
from .link import Profile

START_TIMEOUT = 10.0
"""Seconds start() waits for the proxy process to listen (and a control call for its answer)."""


def _child_main(config_json: str) -> None:
    """Entry point of the proxy process: serve, answer control lines on stdin, exit at its EOF."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupted kernel must not kill the link
    raise_open_file_limit()  # each connection holds two descriptors here: the client's and the lab's
    config = json.loads(config_json)
    config["profile"] = Profile.from_dict(config["profile"])
    target = config.pop("target")
    engine = NetemEngine(*target, **config)
    loop = engine.new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_child_serve(engine))
    finally:
        loop.close()


async def _child_serve(engine: NetemEngine) -> None:
    loop = asyncio.get_running_loop()
    out = sys.stdout.fileno()

    def reply(message) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(out, data):]

    try:
        await engine.serve()
    except OSError as exc:
        reply({"error": f"cannot listen on {engine.host}:{engine.port}: {exc}"})
        return
    reply({"port": engine.port})
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                reply({"ok": await engine.command(request["op"], request.get("args", {}))})
            except (ValueError, KeyError, TypeError) as exc:
                reply({"error": str(exc)})
    finally:
        await engine.aclose()


class _ProcessBackend:
    """A NetemEngine in a child process, driven by JSON lines over its stdin and stdout."""

    def __init__(self, config: dict):
        self.config = config
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._buffer = b""

    def start(self) -> int:
        package_root = str(Path(__file__).resolve().parents[3])  # the folder that holds labkit/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "labkit.net.netem", json.dumps(self.config)],  # -S: start faster
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            start_new_session=True, close_fds=True)
        try:
            answer = self._read()
        except BaseException:
            self.stop()
            raise
        if "error" in answer:
            self.stop()
            raise OSError(answer["error"])
        return answer["port"]

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        """The process's stdin and stdout (the control channel)."""
        if self.proc is None or self.proc.stdin is None or self.proc.stdout is None:
            raise RuntimeError("the netem proxy process was not started")
        return self.proc.stdin, self.proc.stdout

    def _read(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        fd = self._pipes()[1].fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"the netem proxy process did not answer in {START_TIMEOUT} s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._stderr.seek(0)
                    detail = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
                    raise RuntimeError("the netem proxy process ended: " + " | ".join(detail))
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, op: str, **args):
        with self._lock:
            stdin = self._pipes()[0]
            stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
            stdin.flush()
            answer = self._read()
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer["ok"]

    def stop(self) -> None:
        _end_process(self.proc)
        self._stderr.close()


def _end_process(proc: subprocess.Popen | None) -> None:
    """Close the control pipe (the process then stops by itself), kill it if it does not."""
    if proc is None or proc.poll() is not None:
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(3)
    if proc.stdout is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdout.close()


class _ThreadBackend:
    """A NetemEngine on a daemon thread of this process (shares this interpreter's GIL)."""

    def __init__(self, config: dict):
        config = dict(config)
        config["profile"] = Profile.from_dict(config["profile"])
        self.engine = NetemEngine(*config.pop("target"), **config)

    def start(self) -> int:
        self.engine.start()
        return self.engine.port

    def call(self, op: str, **args):
        loop = self.engine.loop
        if loop is None:
            raise RuntimeError("the netem proxy thread is not running")
        future = asyncio.run_coroutine_threadsafe(self.engine.command(op, args), loop)
        return json.loads(json.dumps(future.result(START_TIMEOUT)))

    def stop(self) -> None:
        self.engine.stop()


