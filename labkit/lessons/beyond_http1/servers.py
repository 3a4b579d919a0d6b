"""The lesson's servers: one ASGI app served by hypercorn over TLS (HTTP/1.1 and HTTP/2, by ALPN)
and over QUIC (HTTP/3), with the lab's small resources:

- `GET /api/echo?size=N`: N bytes (at most 1 MiB), as the lab's echo;
- `GET /api/notes/1`: a small JSON note, a stand-in for the notes resource (read only here);
- `GET /healthz`: `{"status": "ok"}`;
- `/ws/echo`: a WebSocket echo (over HTTP/1.1; over HTTP/2 too, RFC 8441, which hypercorn serves).

Host and Origin are checked as the lab checks them (`server.hostcheck.host_allowed`,
`server.websocket.origin_allowed`): a foreign Host gets 403 problem+json, a foreign Origin's
WebSocket handshake 403.

One serving path: the TCP listener is opened by `labkit.server.listen.listen()`, so the connection
cap, the per-peer share and the EMFILE back-off apply to it as to every listener of the kit; each
accepted connection is handed to hypercorn's `TCPServer` (its asyncio connection handler). Over the
cap a connection is closed right after the TLS handshake with nothing written (no `refusal=`: the
lab's HTTP/1.1 503 would be garbage to a client that chose h2 by ALPN). `stop()` aborts every
served connection (an idle keep-alive client never sends TLS's close_notify, which a clean close
would wait for). What does NOT apply, because hypercorn is not aiohttp:
- the head deadline (408) and the body deadline (408) of `guard.serve_app`: hypercorn has none.
  An idle connection, and one whose request head never completes, is closed after
  `keepalive_timeout` without an answer (hypercorn's keep-alive timer), and a head is bounded to
  16 KiB (`h11_max_incomplete_size`);
- the write timeout: hypercorn waits on its transport's drain with no deadline;
- the WebSocket heartbeat of `server.websocket.accept`: hypercorn sends no pings; a WebSocket
  whose peer vanished stays until TCP notices. Messages are bounded to 1 MiB as in the lab.
The QUIC side cannot use `listen()` at all: it is one UDP socket (no accept, no per-connection
descriptor), opened here with `create_datagram_endpoint`; its bounds are aioquic's (stream and
data flow-control limits) and hypercorn's queue of 10 datagrams per socket.

Certificates come from the kit's trustme authority (`labkit.net.tls.authority()`), written to a
temporary folder because aioquic loads its chain from files. ALPN: the TLS listener offers
`h2` and `http/1.1`; QUIC offers `h3`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from ...net import tls
from ...server.hostcheck import host_allowed
from ...server.listen import Limits, Listener, listen
from ...server.websocket import origin_allowed

MAX_BYTES = 1 << 20
"""Largest `?size=` and WebSocket message, as in the lab."""
NOTE = {"id": 1, "title": "beyond HTTP/1.1", "body": "a small resource, the same over every protocol"}
_LIVE_FOLDERS: set[Path] = set()
"""Certificate folders of servers still running; one exit hook removes what a kernel left."""


@atexit.register
def _remove_live_folders() -> None:
    for folder in list(_LIVE_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)


def _problem(status: int, detail: str) -> tuple[int, bytes]:
    titles = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 413: "Content Too Large"}
    return status, json.dumps({"type": "about:blank", "title": titles[status], "status": status,
                               "detail": detail}).encode()


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


@dataclass
class Counters:
    """What the servers saw, for tests and the lesson: TCP connections accepted, requests by
    HTTP version, WebSocket messages echoed, Host/Origin refusals."""

    tcp_connections: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    ws_messages: int = 0
    refused: int = 0
    alpn: dict[str, int] = field(default_factory=dict)


class App:
    """The ASGI application both listeners serve."""

    def __init__(self, counters: Counters, bound: str = "127.0.0.1"):
        self.counters, self.bound = counters, bound

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return
        headers = _headers(scope)
        host = headers.get("host") or headers.get(":authority", "")
        if not host_allowed(host, self.bound):
            self.counters.refused += 1
            return await self._answer(scope, send, *_problem(
                403, f"Host {host[:100]!r} is not allowed (a guard against DNS rebinding)."))
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send, headers, host)
        version = scope.get("http_version", "1.1")
        self.counters.requests[version] = self.counters.requests.get(version, 0) + 1
        path = scope["path"]
        if path == "/healthz":
            return await self._answer(scope, send, 200, b'{"status": "ok"}')
        if path == "/api/notes/1":
            return await self._answer(scope, send, 200, json.dumps(NOTE).encode())
        if path == "/api/echo":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            try:
                size = int(query.get("size", ["0"])[0])
            except ValueError:
                return await self._answer(scope, send, *_problem(400, "size must be an integer"))
            if not 0 <= size <= MAX_BYTES:
                return await self._answer(scope, send, *_problem(413, f"size must be 0..{MAX_BYTES}"))
            return await self._answer(scope, send, 200, b"x" * size, "application/octet-stream")
        return await self._answer(scope, send, *_problem(404, f"no route {path[:100]!r} here"))

    async def _answer(self, scope, send, status: int, body: bytes,
                      content_type: str | None = None) -> None:
        if scope["type"] == "websocket":  # refused before the upgrade (RFC 8441 / denial response)
            await send({"type": "websocket.close", "code": 1008})
            return
        kind = content_type or ("application/json" if status < 400 else "application/problem+json")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope, receive, send, headers, host) -> None:
        if scope["path"] != "/ws/echo":
            await send({"type": "websocket.close", "code": 1008})
            return
        if not origin_allowed(headers.get("origin"), host=host):
            self.counters.refused += 1
            await send({"type": "websocket.close", "code": 1008})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            self.counters.ws_messages += 1
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


class VersionServers:
    """hypercorn serving `App` on 127.0.0.1: TLS over TCP (`tcp_port`, ALPN h2 and http/1.1,
    through `listen()`) and QUIC over UDP (`udp_port`, h3). Runs on its own thread and loop, as the
    lab does. `start()`, `stop()`, or `with VersionServers() as servers:`."""

    def __init__(self, *, quic: bool = True, limits: Limits | None = None, keepalive_timeout: float = 30.0):
        self.quic = quic
        self.limits, self.keepalive_timeout = limits or Limits(), keepalive_timeout
        self.counters = Counters()
        self.tcp_port = 0
        self.udp_port = 0
        self.listener: Listener | None = None
        self.quic_error: str | None = None
        """Why QUIC is not served (None when it is)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._folder: Path | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        """The QUIC server's task."""
        self._connections: set[asyncio.Task] = set()
        """One task per served TCP connection."""
        self._transports: set[asyncio.WriteTransport] = set()
        """The served TCP connections' transports, aborted by stop()."""
        self._udp_transport: asyncio.BaseTransport | None = None

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.tcp_port}{path}"

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> VersionServers:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labkit-http-versions",
                                        daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop.close()
            self._loop = None
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                _LIVE_FOLDERS.discard(self._folder)
                self._folder = None

    def __enter__(self) -> VersionServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _config(self):
        from hypercorn.config import Config

        self._folder = Path(tempfile.mkdtemp(prefix="labkit-h3-"))
        _LIVE_FOLDERS.add(self._folder)  # removed at exit if the kernel never stops the servers
        cert = tls.authority().issue_cert(*tls.HOSTS)
        pem = self._folder / "server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
        config = Config()
        config.certfile = config.keyfile = str(pem)
        config.keep_alive_timeout = self.keepalive_timeout
        config.websocket_max_message_size = MAX_BYTES
        config.alpn_protocols = ["h2", "http/1.1"]
        config.accesslog = None
        config.errorlog = None
        return config

    async def _start(self) -> None:
        from hypercorn.app_wrappers import ASGIWrapper
        from hypercorn.asyncio.tcp_server import TCPServer
        from hypercorn.asyncio.worker_context import WorkerContext

        config = self._config()
        loop = asyncio.get_running_loop()
        app = ASGIWrapper(App(self.counters))
        context = WorkerContext(None)
        self._stopping = asyncio.Event()
        state: dict = {}

        async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.counters.tcp_connections += 1
            ssl_object = writer.get_extra_info("ssl_object")
            alpn = (ssl_object.selected_alpn_protocol() if ssl_object else None) or "http/1.1"
            self.counters.alpn[alpn] = self.counters.alpn.get(alpn, 0) + 1
            task = asyncio.current_task()
            if task is not None:
                self._connections.add(task)
                task.add_done_callback(self._connections.discard)
            self._transports.add(writer.transport)
            try:
                # a peer that breaks TLS's close (data after close_notify) ends the connection
                # here (asyncio's stream callback would log a traceback)
                with contextlib.suppress(OSError):
                    await TCPServer(app, loop, config, context, state, reader, writer)
            except asyncio.CancelledError:
                # only stop() cancels this task, after aborting its transport, for a connection
                # that did not end by itself: that end is the one asked for (and Python 3.11's
                # stream callback would log a cancelled task as an error); any other goes on up
                stopping = self._stopping
                if stopping is None or not stopping.is_set():
                    raise
            finally:
                self._transports.discard(writer.transport)

        def factory() -> asyncio.Protocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=2**16), serve_one)

        self.listener = await listen(factory, "127.0.0.1", 0, limits=self.limits,
                                     ssl=config.create_ssl_context())
        self.tcp_port = self.listener.port
        if self.quic:
            try:
                await self._start_quic(app, config, context, state)
            except (ImportError, OSError) as exc:  # no aioquic, or no UDP here
                self.quic_error = f"{type(exc).__name__}: {exc}"

    async def _start_quic(self, app, config, context, state) -> None:
        from hypercorn.asyncio.udp_server import UDPServer

        loop = asyncio.get_running_loop()
        import aioquic  # noqa: F401  (hypercorn imports it lazily; fail here, clearly)

        transport, protocol = await loop.create_datagram_endpoint(
            lambda: UDPServer(app, loop, config, context, state), local_addr=("127.0.0.1", 0))
        self._udp_transport = transport
        self.udp_port = transport.get_extra_info("sockname")[1]
        task = loop.create_task(protocol.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self._udp_transport is not None:
            self._udp_transport.close()
        if self._stopping is not None:
            self._stopping.set()
        # abort, not close: closing a TLS connection waits for the peer's close_notify, which an
        # idle client (a student's httpx pool) never sends, and hypercorn's close awaits that;
        # then each connection's task is cancelled (hypercorn's does not end on the abort alone)
        for transport in list(self._transports):
            transport.abort()
        for task in [*self._connections, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._connections, *self._tasks, return_exceptions=True)
        if self.listener is not None:
            await self.listener.wait_closed()
