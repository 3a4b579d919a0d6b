"""A `redis-server` the kit starts for a cluster: free loopback port, temporary folder, no disk.

It listens on a Unix domain socket in its folder too (where the platform has them), and the
cluster's workers use that one (`local_url`): the same Redis and protocol, without the TCP/IP
stack on each hop (a PING round trip, measured on a 2-core machine: 17 µs over loopback TCP,
12 µs over the Unix socket). The TCP port stays for `redis-cli -p` and anyone else who connects.

Started through `labkit.cluster.guard`, so it stops with the kernel even if the kernel is killed.
A machine without `redis-server` gets `RedisMissing`, whose message is the install command.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 10.0
UNIX_PATH_MAX = 104
"""Longest Unix socket path that every platform takes (macOS: 104 bytes, Linux: 108)."""

INSTALL_HELP = (
    "Redis is not installed here: `redis-server` is not on PATH. The lessons that need it skip "
    "their Redis cells until you install it, then restart the kernel:\n"
    "  Debian/Ubuntu:  sudo apt-get install redis-server\n"
    "  macOS:          brew install redis\n"
    "  conda/mamba:    conda install -c conda-forge redis-server\n"
    "(or pass backplane=\"redis://host:port\" to use a Redis you already run)"
)


class RedisMissing(RuntimeError):
    """`redis-server` is not installed; the message says how to install it."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HELP)


def available() -> bool:
    """Whether `redis-server` is on PATH."""
    return shutil.which("redis-server") is not None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process on 127.0.0.1, data in memory only, removed by `stop()`."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.folder: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path | None:
        """The Unix domain socket redis-server listens on as well (None: TCP only)."""
        if self.folder is None or not hasattr(socket, "AF_UNIX"):
            return None
        path = self.folder / "redis.sock"
        return path if len(str(path)) < UNIX_PATH_MAX else None

    @property
    def local_url(self) -> str:
        """The URL for clients on this machine: the Unix socket if there is one, else `url`."""
        path = self.socket_path
        return f"unix://{path}?db=0" if path is not None else self.url

    @property
    def pid(self) -> int | None:
        """The guard's pid (redis-server is its only child)."""
        return self.process.pid if self.process else None

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RedisMissing()
        self.folder = Path(tempfile.mkdtemp(prefix="labkit-redis-"))
        for _attempt in range(3):  # a free port can be taken between asking and binding
            self.port = free_port()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "labkit.cluster.guard", exe, "--port", str(self.port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log"),
                 *(["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
                   if self.socket_path is not None else [])],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return self
            self._end_process()
        log = (self.folder / "redis.log")
        tail = log.read_text()[-400:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"redis-server did not start: {tail}")

    def _wait_ready(self) -> bool:
        import redis

        process, port = self.process, self.port
        if process is None or port is None:  # start() sets both before it waits
            raise RuntimeError("RedisServer._wait_ready called before the process was started")
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def _end_process(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if self.process.stdin is not None:  # always set: started with stdin=PIPE
                self.process.stdin.close()  # the guard stops redis-server at EOF
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        elif self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        self.process = None

    def stop(self) -> None:
        """Stop redis-server and remove its folder; safe to call twice."""
        self._end_process()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
