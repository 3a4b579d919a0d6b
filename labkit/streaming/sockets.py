"""The one owner of streaming sockets: every push to a WebSocket, SSE or long-poll client is sent here.

Two ways to feed a socket, one set of rules:
- a Hub subscription (feed, chat, bank, IoT): `topic_websocket` subscribes and opens the socket,
  `pump_to_websocket` (or, for SSE, `_pump_frames` with `SSE_FRAMING`) sends the replay and then
  every event; the subscription's queue is bounded (`hub.QUEUE_LIMIT`);
- a room (game, collab): each member's socket gets an `Outbox`, a bounded queue (messages and bytes)
  drained by its own task, so a room hands a message to every member without waiting for any.

The rules, in one place:
- states open -> closing -> closed (`Outbox.state`; a hub stream is closing once it is in
  SLOW_CLOSES); nothing is queued once closing;
- one Close frame per connection: a slow consumer's Close is written by hand behind its buffered
  events (`linger_close`), and `peer_closed` closes the socket once the client's answer is read,
  so aiohttp (streaming sockets have autoclose off) never writes a second one; every other close
  is aiohttp's `WebSocketResponse.close()`;
- the slow-consumer rule: a member whose queue is full is closed with 1008 and a reason saying where
  to resume (`since=SEQ&epoch=E` for hub streams); the Close waits behind what is buffered for at
  most SLOW_CLOSE_GRACE_S, then the peer is cut off; everyone else goes on at once;
- each stream socket's kernel send buffer is bounded (`bound_send_buffer`), so "slow" is reached
  after a known amount of memory.

The fast path writes pre-encoded frames to the socket's transport itself (one encoding per event,
however many subscribers): aiohttp has no public call for that. It writes underneath aiohttp (as
`server.websocket.LabWebSocket` sets its compressor), so `check_aiohttp()` refuses to run on an
aiohttp version it was not tested with.

Size: longer than 500 lines because it is the one owner of streaming sockets by design: every path
that writes to a WebSocket, SSE or long-poll client is here, so the close and slow-consumer rules
cannot drift apart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import re
import socket
import weakref
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from labkit.server.problem import ProblemError
from labkit.server.validate import query_integer, query_number
from labkit.server.websocket import MaskCheck, accept

from .hub import (
    EpochMismatch,
    Event,
    SlowConsumer,
    Subscription,
    Topic,
    epoch_problem,
    subscribe_resuming,
)

TESTED_AIOHTTP = ((3, 14), (3, 14))
"""aiohttp versions (major, minor), lowest and highest, whose transport and close behaviour the fast
path and `linger_close` were tested with."""


def check_aiohttp(version: str = aiohttp.__version__) -> None:
    """Fail at import, with what to do, on an aiohttp outside TESTED_AIOHTTP."""
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    low, high = TESTED_AIOHTTP
    if not low <= parts <= high:
        raise ImportError(
            f"labkit's streaming sockets were tested with aiohttp {low[0]}.{low[1]} to "
            f"{high[0]}.{high[1]}, not {version}: install a tested one "
            f"(pip install 'aiohttp>={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}')")


check_aiohttp()

MAX_SEQ = 2**63 - 1
"""Largest SEQ a client may name (a topic would need centuries to get there)."""


SLOW_CLOSE_CODE = WSCloseCode.POLICY_VIOLATION
"""Close code (1008) a WebSocket gets when it falls too far behind (slow-consumer policy)."""


SEND_TIMEOUT_S = 5.0
"""A write a client does not accept within this many seconds ends its stream."""


SLOW_CLOSE_GRACE_S = 30.0
"""How long the 1008 Close frame of a slow consumer may wait behind its buffered events (s)."""


MIN_HEARTBEAT_S, MAX_HEARTBEAT_S = 0.05, 300.0
"""Range of `?heartbeat=S` (seconds between pings, or SSE comment lines)."""

EPOCH_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""What an epoch token looks like (a client may only echo one it was given)."""


def parse_seq(raw: str | None, name: str = "since") -> int | None:
    """A SEQ from the query or a header: None when absent; 422 naming `name` unless it is written
    as plain digits from 0 to MAX_SEQ (an empty value is not "absent": it is refused too)."""
    return None if raw is None else query_integer(raw, name, 0, MAX_SEQ)


def parse_epoch(raw: str | None, name: str = "epoch") -> str | None:
    """An epoch token from the query: None when absent; 422 naming `name` unless it is 1-64
    letters, digits, "_" or "-"."""
    if raw is None:
        return None
    if not re.fullmatch(EPOCH_PATTERN, raw):
        raise ProblemError(422, f"{name} must be an epoch token as the server sent it "
                           "(1-64 letters, digits, _ or -)",
                           errors=[{"field": name, "message": "not an epoch token"}])
    return raw


def parse_heartbeat(raw: str | None) -> float | None:
    """`?heartbeat=S` (seconds): None when absent; 422 unless a number in the allowed range."""
    if raw is None:
        return None
    return query_number(raw, "heartbeat", MIN_HEARTBEAT_S, MAX_HEARTBEAT_S)


def sse_id(epoch: str, seq: int) -> str:
    """The SSE event id of an event: "<epoch>:<seq>"."""
    return f"{epoch}:{seq}"


async def pump_to_websocket(request: web.Request, ws: web.WebSocketResponse, sub: Subscription,
                            replay: list, counters, render=lambda item: item.json) -> None:
    """Send the replay, then every item the subscription gets, until it closes or overflows.

    `request` is the handler's request: its `transport` is the client's socket (the fast path
    writes frames to it; a client that will not take a Close frame is cut off through it).
    `render(item)` gives the text a subscriber receives for a hub item (None: send nothing).

    A slow consumer is closed with 1008 and a reason that says which SEQ to resume from.

    Fast path (sockets without compression; the feed never compresses): a server's frames are not
    masked, so one event's frame is the same bytes for every subscriber. Each item is rendered and
    framed once (`Event.encoded`) and:
    - while this subscriber has nothing queued and its socket's write buffer is at or under the
      transport's high-water mark, publish hands the frame to the socket itself (`sub.sink`), with
      no task switch, as websockets' `broadcast()` does: the first frame of a loop iteration is
      written at once, later ones are joined into one write at the end of the iteration (one
      callback per topic flushes every subscriber that held frames back: `hub.Burst`), so a burst
      of events costs two system calls per socket, not one per event, and a single event
      schedules one callback however many subscribers it reaches;
    - otherwise the item is queued (bounded: a full queue is the slow-consumer case) and this pump
      drains the whole queue into one write, first waiting for the socket to drain below its
      low-water mark. The sink declines while anything is queued, so order is kept.
    A socket that negotiated compression takes the plain path: one `send_str` per item.
    """
    closing: list[asyncio.Task] = []

    def on_overflow() -> None:
        # The pump may be waiting for this very client to drain: close from another task.
        closing.append(asyncio.ensure_future(linger_close(
            request, ws, SLOW_CLOSE_CODE, _slow_reason(sub), SLOW_CLOSE_GRACE_S)))
        SLOW_CLOSES[ws] = closing[-1]

    sub.on_overflow = on_overflow
    try:
        if ws.compress:
            await _pump_compressed(ws, sub, replay, counters, render)
        else:
            await _pump_frames(request, ws, sub, replay, counters, render)
    except SlowConsumer:
        if closing:  # shielded: the handler ending must not cut the close handshake short
            await asyncio.shield(asyncio.gather(*closing, return_exceptions=True))
    except (ConnectionResetError, RuntimeError):
        return  # the client went away while we were writing
    finally:
        sub.sink = None


def text_frame(text: str) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (what a server sends) holding `text`.
    (websockets' frame module is imported at the first frame, not with the lab: `lk.start()`
    answers about 10 ms sooner.)"""
    from websockets.frames import Frame, Opcode

    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a fast-path stream puts hub items on its socket: `encode(item)` gives an item's bytes
    (None: send nothing), computed once per item under `key` however many subscribers it reaches;
    `wrap(data)` frames the bytes of one write (e.g. as an HTTP/1.1 chunk); `payload(item, data)`
    is what `counters.bytes_sent` counts for it."""

    key: object
    encode: Callable[[Any], bytes | None]
    wrap: Callable[[bytes], bytes] = bytes
    payload: Callable[[Any, bytes], int] = lambda item, data: len(data)


def _websocket_framing(render) -> Framing:
    def encode(item) -> bytes | None:
        text = render(item)
        return None if text is None else text_frame(text)

    return Framing(render, encode, payload=lambda item, frame: len(frame) - _header_len(frame))


def sse_event_bytes(item) -> bytes | None:
    """An event of the SSE stream as bytes: `id: <epoch>:<seq>` and its JSON as `data:`; a reset
    Notice as an `event: reset`; other Notices are not for SSE (None)."""
    if isinstance(item, Event):
        return f"id: {sse_id(item.epoch, item.seq)}\ndata: {item.json}\n\n".encode()
    if isinstance(item.data, dict) and item.data.get("type") == "reset":
        return (f"event: reset\nid: {sse_id(item.data['epoch'], item.data['last_seq'])}\n"
                f"data: {json.dumps(item.data)}\n\n").encode()
    return None


def _http_chunk(data: bytes) -> bytes:
    """`data` as one chunk of an HTTP/1.1 chunked body (how the SSE response is streamed)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


SSE_FRAMING = Framing("sse", sse_event_bytes, wrap=_http_chunk,
                      payload=lambda item, data: len(item.json) if isinstance(item, Event)
                      else len(data))
"""The SSE stream's fast path: an event's block is the same bytes for every subscriber (its id
and data), so it is encoded once and written to each socket as a chunk of the response body."""


async def _pump_frames(request: web.Request, ws: web.WebSocketResponse | None, sub: Subscription,
                       replay: list, counters, render=None, *, framing: Framing | None = None
                       ) -> None:
    """The fast path of `pump_to_websocket` (and of the SSE stream, with `framing=SSE_FRAMING`
    and no `ws`): pre-encoded frames written to the socket itself."""
    transport, writer = request.transport, request.writer
    if transport is None:
        return
    framing = framing or _websocket_framing(render)
    high_water = transport.get_write_buffer_limits()[1]
    burst = sub.topic.burst
    pending: list[bytes] = []  # frames held back until the end of this loop iteration
    pending_size = [0]
    wrote_in = [-1]  # burst.token of the loop iteration in which the sink last wrote directly

    def encode(item) -> bytes | None:
        return item.encoded(framing.key, framing.encode)

    def account(item, frame: bytes) -> None:
        if isinstance(item, Event):  # the frame is (about to be) in the socket's buffer
            sub.last_seq = item.seq
            counters.delivered += 1
        counters.bytes_sent += framing.payload(item, frame)

    def can_write() -> bool:
        return not (ws is not None and ws.closed) and not transport.is_closing()

    def flush() -> None:
        """Write the frames the sink held back in one go (a burst of events: one write)."""
        if pending and can_write():
            transport.write(framing.wrap(b"".join(pending)))
        pending.clear()
        pending_size[0] = 0

    def sink(item) -> bool:
        """Take the item if the socket has room, else decline so that the hub queues it. The first
        frame of a loop iteration is written at once (lowest latency for a single event); later
        ones are held back and written together when the topic's `Burst` ends the iteration."""
        if not can_write() or transport.get_write_buffer_size() + pending_size[0] > high_water:
            return False
        frame = encode(item)
        if frame is None:
            return True
        if pending or wrote_in[0] == burst.token:
            if not pending:
                burst.hold(flush)
            pending.append(frame)
            pending_size[0] += len(frame)
        else:
            wrote_in[0] = burst.token
            burst.wrote()
            transport.write(framing.wrap(frame))
        account(item, frame)
        return True

    def write_batch(items) -> None:
        flush()  # frames the sink took come first
        frames = []
        for item in items:
            frame = encode(item)
            if frame is not None:
                frames.append(frame)
                account(item, frame)
        if frames:
            transport.write(framing.wrap(b"".join(frames)))

    tell_overflow = sub.on_overflow

    def on_overflow() -> None:
        flush()  # what the close reason says was delivered must be in the socket before the Close
        if tell_overflow is not None:
            tell_overflow()

    sub.on_overflow = on_overflow
    if not can_write():
        return
    write_batch(replay)
    sub.sink = sink
    try:
        while True:
            await sub.wait()
            if transport.get_write_buffer_size() > high_water:
                # shielded: cancelling this pump must not cancel aiohttp's drain waiter, which other
                # writers of this connection share (the queue may fill meanwhile: slow consumer)
                await asyncio.shield(writer.drain())
            items = sub.take()
            if sub.closed or not can_write():
                return
            write_batch(items)
    finally:
        sub.sink = None
        flush()


async def pump_sse(request: web.Request, sub: Subscription, replay: list, counters) -> None:
    """Send an SSE stream's replay, then every event, on the fast path (`SSE_FRAMING`)."""
    await _pump_frames(request, None, sub, replay, counters, framing=SSE_FRAMING)


def _header_len(frame: bytes) -> int:
    """Length of the header of an unmasked frame (2, 4 or 10 bytes, by its length byte)."""
    length = frame[1] & 0x7F
    return 2 if length < 126 else 4 if length == 126 else 10


async def _pump_compressed(ws: web.WebSocketResponse, sub: Subscription, replay: list, counters,
                           render) -> None:
    """The plain path of `pump_to_websocket` (a compressed socket): one `send_str` per item."""
    items = replay
    while True:
        for item in items:
            text = render(item)
            if text is None:
                continue
            if isinstance(item, Event):
                sub.last_seq = item.seq
                counters.delivered += 1
            await ws.send_str(text)
            counters.bytes_sent += len(text)
        items = await sub.get()
        if not items:
            return


SLOW_CLOSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""WebSocket -> its slow-consumer close task, which the handler waits for before it ends (an
ended handler closes the socket, and with the client's input unread that is an RST)."""


def _slow_reason(sub: Subscription) -> str:
    return f"too slow: resume with since={sub.last_seq}&epoch={sub.topic.epoch}"


async def close_or_abort(request: web.Request, ws: web.WebSocketResponse, code: int,
                         reason: str, timeout: float = SEND_TIMEOUT_S) -> None:
    """Close `ws` with `code`; a peer that does not take the Close frame within `timeout` s
    is cut off (its socket, `request.transport`, is aborted)."""
    try:
        async with asyncio.timeout(timeout):
            # drain=False: aiohttp's drain shares one waiter future per connection, and the pump,
            # cancelled when the handler ends, would cancel it under this close (then an RST).
            # The Close is in the transport's buffer behind the events; reading until the
            # client's Close (or the timeout) is what waits for it to go out.
            await ws.close(code=code, message=reason.encode()[:123])
    except (TimeoutError, ConnectionResetError, RuntimeError):
        transport = request.transport
        if transport is not None:
            transport.abort()


@dataclasses.dataclass
class _CloseSent:
    """A Close frame this module wrote to a socket; `peer_closed` is set once the handler's read
    loop has seen the peer's answer (its Close, or the end of the connection)."""

    transport: asyncio.BaseTransport
    peer_closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


CLOSES_SENT: weakref.WeakKeyDictionary[web.WebSocketResponse, _CloseSent] = weakref.WeakKeyDictionary()
PEER_CLOSED: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
"""Sockets whose handler's read loop has ended (the peer's Close was read, or the connection):
a slow-consumer close that comes later has nothing to send."""


async def linger_close(request: web.Request, ws: web.WebSocketResponse, code: int, reason: str,
                       timeout: float) -> None:
    """open -> closing: close a slow consumer so that the Close reaches it, with one Close frame.

    The Close frame is written to the socket itself, after the events already in its buffer (the
    fast path wrote them to the same transport), and the handler's loop goes on reading and
    dropping what the client still sends until the client's Close arrives (`run_websocket`,
    `Outbox`): a socket closed with unread input makes the kernel send an RST, and the RST makes
    the client's kernel discard the Close and every event still buffered for it. Then
    `peer_closed` closes the socket before aiohttp could answer the client's Close with a second
    one (streaming sockets are opened with autoclose=False). A peer that does neither within
    `timeout` s is cut off.

    Why not aiohttp's `close()` from this task: once the handler's `receive()` gets the CLOSING
    message that close() feeds it, aiohttp closes the socket at once, unread input and all (an RST,
    seen in 8 of 8 runs of the slow-chat-member test), and its drain shares one waiter per
    connection that a cancelled pump would cancel."""
    transport = request.transport
    if (transport is None or transport.is_closing() or ws in CLOSES_SENT or ws in PEER_CLOSED
            or ws.close_code is not None):
        return  # closed, closing, or the peer's Close was read already: nothing to send after it
    from websockets.frames import Close, Frame, Opcode

    sent = CLOSES_SENT[ws] = _CloseSent(transport)
    transport.write(Frame(Opcode.CLOSE, Close(code, reason[:120]).serialize()).serialize(mask=False))
    if isinstance(check := transport.get_protocol(), MaskCheck):
        check.stop_heartbeat()  # no ping after the Close; `timeout` ends a peer that never answers
    try:
        async with asyncio.timeout(timeout):
            await sent.peer_closed.wait()
    except TimeoutError:
        transport.abort()


async def send_message(ws: web.WebSocketResponse, data: str | bytes | dict | list) -> bool:
    """Send one message on a handler's own socket (a reply, an ack, an error, a tick): str as a
    text frame, bytes as a binary one, anything else as JSON text. Returns whether it was sent:
    nothing is sent once this module began closing the socket (a frame after a Close would break
    RFC 6455 section 5.5.1) or once it is closed. Waits while the socket's buffer is full, which
    holds up only this connection's own handler, never another member."""
    if ws.closed or ws in CLOSES_SENT or ws in SLOW_CLOSES:
        return False
    try:
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data if isinstance(data, str) else json.dumps(data))
    except (ConnectionResetError, RuntimeError):  # the peer went away meanwhile
        return False
    return True


def peer_closed(ws: web.WebSocketResponse) -> None:
    """closing -> closed, called when a handler's read loop ends: if this module sent the Close,
    close the socket now (its input was read up to the peer's Close), so that aiohttp, ending the
    handler, finds no socket to write a Close of its own to. Otherwise aiohttp answers the peer's
    Close itself, as usual."""
    PEER_CLOSED.add(ws)
    sent = CLOSES_SENT.get(ws)
    if sent is not None:
        sent.peer_closed.set()
        sent.transport.close()


async def run_websocket(ws: web.WebSocketResponse, pump: asyncio.Task, on_message) -> None:
    """Read the client's messages with `on_message` while `pump` sends; end both together. A
    client being closed as a slow consumer (`linger_close`) has what it still sends read and
    dropped until its Close arrives."""
    try:
        async for msg in ws:
            if ws in SLOW_CLOSES:
                continue  # cut off: read (so its socket never resets) but not acted on
            if msg.type is WSMsgType.TEXT:
                await on_message(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA,
                               message=b"binary messages are not accepted here")
                break
            if pump.done() and ws not in SLOW_CLOSES:
                break
    finally:
        peer_closed(ws)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        closing = SLOW_CLOSES.pop(ws, None)
        if closing is not None:  # a slow consumer's close handshake: let it finish (bounded)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(closing)


STREAM_SEND_BUFFER = 256 * 1024
"""Kernel send buffer of a push stream's socket (SO_SNDBUF, bytes). Linux grows an unset one up to
tcp_wmem's maximum (4 MiB by default) per connection, so a client that stopped reading could sit
on megabytes before anyone noticed; bounded, the Hub's slow-consumer rule (a full queue closes the
stream with 1008 and the SEQ to resume from) applies after a known amount of memory."""


def bound_send_buffer(request: web.Request) -> None:
    """Cap the kernel send buffer of this request's socket at STREAM_SEND_BUFFER."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)


@contextlib.asynccontextmanager
async def topic_websocket(request: web.Request, topic: Topic, *, compress: bool = True,
                          first: tuple[dict, ...] = ()):
    """Subscribe after ?since=SEQ, open the WebSocket, send `first` messages and any gap notice,
    then yield (ws, subscription, replay, counters); the subscription is closed on the way out.

    Shared by every WebSocket route that streams a hub topic (the feed, the chat room). Refusals
    (a bad or never-published SEQ, an `epoch` that is not the current one: 409) happen before the
    upgrade, as problem+json. `?heartbeat=S`: ping a silent peer every S seconds, drop one that
    stops answering (the heartbeat of `server.websocket.MaskCheck`).
    """
    since = parse_seq(request.query.get("since"))
    epoch = parse_epoch(request.query.get("epoch"))
    heartbeat = parse_heartbeat(request.query.get("heartbeat"))
    try:
        sub, replay, gap = subscribe_resuming(topic, "ws", since, epoch=epoch)
    except EpochMismatch as exc:  # another incarnation's SEQ: refused before the upgrade
        raise epoch_problem(exc) from None
    try:
        ws = await accept(request, compress=compress, heartbeat=heartbeat, autoclose=False)
        bound_send_buffer(request)
        for message in first:
            await ws.send_str(json.dumps(message))
        if gap is not None:
            await ws.send_str(json.dumps({"type": "gap", **gap.as_dict()}))
        yield ws, sub, replay, topic.counters("ws")
    finally:
        sub.close()


class Outbox:
    """One room member's outgoing messages: a bounded queue drained by its own task.

    `send(text)` never waits: it queues (state "open") or refuses (any other state). A member whose
    queue holds `limit` messages or `max_bytes` bytes is a slow consumer: it is closed with 1008 and
    `reason()` (once), and the room goes on. `finish()` (in the handler's `finally`) waits for a
    slow consumer's close handshake, bounded, then stops the task: closed.
    """

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, *, limit: int = 256,
                 max_bytes: int = 4 * 1024 * 1024, reason: Callable[[], str] | None = None):
        self.request, self.ws = request, ws
        self.limit, self.max_bytes = limit, max_bytes
        self.reason = reason or (lambda: "too slow: reload to catch up")
        self.state = "open"
        self.sent = 0
        self.dropped = 0
        self._queue: collections.deque[str] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._closing: asyncio.Task | None = None
        self._task = asyncio.create_task(self._drain())
        OUTBOXES[ws] = self
        bound_send_buffer(request)

    def send(self, text: str, *, bounded: bool = True) -> bool:
        """Queue `text` for this member; False if it is closing or closed (or just became so).
        `bounded=False` is for a join's welcome, which may be larger than the bound."""
        if self.state != "open" or self.ws.closed:
            self.dropped += 1
            return False
        if bounded and (len(self._queue) >= self.limit or self._bytes + len(text) > self.max_bytes):
            self.dropped += 1
            self.close(SLOW_CLOSE_CODE, self.reason())
            return False
        self._queue.append(text)
        self._bytes += len(text)
        self._ready.set()
        return True

    async def _drain(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue and self.state == "open":
                text = self._queue.popleft()
                self._bytes -= len(text)
                try:
                    await self.ws.send_str(text)  # waits while the socket's buffer is full
                except (ConnectionError, RuntimeError):
                    self.state = "closed"
                    return
                self.sent += 1

    def close(self, code: int, reason: str) -> None:
        """open -> closing: drop what is queued and close with `code` (one Close frame)."""
        if self.state != "open":
            return
        self.state = "closing"
        self._queue.clear()
        self._bytes = 0
        self._task.cancel()  # it may wait on this very socket's drain
        self._closing = asyncio.ensure_future(
            linger_close(self.request, self.ws, code, reason, SLOW_CLOSE_GRACE_S))
        SLOW_CLOSES[self.ws] = self._closing

    async def finish(self) -> None:
        """closing/open -> closed (the handler's read loop ended): wait for a close under way
        (bounded), stop the drain task."""
        peer_closed(self.ws)
        if self._closing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._closing)
            SLOW_CLOSES.pop(self.ws, None)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.state = "closed"


OUTBOXES: weakref.WeakKeyDictionary[web.WebSocketResponse, Outbox] = weakref.WeakKeyDictionary()
"""Each room member's socket -> its Outbox."""


def outbox(ws: web.WebSocketResponse) -> Outbox | None:
    """The Outbox of a room member's socket (None once it left)."""
    return OUTBOXES.get(ws)
