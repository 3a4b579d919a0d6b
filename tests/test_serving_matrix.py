"""Every listener of the kit against the same attacks: one serving path, one guard.

The entry points are all the ways the kit listens: `lk.start()`, `labkit serve`, `labkit serve
--classroom`, `labkit serve --workers` (the cluster's front door), a cluster worker on its own, the
payment provider, the network emulator and the wire tap. Each is started the way a user starts it,
with the same small limits (`--limit NAME=VALUE`), and gets the same attacks: a connection that sends
nothing, a request head that trickles in, a body that never completes, one client address trying to
take every slot, and a WebSocket whose peer stops answering pings. `SOURCES` reads the code itself,
so a listener opened any other way fails the suite.

All traffic is on loopback (peers 127.0.0.2 and 127.0.0.3 are distinct addresses there on Linux),
bounded in count and time. Assertions are about what each peer receives, never how fast.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "labkit"
LIMITS = {"max_connections": 40, "per_peer_share": 0.5, "head_timeout": 2, "body_timeout": 2,
          "ws_heartbeat": 1}
PEER_CAP = 20  # 40 x 0.5
WAIT_S = 15.0
"""Longest a test waits for an answer: several times every limit above."""

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is a loopback address on Linux"),
              pytest.mark.xdist_group("serial")]


@dataclass
class Entry:
    name: str
    port: int
    token: str | None = None
    per_peer: bool = True
    websocket: bool = True
    stop: list = field(default_factory=list)

    def target(self, path: str) -> str:
        """`path` with the token a WebSocket handshake carries (a class server's)."""
        if self.token is None:
            return path
        return path + ("&" if "?" in path else "?") + f"token={self.token}"

    @property
    def auth(self) -> str:
        """The header line an HTTP request carries on a class server."""
        return f"Authorization: Bearer {self.token}\r\n" if self.token else ""


def _limit_args() -> list[str]:
    return [arg for name, value in LIMITS.items() for arg in ("--limit", f"{name}={value}")]


def _spawn(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise RuntimeError(f"{args} printed no address")
    return proc, line


def _end(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module", params=["lk.start", "labkit serve", "labkit serve --classroom",
                                        "front door", "cluster worker", "payment provider",
                                        "netem proxy", "wire tap"])
def entry(request, tmp_path_factory):
    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer

    name = request.param
    folder = tmp_path_factory.mktemp("entry")
    lab = None
    if name in ("lk.start", "payment provider", "netem proxy", "wire tap"):
        # behind a proxy every connection comes from the proxy's address: the lab there turns its
        # per-peer share off (like a worker behind the front door), so the proxy's own is tested
        behind = {"per_peer_share": 1.0} if name in ("netem proxy", "wire tap") else {}
        lab = LabServer(LabConfig(db=str(folder / "lab.db"), **{**LIMITS, **behind})).start()
    if name == "lk.start":
        made = Entry(name, lab.port)
    elif name == "labkit serve":
        proc, url = _spawn(["labkit", "serve", *_limit_args()])
        made = Entry(name, int(url.rsplit(":", 1)[1]), stop=[lambda: _end(proc)])
    elif name == "labkit serve --classroom":
        proc, url = _spawn(["labkit", "serve", "--classroom", "--token", "student-token",
                            "--instructor-token", "teacher-token", *_limit_args()])
        port = int(re.search(r":(\d+)", url).group(1))
        made = Entry(name, port, token="student-token", stop=[lambda: _end(proc)])
    elif name == "front door":
        proc, url = _spawn(["labkit", "serve", "--workers", "1", *_limit_args()])
        made = Entry(name, int(url.rsplit(":", 1)[1]), stop=[lambda: _end(proc)])
    elif name == "cluster worker":
        proc, port = _spawn(["labkit.cluster.worker", "--id", "1", "--db", str(folder / "w.db"),
                             *_limit_args()])
        # its only peer is meant to be the front door: no per-peer share (the door has one)
        made = Entry(name, int(port), per_peer=False, stop=[lambda: _end(proc)])
    elif name == "payment provider":
        from labkit.routes.bank import BANK_STATE

        provider_url = lab.app[BANK_STATE]["provider_url"]
        made = Entry(name, int(provider_url.rsplit(":", 1)[1]), websocket=False)
    elif name == "netem proxy":
        from labkit.net.netem import NetemProxy

        net = NetemProxy.for_lab(lab, "loopback", limits={"max_connections": 40, "per_peer_share": 0.5})
        net.start()
        made = Entry(name, net.port, stop=[net.stop])
    else:
        from labkit.net.wire import WireTap
        from labkit.server.listen import Limits

        tap = WireTap(lab, limits=Limits(40, 0.5)).start()
        made = Entry(name, tap.port, stop=[tap.stop])
    if lab is not None:
        made.stop.append(lab.stop)
    yield made
    for stop in made.stop:
        stop()


def connect(entry: Entry, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", entry.port), timeout=WAIT_S,
                                    source_address=(source, 0))
    return sock


def first_line(sock: socket.socket) -> bytes:
    """The first line the server sends, or b"" if it closes (or resets) without a word."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data.split(b"\r\n")[0]


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes; True if it did within WAIT_S."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_a_connection_that_sends_nothing_gets_408_and_is_closed(entry):
    with connect(entry) as sock:
        assert first_line(sock) == b"HTTP/1.1 408 Request Timeout"
        assert closed_by_server(sock)


def test_a_request_head_that_trickles_in_gets_408(entry):
    with connect(entry) as sock:
        head = f"GET {entry.target('/healthz')} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
        sock.sendall(head)
        deadline = time.monotonic() + WAIT_S
        answer = b""
        sock.settimeout(0.25)
        while time.monotonic() < deadline and not answer:  # one byte at a time, never the end
            try:
                sock.sendall(b"a")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answer.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"


@pytest.mark.parametrize("upgrade", ["", "Upgrade: h2c\r\nConnection: Upgrade\r\n"],
                         ids=["plain", "with an Upgrade header"])
def test_a_body_that_never_completes_gets_408(entry, upgrade):
    """An Upgrade header (h2c, say) must not switch the body deadline off (it once did)."""
    path = "/charges" if entry.name == "payment provider" else "/api/notes"
    with connect(entry) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{entry.auth}{upgrade}"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"title\": ".encode())
        assert first_line(sock) == b"HTTP/1.1 408 Request Timeout"


def test_one_address_cannot_take_every_slot(entry):
    if not entry.per_peer:
        pytest.skip("a cluster worker's only peer is the front door (whose own share is tested)")
    held = [connect(entry, "127.0.0.2") for _ in range(PEER_CAP)]
    try:
        # no wait needed: the listener accepts in arrival order, so the held ones are counted
        # before it accepts the extra one below
        with connect(entry, "127.0.0.2") as extra:
            refused = first_line(extra)
        with connect(entry, "127.0.0.3") as other:
            other.sendall(f"GET {entry.target('/healthz')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Connection: close\r\n\r\n".encode())
            served = first_line(other)
    finally:
        for sock in held:
            sock.close()
    # an HTTP listener says why (503 + Retry-After); an L4 one (front door, emulator, tap) closes
    assert refused in (b"HTTP/1.1 503 Service Unavailable", b"")
    if entry.name not in ("front door", "netem proxy", "wire tap"):
        assert refused == b"HTTP/1.1 503 Service Unavailable"
    assert served.startswith(b"HTTP/1.1 ") and not served.startswith((b"HTTP/1.1 503", b"HTTP/1.1 408"))


def test_a_websocket_whose_peer_stops_answering_pings_is_closed(entry):
    if not entry.websocket:
        pytest.skip("this listener serves no WebSocket")
    with connect(entry) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {entry.target('/ws/echo')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        assert first_line(sock) == b"HTTP/1.1 101 Switching Protocols"
        assert closed_by_server(sock)  # pings went unanswered: the slot is freed


SOURCES = ("start_server(", "create_server(", "TCPSite(", "SockSite(", "UnixSite(", "run_app(",
           "loop.create_unix_server(")


def test_every_listener_is_opened_by_the_one_serving_path():
    """Only labkit/server/listen.py opens a listening socket; aiohttp apps start in
    guard.serve_app, L4 proxies in TcpProxy.serve (both through listen())."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "listen.py" and path.parent.name == "server":
            continue
        found = [s for s in SOURCES if s in path.read_text()]
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, offenders
    assert "create_server(" in (PACKAGE / "server" / "listen.py").read_text()  # the rule sees it


# -- out of descriptors: 1,100 idle connections at a 1,024 hard limit ------------------------------
KERNEL_LIKE = r"""
import sys
import labkit as lk
what = sys.argv[1]
if what == "lk.start":
    lab = lk.start()
    print(lab.port, flush=True)
else:
    cluster = lk.start_cluster(1)
    print(cluster.url.rsplit(":", 1)[1], flush=True)
for line in sys.stdin:  # the "kernel": it must keep answering whatever the clients do
    print("cell ran: " + line.strip(), flush=True)
"""


def _at_1024(args: list[str]) -> subprocess.Popen:
    import resource

    def limit() -> None:  # soft = hard = 1,024: the kit cannot raise it
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    return subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, preexec_fn=limit)


def _healthz(port: int, source: str) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S,
                                      source_address=(source, 0)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return first_line(sock)
    except (ConnectionResetError, BrokenPipeError):
        return b""


@pytest.mark.parametrize("how", ["lk.start", "lk.start_cluster", "labkit serve",
                                 "labkit serve --classroom", "cluster worker"])
def test_a_thousand_idle_connections_at_a_1024_limit_leave_the_process_answering(how, tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip("this test process needs 1,400 descriptors for its own sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    if how in ("lk.start", "lk.start_cluster"):
        proc = _at_1024(["-c", KERNEL_LIKE, how])
    elif how == "cluster worker":
        proc = _at_1024(["-m", "labkit.cluster.worker", "--id", "1", "--db", str(tmp_path / "w.db")])
    else:
        extra = ["--classroom", "--token", "t", "--instructor-token", "i"] if "classroom" in how else []
        proc = _at_1024(["-m", "labkit", "serve", *extra])
    idle: list[socket.socket] = []
    try:
        first = proc.stdout.readline().strip()
        port = int(re.search(r"(\d+)\D*$", first.split("?")[0]).group(1))
        for n in range(1100):  # from four addresses, so the cap, not one peer's share, is reached
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S,
                                                     source_address=(f"127.0.0.{2 + n % 4}", 0)))
            except OSError:
                break
        during = _healthz(port, "127.0.0.9")
        if how in ("lk.start", "lk.start_cluster"):
            proc.stdin.write("1+1\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "cell ran: 1+1"  # the kernel still runs cells
        for sock in idle:
            sock.close()
        idle.clear()
        after = b""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not after.startswith(b"HTTP/1.1 200"):
            after = _healthz(port, "127.0.0.9")
        assert proc.poll() is None  # alive
    finally:
        for sock in idle:
            sock.close()
        _end(proc)
    # while full: a clear refusal (503, or a closed connection from the L4 front door), or served
    assert during in (b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.1 200 OK", b"")
    if how != "lk.start_cluster":
        assert during != b""  # an HTTP listener always says why
    assert after == b"HTTP/1.1 200 OK"  # and once they are gone, everyone is served again
