"""Chat clients: join the lab's room over WebSocket or over REST polling.

    alice = lk.chat_ws(lab, "alice")          # live: messages and typing signals are pushed
    bob = lk.chat_rest(lab, "bob", interval_s=1.0)   # polls GET /api/chat/messages every second
    alice.send("hello"); bob.send("hi")
    alice.messages, bob.messages               # the same messages in the same order

Every received message is recorded with `received_ts` (time.time()), so its delivery delay is
`received_ts - ts` (the server stored it at `ts`, same machine clock).

Size: longer than 500 lines because both clients (WebSocket and REST polling) and lesson 05's room
simulation that drives them side by side share the recording, naming and stopping code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import socket
import time
import uuid
from urllib.parse import urlencode, urlsplit

import aiohttp

from labkit import _loop

from .rest import RestClient
from .ws import WsClient

PATH = "/api/chat/messages"


class ChatError(ValueError):
    """The room refused what was sent (the message says why)."""


class _Participant:
    """What both kinds of member share: the messages received (each once, in SEQ order), the
    errors seen, and `rows()` for a delivery table."""

    kind = ""

    def __init__(self, target, name: str):
        self.target, self.name = target, name
        self.messages: list[dict] = []
        self.errors: list[dict] = []
        self.last_seq: int | None = None
        self.epoch: str | None = None
        """The history the SEQs count in (from the welcome, events or Feed-Epoch); always sent
        back with `since`, so a restarted room is never silently skipped."""
        self.resets: list[dict] = []
        """Times the room's history was replaced: {"epoch", "last_seq"} (then read from there)."""
        self._task: concurrent.futures.Future | None = None
        """The background reader (WebSocket) or poller (REST) on labkit's client loop."""

    def _record(self, event: dict, now: float) -> None:
        """Keep `event` (received at `now`) unless its SEQ was already seen."""
        if self.last_seq is not None and event["seq"] <= self.last_seq:
            return
        self.epoch = event.get("epoch", self.epoch)
        now += getattr(self.target, "clock_offset_s", 0.0)  # on the server's clock (lk.join)
        self.messages.append({**event, "received_ts": now})
        self.last_seq = event["seq"]

    def _reset(self, body: dict) -> None:
        """The room's history was replaced (a restart): note it, read the new one from its start."""
        self.resets.append({"epoch": body.get("epoch"), "last_seq": body.get("last_seq")})
        self.epoch, self.last_seq = body.get("epoch"), 0

    def rows(self) -> list[dict]:
        """One dict per received message: who received it how, sender, text and delay_ms."""
        return [{"receiver": self.name, "receiver_kind": self.kind, "seq": m["seq"],
                 "sender": m["data"]["name"], "text": m["data"]["text"], "ts": m["ts"],
                 "received_ts": m["received_ts"],
                 "delay_ms": (m["received_ts"] - m["ts"]) * 1000.0}
                for m in self.messages]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.messages)} messages>"


class ChatWsClient(_Participant):
    """A WebSocket member of the room: sends messages and typing signals, receives everything.

    The connection is a `WsClient` (clients/ws.py), so it is closed for you at exit.
    """

    kind = "WebSocket"

    def __init__(self, target, name: str, *, since: int | None = None, epoch: str | None = None,
                 timeout: float = 10.0):
        super().__init__(target, name)
        self.typing_seen: list[dict] = []
        self.unacked: dict[str, str] = {}
        """Client message id -> text of every message sent with an id and not acknowledged yet."""
        self.acks: dict[str, int] = {}
        """Client message id -> SEQ the room gave it (from its {"type": "ack"} answer)."""
        resume = {} if since is None else {"since": since, **({} if epoch is None else
                                                            {"epoch": epoch})}
        query = urlencode({"name": name, **resume})
        self.ws = WsClient(target, "/ws/chat?" + query, timeout=timeout)
        self.welcome: dict = self.ws.recv_json(timeout)
        self.epoch = self.welcome.get("epoch", epoch)
        self._task = asyncio.run_coroutine_threadsafe(self._read(self.ws.connection),
                                                      _loop.client_loop())

    @property
    def is_open(self) -> bool:
        """True until either side has closed the connection."""
        return self.ws.close_code is None

    async def _read(self, conn) -> None:
        try:
            async for raw in conn:
                now = time.time()
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "message":
                    self._record(msg, now)
                elif kind == "typing":
                    self.typing_seen.append({**msg, "received_ts": now})
                elif kind == "ack":
                    self.unacked.pop(msg["id"], None)
                    self.acks[msg["id"]] = msg["seq"]
                elif kind == "error":
                    self.errors.append(msg)
                elif kind == "reset" and ("since" not in msg or msg.get("epoch") != self.epoch):
                    self._reset(msg)  # the room's history was replaced (not only named)
        except Exception as exc:  # noqa: BLE001 - a broken connection ends the reader
            self.errors.append({"detail": f"{type(exc).__name__}: {exc}"})

    def send(self, text: str, *, ack: bool = True) -> str | None:
        """Send a message; it arrives back (with its SEQ) like everyone else's. With ack=True it
        carries a fresh client id, kept in `unacked` until the room acknowledges it (`acks`), so
        after a cut `resend_unacked()` can send it again without doubling it. Returns the id."""
        msg_id = uuid.uuid4().hex if ack else None
        if msg_id is not None:
            self.unacked[msg_id] = text
            self.ws.send_json({"type": "message", "text": text, "id": msg_id})
        else:
            self.ws.send_json({"type": "message", "text": text})
        return msg_id

    def resend_unacked(self) -> int:
        """Send every unacknowledged message again with its own id (the room publishes an id once
        and acknowledges a resend as a duplicate); returns how many were sent."""
        pending = list(self.unacked.items())
        for msg_id, text in pending:
            self.ws.send_json({"type": "message", "text": text, "id": msg_id})
        return len(pending)

    def typing(self) -> None:
        """Tell the other WebSocket members that you are typing (not stored anywhere)."""
        self.ws.send_json({"type": "typing"})

    def send_raw(self, message: str) -> None:
        """Send any text frame as it is (to see how the room answers bad input)."""
        self.ws.send(message)

    def close(self) -> int | None:
        """Leave the room (closing handshake); returns the server's close code."""
        return self.ws.close()


class ChatRestClient(_Participant):
    """A REST member of the room: POSTs messages and polls GET ?since=SEQ every `interval_s`.

    Requests go through a `RestClient` (clients/rest.py): `api.log_frame()` shows each one.
    """

    kind = "REST poll"

    def __init__(self, target, name: str, *, interval_s: float = 1.0, since: int | None = 0,
                 epoch: str | None = None, timeout: float = 10.0, retries: int = 2):
        super().__init__(target, name)
        self.interval_s, self.timeout, self.retries = interval_s, timeout, retries
        self.requests = 0
        self.last_seq, self.epoch = since, epoch
        self._stop = False
        self.api = RestClient(target, timeout=timeout)

    async def _poll(self) -> list[dict]:
        params: dict[str, int | str] = {} if self.last_seq is None else {"since": self.last_seq}
        if params and self.epoch is not None:
            params["epoch"] = self.epoch
        query = "?" + urlencode(params) if params else ""
        self.requests += 1
        reply = await self.api.arequest("GET", PATH + query)
        now = time.time()
        body = reply.json()
        if reply.status in (409, 428):  # another history, or it must be named: read it anew
            self._reset(body)
            return []
        if reply.status == 200 and self.epoch is None:
            self.epoch = reply.headers.get("Feed-Epoch")
        if reply.status == 410:  # too far behind: take what is kept, note the loss
            self.errors.append(body)
            self.last_seq = body["oldest_seq"] - 1
            return []
        if reply.status != 200:
            raise ChatError((body or {}).get("detail", f"HTTP {reply.status}"))
        for event in body:
            self._record(event, now)
        return body

    def poll(self) -> list[dict]:
        """One GET: the new messages since the last poll."""
        return _loop.run(self._poll(), self.timeout)

    def send(self, text: str) -> dict:
        """POST a message with a fresh `Idempotency-Key`; returns it as stored (with its SEQ).
        A 503 (the room could not store it: it did not happen) is retried `retries` times after
        its Retry-After, with the same key, so a retry is published at most once. Raises
        ChatError if refused."""
        key = uuid.uuid4().hex
        for attempt in range(self.retries + 1):
            reply = self.api.post(PATH, json={"name": self.name, "text": text},
                                  headers={"Idempotency-Key": key})
            if reply.status != 503 or attempt == self.retries:
                break
            time.sleep(min(float(reply.headers.get("Retry-After", "1")), 5.0))
        if reply.status != 201:
            raise ChatError((reply.json() or {}).get("detail", f"HTTP {reply.status}"))
        return reply.json()

    async def _loop_polls(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        next_at = loop.time()
        while not self._stop and loop.time() < end:
            try:
                await self._poll()
            except (aiohttp.ClientError, ChatError, OSError, TimeoutError) as exc:
                self.errors.append({"detail": str(exc)})
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, min(next_at, end) - loop.time()))

    def start(self, seconds: float = 30.0) -> ChatRestClient:
        """Poll in the background for at most `seconds`."""
        self._stop = False
        self._task = asyncio.run_coroutine_threadsafe(self._loop_polls(seconds),
                                                      _loop.client_loop())
        return self

    def stop(self) -> None:
        """Stop background polling now: a poll in flight or the wait for the next one is
        cancelled (a poller that is told to stop has nothing left to wait for)."""
        self._stop = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()  # cancels the coroutine on the client loop

    def close(self) -> None:
        """Stop polling and close the HTTP connection."""
        self.stop()
        self.api.close()


def simulate_room(target, *, ws_members: int = 2, rest_members: int = 2, messages: int = 12,
                  gap_s: float = 0.25, poll_interval_s: float = 1.0, seed: int | None = None,
                  progress_every_s: float | None = None):
    """Members on both sides take turns to talk; returns (frame of deliveries, members).

    The frame has one row per (message, receiver): receiver_kind, seq, sender, delay_ms. Each
    message goes through the sender's own side (WebSocket send or REST POST). `frame.attrs` holds
    the `seed` of the schedule (pass it back to replay the same schedule) and `first_poll_ts`.

    The gaps between messages are random (exponential, mean `gap_s`), as people talk: with a fixed
    gap the messages would fall at the same moments of every poll interval (a gap of half the
    interval puts every other message just after a poll, to wait a whole interval), and the
    pollers' delays would measure that coincidence instead of polling. The schedule is drawn anew
    on every run (`seed=None`): with one fixed seed every run would measure the same few
    moments of the poll interval, and a median that happens to sit high would sit high every
    time. Pass a seed to repeat a schedule.

    With `progress_every_s`, a line is printed at most that often while messages are sent.

    Member names carry a short tag of this run (`ws-1-3f9a`), because a room keeps names unique:
    on a class server many students simulate rooms at once, and a second run must not collide
    with the first.

    Interrupted (the kernel's stop button), every member leaves the room before the interrupt goes
    on: no socket of the run stays open.
    """
    import random

    import pandas as pd

    if seed is None:
        seed = random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    gaps = [rng.expovariate(1.0 / gap_s) for _ in range(messages)]
    with RestClient(target) as api:
        first = api.get(PATH)
        start, epoch = first.json(), first.headers.get("Feed-Epoch")
    since = start[-1]["seq"] if start else 0
    tag = uuid.uuid4().hex[:4]
    ws: list[ChatWsClient] = []
    rest: list[ChatRestClient] = []
    try:
        for i in range(ws_members):
            ws.append(ChatWsClient(target, f"ws-{i + 1}-{tag}"))
        rest = [ChatRestClient(target, f"rest-{i + 1}-{tag}", interval_s=poll_interval_s,
                               since=since, epoch=epoch) for i in range(rest_members)]
        seconds = sum(gaps) + 0.05 * messages + 2 * poll_interval_s + 1.0
        first_poll = time.time()
        for member in rest:
            member.start(seconds)
        members: list[ChatWsClient | ChatRestClient] = [*ws, *rest]
        started = shown = time.monotonic()
        for n, gap in enumerate(gaps):
            who = rng.choice(members)
            if isinstance(who, ChatWsClient):
                who.typing()
            time.sleep(gap)
            who.send(f"message {n + 1} from {who.name}")
            now = time.monotonic()
            if progress_every_s is not None and (now - shown >= progress_every_s
                                                 or n + 1 == messages):
                print(f"{n + 1} of {messages} messages sent ({now - started:.0f} s)", flush=True)
                shown = now
        time.sleep(poll_interval_s + 0.3)  # one more poll round, so pollers see the last message
    finally:
        for member in rest:
            member.stop()
        for ws_member in ws:
            ws_member.close()
        for member in rest:
            member.close()
    rows = [row for m in members for row in m.rows() if row["seq"] > since]
    frame = pd.DataFrame(rows)
    frame.attrs.update(seed=seed, first_poll_ts=first_poll)
    return frame, members


def poll_model_ms(interval_s: float, request_ms: float = 1.0) -> float:
    """The model of a short poller's median delay (ms): a message lands at a random moment of the
    poll interval and waits for the next poll, from 0 to a whole interval, so half an interval in
    the middle, plus the poll request itself."""
    return interval_s * 1000.0 / 2 + request_ms


def poll_margin_ms(interval_s: float, messages: int) -> float:
    """95 % margin (ms) of a measured median delay of `messages` messages around the model: 1.96
    standard errors of the median of waits spread evenly over the interval, which is
    interval / (2 * sqrt(n)) (the density of the waits is 1 / interval everywhere)."""
    return 1.96 * interval_s * 1000.0 / (2 * max(1, messages) ** 0.5)


def poll_model_check(frame, members, interval_s: float) -> dict:
    """The model of the pollers' median delay next to what `simulate_room` measured: model_ms
    (half an interval plus the pollers' median request time), margin_ms (95 %, for this many
    messages), measured_ms, messages, request_ms and inside (measured within the margin)."""
    from labkit.measure import median

    request_ms = median([e.elapsed_ms for m in members if isinstance(m, ChatRestClient)
                         for e in m.api.log]) if members else 0.0
    messages = int(frame.seq.nunique())  # both pollers see a message at the same poll
    measured = float(frame[frame.receiver_kind == ChatRestClient.kind].delay_ms.median())
    model = poll_model_ms(interval_s, request_ms)
    margin = poll_margin_ms(interval_s, messages)
    return {"model_ms": model, "margin_ms": margin, "measured_ms": measured,
            "messages": messages, "request_ms": request_ms,
            "inside": abs(measured - model) <= margin, "seed": frame.attrs.get("seed")}


# -- a sender cut as a slow consumer: what was accepted? -----------------------------------------
def _published(target) -> int:
    from .feed import hub_stats

    return hub_stats(target)["topics"].get("chat", {}).get("published", 0)


SLOW_RECEIVE_BUFFER = 16 * 1024
"""Receive buffer (SO_RCVBUF, bytes) of a member that reads nothing while it sends. The kernel's
default grows to megabytes on loopback, which would hide the slow consumer behind tens of
thousands of messages on a fast machine; with a phone-sized buffer it shows after a few hundred."""


async def _small_buffer_socket(url: str) -> socket.socket:
    """A TCP socket to `url`'s host and port whose receive buffer is SLOW_RECEIVE_BUFFER, set
    before connecting (so the window the peer sees is small from the first byte)."""
    parts = urlsplit(url)
    info = (await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port,
                                                          type=socket.SOCK_STREAM))[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, info[4])
    except OSError:
        sock.close()
        raise
    return sock


async def _flood(url: str, texts: list[str], ids: list[str] | None, read_timeout: float,
                 *, read_while_sending: bool = False) -> dict:
    """Send every text; without `read_while_sending` read nothing meanwhile (a slow consumer of
    the room's echo, with a small receive buffer) until the room cuts the connection. Then read
    what had arrived (acknowledgements, the close) until every id is acknowledged or
    `read_timeout` passes."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    acked: dict[str, int] = {}
    seqs: list[int] = []
    counts = {"duplicates": 0, "sent": 0}
    sock = None if read_while_sending or url.startswith("wss:") else await _small_buffer_socket(url)
    async with connect(url, compression=None, max_queue=4 if not read_while_sending else 1024,
                       max_size=2**20, ping_interval=None, close_timeout=2, sock=sock) as conn:

        async def read() -> None:
            try:
                while ids is None or len(acked) < len(ids):
                    msg = json.loads(await asyncio.wait_for(conn.recv(), read_timeout))
                    if msg.get("type") == "ack":
                        acked[msg["id"]] = msg["seq"]
                        counts["duplicates"] += bool(msg.get("duplicate"))
                    elif msg.get("type") == "message":
                        seqs.append(msg["seq"])
            except (ConnectionClosed, TimeoutError):
                pass

        reader = asyncio.ensure_future(read()) if read_while_sending else None
        try:
            for i, text in enumerate(texts):
                message = {"type": "message", "text": text}
                if ids is not None:
                    message["id"] = ids[i]
                await conn.send(json.dumps(message))
                counts["sent"] += 1
        except ConnectionClosed:
            pass
        await (reader if reader is not None else read())
    duplicates, sent = counts["duplicates"], counts["sent"]
    return {"sent": sent, "acked": acked, "duplicates": duplicates, "close_code": conn.close_code,
            "close_reason": conn.close_reason, "seqs": seqs}


def run_or_cancel(coro, timeout: float):
    """`_loop.run(coro, timeout)`, but interrupted (KeyboardInterrupt in the kernel) the coroutine
    is cancelled on the client loop too, so the sockets it opened are closed, not left running."""
    future = asyncio.run_coroutine_threadsafe(coro, _loop.client_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no answer within {timeout} s") from None
    except BaseException:
        future.cancel()
        raise


def slow_sender_run(target, name: str = "flooder", *, messages: int = 3000, size: int = 400,
                    ids: bool = True, read_timeout: float = 3.0) -> dict:
    """A WebSocket member sends `messages` texts of `size` characters as fast as it can and never
    reads, so the room cuts it as a slow consumer (1008). Then, with ids=True, it reconnects and
    resends what was not acknowledged (same ids: the room publishes each id once).

    Returns: sent (messages its socket took), published_before_cut, acked_before_cut, close_code,
    close_reason, resent, acked_as_duplicate (resends the room had already published),
    published (in the end), lost (messages - published) and duplicates_published. The room must
    allow the burst (lk.start(chat_rate=..., chat_burst=...)) or its rate limit refuses it first."""
    url = f"{_ws_base(target)}/ws/chat?{urlencode({'name': name})}"
    texts = [f"{n:06d} " + "x" * max(0, size - 7) for n in range(messages)]
    msg_ids = [f"{name}-{uuid.uuid4().hex[:12]}-{n}" for n in range(messages)] if ids else None
    before = _published(target)
    first = run_or_cancel(_flood(url, texts, msg_ids, read_timeout), 60 + read_timeout)
    published_first = _published(target) - before
    result = {"messages": messages, "sent": first["sent"], "published_before_cut": published_first,
              "acked_before_cut": len(first["acked"]), "close_code": first["close_code"],
              "close_reason": first["close_reason"], "resent": 0, "acked_as_duplicate": 0}
    if msg_ids is not None:  # ids=True
        acked = dict(first["acked"])
        for _ in range(20):  # the room may still hold the old connection's name for a moment
            pending = [n for n in range(messages) if msg_ids[n] not in acked]
            if not pending:
                break
            try:  # a well-behaved resend: it reads the acknowledgements while it sends
                again = run_or_cancel(_flood(url, [texts[n] for n in pending],
                                             [msg_ids[n] for n in pending], read_timeout,
                                             read_while_sending=True), 60 + read_timeout)
            except Exception:  # noqa: BLE001 - e.g. 409 name taken: try again shortly
                time.sleep(0.25)
                continue
            result["resent"] += len(pending)
            result["acked_as_duplicate"] += again["duplicates"]
            acked.update(again["acked"])
        result["unacked_after_resend"] = messages - len(acked)
    published = _published(target) - before
    result.update(published=published, lost=max(0, messages - published),
                  duplicates_published=max(0, published - messages))
    return result


OWN_LAB_NAME = "you"
"""The chat box's name on the kernel's own lab (`lk.start()`): the student is alone there."""


def personal_name(target) -> str:
    """The chat name of this kernel's person on `target`: `OWN_LAB_NAME` on its own lab; on a
    class server, the person's class name (`labkit.course.classroom.class_name`)."""
    from labkit.course.classroom import ClassroomLab, class_name

    return class_name(target) if isinstance(target, ClassroomLab) else OWN_LAB_NAME


_HELD = re.compile(r"you are (?P<held>'[^']*'|\"[^\"]*\") in this room")


def held_name(exc: BaseException) -> str | None:
    """The name a class server says this person already holds, from its 409 to a handshake that
    asked for another one ("name: you are 'ana' in this room; one name per person"), or None."""
    import ast

    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) != 409:
        return None
    try:
        detail = json.loads(getattr(response, "body", None) or b"{}").get("detail", "")
    except (ValueError, AttributeError):
        return None
    found = _HELD.search(detail) if isinstance(detail, str) else None
    return ast.literal_eval(found["held"]) if found else None


def join_room(target, name: str | None = None, **options) -> ChatWsClient:
    """A WebSocket member of `target`'s room as `name` (default: `personal_name`). On a class
    server that answers that this person already holds another name (409, one name per person),
    it joins as that name instead: `client.name` says which."""
    wanted = personal_name(target) if name is None else name
    try:
        return ChatWsClient(target, wanted, **options)
    except Exception as exc:  # websockets' InvalidStatus carries the server's problem+json
        held = held_name(exc)
        if held is None or held == wanted:
            raise
        return ChatWsClient(target, held, **options)


def _ws_base(target) -> str:
    from .feed import target_url

    return target_url(target, "ws")
