"""Connection limits, timeouts, memory and storage bounds: what a hostile or careless client can no longer do.

Each test is bounded in count and time and uses short configured limits (never the defaults), over
real sockets on 127.0.0.1. The file-descriptor and memory tests run the lab in a subprocess, so the
limit they lower (RLIMIT_NOFILE) and the memory they read (VmRSS) belong to that lab alone.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest
from waiting import wait_until

LAB_SCRIPT = r"""
import json, os, sys
limit, options = int(sys.argv[1]), json.loads(sys.argv[2])
if limit:
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
from labkit.server.config import LabConfig
from labkit.server.listen import connection_cap
from labkit.server.runner import LabServer

config = LabConfig(**options)
lab = LabServer(config).start()
print(json.dumps({"port": lab.port, "cap": connection_cap(config.max_connections)}), flush=True)
hogged = []
for line in sys.stdin:  # the "kernel": it must keep answering whatever the lab's clients do
    command = line.strip()
    if command == "hog":  # use up every descriptor left, as a runaway kernel might
        try:
            while True:
                hogged.append(open(os.devnull))
        except OSError:
            print(f"hogging {len(hogged)}", flush=True)
    elif command == "release":
        for handle in hogged:
            handle.close()
        hogged.clear()
        print("released", flush=True)
    elif command == "files":
        handles = [open(os.devnull) for _ in range(16)]
        for handle in handles:
            handle.close()
        print("opened 16 files", flush=True)
    elif command == "rss":
        status = open("/proc/self/status").read()
        print(status.split("VmRSS:")[1].split()[0], flush=True)
    else:
        print("echo " + command, flush=True)
lab.stop()
"""


class LabProcess:
    """The lab in a subprocess, with stdin/stdout as its kernel-like command line."""

    def __init__(self, open_files: int = 0, **options):
        self.proc = subprocess.Popen([sys.executable, "-c", LAB_SCRIPT, str(open_files), json.dumps(options)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        info = json.loads(self.proc.stdout.readline())
        self.port, self.cap = info["port"], info["cap"]

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> str:
        """Stop the lab; returns what it wrote to stderr."""
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def request(port: int, target: str = "/healthz", *, rcvbuf: int | None = None,
            close: bool = False) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    connection = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}\r\n".encode())
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def get(port: int, target: str = "/healthz") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return read_all(sock)


# -- file descriptors ---------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_connections_beyond_the_cap_are_refused_and_the_process_keeps_its_descriptors():
    lab = LabProcess(open_files=256, head_timeout=60, keepalive_timeout=60, per_peer_share=1.0)
    idle: list[socket.socket] = []
    try:
        assert 64 <= lab.cap <= 256 - 64  # a quarter of the limit stays free for the rest of the process
        extra = 30
        for _ in range(lab.cap + extra):  # idle connections that send nothing, like the 1,100
            idle.append(socket.create_connection(("127.0.0.1", lab.port), timeout=10))
        readable: set[socket.socket] = set()
        deadline = time.monotonic() + 10
        while len(readable) < extra and time.monotonic() < deadline:
            readable.update(select.select(idle, [], [], 0.5)[0])
        readable.update(select.select(idle, [], [], 0.5)[0])  # and no more come
        assert len(readable) == extra  # the ones over the cap, and only those, were answered
        for sock in readable:
            answer = read_all(sock, 5)
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b"application/problem+json" in answer and b"maximum of" in answer
        # The process is not starved: it opens files and answers its "kernel" at once ...
        assert lab.ask("files") == "opened 16 files"
        assert lab.ask("1+1") == "echo 1+1"
        # ... and a new client is told clearly why it is not served.
        assert get(lab.port).startswith(b"HTTP/1.1 503 ")
        for sock in idle:
            sock.close()
        idle.clear()
        deadline = time.monotonic() + 10
        while not get(lab.port).startswith(b"HTTP/1.1 200 ") and time.monotonic() < deadline:
            time.sleep(0.1)  # the lab notices the closed connections
        assert get(lab.port).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in idle:
            sock.close()
        lab.close()


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_out_of_descriptors_the_lab_backs_off_and_recovers():
    lab = LabProcess(open_files=256)
    waiting: list[socket.socket] = []
    try:
        assert lab.ask("hog").startswith("hogging ")  # not one descriptor left in the process
        waiting = [request(lab.port, close=True) for _ in range(5)]  # queued by the OS: accept() gets EMFILE
        time.sleep(3)
        assert lab.ask("1+1") == "echo 1+1"  # the "kernel" still answers meanwhile
        assert lab.ask("release") == "released"
        for sock in waiting:  # accepted once descriptors are free again, and served
            assert read_all(sock, 10).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in waiting:
            sock.close()
        err = lab.close()
    # Out of descriptors the lab stops accepting for 50 ms, doubling up to 1 s: a handful of pauses
    # in those three seconds, where retrying at once would spin thousands of times.
    pauses = err.count("not accepting connections for")
    assert 1 <= pauses <= 12, err[-2000:]


def test_the_cap_follows_the_open_file_limit():
    from labkit.server.config import LabConfig
    from labkit.server.listen import MIN_RESERVED_FDS, connection_cap, open_file_limits

    soft, _ = open_file_limits()
    cap = connection_cap(LabConfig().max_connections)
    assert cap <= soft - max(MIN_RESERVED_FDS, soft // 4)
    assert connection_cap(10) == 10


def test_starting_the_lab_raises_the_soft_open_file_limit():
    code = ("import resource; s, h = resource.getrlimit(resource.RLIMIT_NOFILE); "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, h)); "
            "from labkit.server.runner import LabServer; lab = LabServer().start(); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], h); lab.stop()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    soft, hard = (int(x) for x in out.stdout.split())
    assert soft == min(hard, 65536) if hard > 0 else soft > 256


# -- slow clients ------------------------------------------------------------------------------------------
def trickle(socks: list[socket.socket], byte: bytes, rounds: int = 40) -> dict[socket.socket, bytes]:
    """Send one byte every 0.25 s to each socket still open; collect what comes back until each closes
    (or `rounds` pass). Returns what each socket received before the server closed it."""
    received = {sock: b"" for sock in socks}
    open_socks = set(socks)
    for _ in range(rounds):
        for sock in list(open_socks):
            try:
                sock.send(byte)
            except OSError:
                open_socks.discard(sock)
        readable, _, _ = select.select(list(open_socks), [], [], 0.25)
        for sock in readable:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            received[sock] += chunk
            if not chunk:
                open_socks.discard(sock)
        if not open_socks:
            break
    assert not open_socks, f"{len(open_socks)} of {len(socks)} slow connections still open"
    return received


def test_slowloris_heads_get_408_and_are_closed(make_lab):
    lab = make_lab(head_timeout=1, keepalive_timeout=2)
    socks = [socket.create_connection(("127.0.0.1", lab.port), timeout=10) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        received = trickle(socks, b"a")
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in received.values())
        assert b"request head" in next(iter(received.values()))
        assert get(lab.port).startswith(b"HTTP/1.1 200 ")  # everyone else is served meanwhile
    finally:
        for sock in socks:
            sock.close()


def test_a_slow_second_head_on_a_kept_alive_connection_gets_408(make_lab):
    lab = make_lab(head_timeout=1, keepalive_timeout=30)
    sock = socket.create_connection(("127.0.0.1", lab.port), timeout=10)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status": "ok"}'):
            first += sock.recv(65536)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        (second,) = trickle([sock], b"b").values()
        assert second.startswith(b"HTTP/1.1 408 ")
    finally:
        sock.close()


def test_a_connection_that_sends_nothing_is_closed(make_lab):
    lab = make_lab(head_timeout=1, keepalive_timeout=2)
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_slow_bodies_get_408_and_are_closed(make_lab):
    lab = make_lab(body_timeout=1)
    socks = [socket.create_connection(("127.0.0.1", lab.port), timeout=10) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"POST /api/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nab")
        received = trickle(socks, b"c")
        for answer in received.values():
            assert answer.startswith(b"HTTP/1.1 408 ") and b"application/problem+json" in answer
    finally:
        for sock in socks:
            sock.close()


def test_idle_keep_alive_connections_are_closed(make_lab):
    lab = make_lab(keepalive_timeout=1)
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_all(sock)  # the answer, then the end of the connection once it idled
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status": "ok"}')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmRSS from /proc")
def test_slow_readers_hold_bounded_memory():
    clients, size = 60, 1024 * 1024
    lab = LabProcess(write_timeout=2)
    socks: list[socket.socket] = []
    try:
        get(lab.port, "/api/echo?size=1048576")  # warm up: the first large answer's one-off costs
        before = int(lab.ask("rss"))
        socks = [request(lab.port, f"/api/echo?size={size}", rcvbuf=4096) for _ in range(clients)]
        # every answer has started (its first bytes wait in each socket), so its body exists, and
        # stalled on a peer that does not read
        wait_until(lambda: len(select.select(socks, [], [], 0.1)[0]) == clients, 30,
                   what="every answer started")
        grown_kib = int(lab.ask("rss")) - before
        # A lab that buffered each answer would hold 60 x 1 MiB (and the issue saw 1.5 GB for 300).
        assert grown_kib < 32 * 1024, f"RSS grew {grown_kib} KiB for {clients} stalled 1 MiB answers"
        assert get(lab.port).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()
        lab.close()


def test_a_peer_that_stops_reading_is_closed_after_the_write_timeout(make_lab):
    # 32 MiB answers outgrow what the kernel buffers for a peer with a 4 KiB window, so the lab's own
    # buffer fills and its write timeout applies.
    clients, size = 10, 32 * 1024 * 1024
    lab = make_lab(write_timeout=1, max_body=size)
    socks = [request(lab.port, f"/api/echo?size={size}", rcvbuf=4096) for _ in range(clients)]
    try:
        time.sleep(2.5)  # longer than the write timeout: nobody read a byte meanwhile
        received = [len(read_all(sock, 15)) for sock in socks]
        assert all(n < size for n in received), received  # every stalled answer was abandoned
        assert get(lab.port).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()


# -- notes store bounds ------------------------------------------------------------------------------------
def post(lab, path: str, body: dict, method: str = "POST") -> tuple[int, dict, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(lab.url + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_a_note_larger_than_the_limit_is_413(make_lab):
    lab = make_lab(max_note_bytes=2048)
    assert post(lab, "/api/notes", {"title": "fits", "body": "x" * 1500})[0] == 201
    status, headers, problem = post(lab, "/api/notes", {"title": "big", "body": "x" * 3000})
    assert status == 413 and problem["title"] == "Content Too Large" and problem["limit"] == 2048
    assert headers["Content-Type"] == "application/problem+json"
    # control characters travel as \u0001 (6 bytes): 400 of them do not fit in 2 KiB of JSON
    assert post(lab, "/api/notes", {"title": "ctl", "body": "\u0001" * 400})[0] == 413
    assert post(lab, "/api/notes/1", {"title": "fits", "body": "y" * 3000}, "PUT")[0] == 413


def test_the_store_total_is_bounded_with_507(make_lab):
    lab = make_lab(max_store_bytes=10_000)
    note = {"title": "t", "body": "x" * 1497}  # 1 + 1497 + len("[]") = 1500 stored bytes
    statuses = [post(lab, "/api/notes", note)[0] for _ in range(8)]
    assert statuses == [201] * 6 + [507] * 2
    status, _, problem = post(lab, "/api/notes", note)
    assert status == 507 and problem["title"] == "Insufficient Storage" and problem["limit"] == 10_000
    assert post(lab, "/api/notes/1", {"title": "t", "body": "x" * 2500}, "PUT")[0] == 507  # grows past it
    assert post(lab, "/api/notes/1", {"title": "t", "body": "short"}, "PUT")[0] == 200  # shrinking is fine
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(lab.url + "/api/notes/2", method="DELETE"), timeout=10)
    assert post(lab, "/api/notes", note)[0] == 201  # room again


def test_a_page_is_bounded_by_per_page_times_the_note_limit(make_lab):
    limit = 2048
    lab = make_lab(max_note_bytes=limit)
    # 300 control characters = 1800 bytes of JSON: each note fits, close to the limit
    statuses = [post(lab, "/api/notes", {"title": "n", "body": "\u0001" * 300})[0] for _ in range(30)]
    assert statuses == [201] * 30
    body = get(lab.port, "/api/notes?per_page=100").partition(b"\r\n\r\n")[2]
    assert len(json.loads(body)["items"]) == 30
    assert len(body) <= 30 * limit + 1024  # the page's own members (links, counts) take < 1 KiB


def test_the_bounds_are_in_the_openapi_document(lab):
    doc = json.loads(get(lab.port, "/openapi.json").partition(b"\r\n\r\n")[2])
    for path, method in (("/api/notes", "post"), ("/api/notes/{id}", "put"), ("/api/notes/{id}", "patch")):
        responses = doc["paths"][path][method]["responses"]
        assert "413" in responses and "507" in responses, (path, method)
    assert "429" in doc["paths"]["/api/chat/messages"]["post"]["responses"]


# -- chat flood ---------------------------------------------------------------------------------------------
def test_chat_rate_limit_is_429_over_rest_per_member(make_lab):
    lab = make_lab(chat_rate=0.001, chat_burst=3)
    statuses = [post(lab, "/api/chat/messages", {"name": "flood", "text": f"m{i}"})[0] for i in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    status, headers, problem = post(lab, "/api/chat/messages", {"name": "flood", "text": "again"})
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert problem["title"] == "Too Many Requests" and problem["retry_after"] > 0
    assert post(lab, "/api/chat/messages", {"name": "calm", "text": "hello"})[0] == 201  # others unaffected


def test_chat_rate_limit_is_an_error_message_over_websocket(make_lab):
    import asyncio

    from websockets.asyncio.client import connect

    lab = make_lab(chat_rate=0.001, chat_burst=3)

    async def flood() -> list[dict]:
        async with connect(f"{lab.ws_url}/ws/chat?name=wsflood", compression=None) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # welcome
            for i in range(5):
                await ws.send(json.dumps({"type": "message", "text": f"m{i}"}))
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(5)]

    replies = asyncio.run(flood())
    kinds = sorted(r["type"] for r in replies)
    assert kinds == ["error", "error", "message", "message", "message"]
    assert all("too fast" in r["detail"] for r in replies if r["type"] == "error")
    stored = json.loads(get(lab.port, "/api/chat/messages").partition(b"\r\n\r\n")[2])
    assert [m["data"]["text"] for m in stored if m["data"]["name"] == "wsflood"] == ["m0", "m1", "m2"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX only")
def test_guard_closes_nothing_on_a_well_behaved_websocket(make_lab):
    """A WebSocket that reads its messages is never cut by the write timeout, however long it lives."""
    import asyncio

    from websockets.asyncio.client import connect

    lab = make_lab(write_timeout=1, keepalive_timeout=1, head_timeout=1)

    async def chat() -> int:
        echoed = 0
        async with connect(f"{lab.ws_url}/ws/echo", compression=None) as ws:
            for _ in range(15):
                await ws.send("x" * 200_000)
                echoed += len(await asyncio.wait_for(ws.recv(), 10)) == 200_000
                await asyncio.sleep(0.2)  # idle longer than the HTTP timeouts in total
        return echoed

    assert asyncio.run(chat()) == 15
