"""Chat clients: join the lab's room over WebSocket or over REST polling.

    alice = lk.chat_ws(lab, "alice")          # live: messages and typing signals are pushed
    bob = lk.chat_rest(lab, "bob", interval_s=1.0)   # polls GET /api/chat/messages every second
    alice.send("hello"); bob.send("hi")
    alice.messages, bob.messages               # the same messages in the same order

Every received message is recorded with `received_ts` (time.time()), so its delivery delay is
`received_ts - ts` (the server stored it at `ts`, same machine clock).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
from urllib.parse import urlencode

import aiohttp

from .. import _loop
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
        self._task: concurrent.futures.Future | None = None
        """The background reader (WebSocket) or poller (REST) on labkit's client loop."""

    def _record(self, event: dict, now: float) -> None:
        """Keep `event` (received at `now`) unless its SEQ was already seen."""
        if self.last_seq is not None and event["seq"] <= self.last_seq:
            return
        self.messages.append({**event, "received_ts": now})
        self.last_seq = event["seq"]

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

    def __init__(self, target, name: str, *, since: int | None = None, timeout: float = 10.0):
        super().__init__(target, name)
        self.typing_seen: list[dict] = []
        query = urlencode({"name": name, **({} if since is None else {"since": since})})
        self.ws = WsClient(target, "/ws/chat?" + query, timeout=timeout)
        self.welcome: dict = self.ws.recv_json(timeout)
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
                elif kind == "error":
                    self.errors.append(msg)
        except Exception as exc:  # noqa: BLE001 - a broken connection ends the reader
            self.errors.append({"detail": f"{type(exc).__name__}: {exc}"})

    def send(self, text: str) -> None:
        """Send a message; it arrives back (with its SEQ) like everyone else's."""
        self.ws.send_json({"type": "message", "text": text})

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
                 timeout: float = 10.0):
        super().__init__(target, name)
        self.interval_s, self.timeout = interval_s, timeout
        self.requests = 0
        self.last_seq = since
        self._stop = False
        self.api = RestClient(target, timeout=timeout)

    async def _poll(self) -> list[dict]:
        query = "" if self.last_seq is None else f"?since={self.last_seq}"
        self.requests += 1
        reply = await self.api.arequest("GET", PATH + query)
        now = time.time()
        body = reply.json()
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
        """POST a message; returns it as stored (with its SEQ). Raises ChatError if refused."""
        reply = self.api.post(PATH, json={"name": self.name, "text": text})
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
        """Stop background polling; waits at most one interval plus the request timeout."""
        self._stop = True
        if self._task is not None:
            with contextlib.suppress(Exception):  # stopping always finishes
                self._task.result(self.interval_s + self.timeout)
            self._task = None

    def close(self) -> None:
        """Stop polling and close the HTTP connection."""
        self.stop()
        self.api.close()


def simulate_room(target, *, ws_members: int = 2, rest_members: int = 2, messages: int = 12,
                  gap_s: float = 0.25, poll_interval_s: float = 1.0, seed: int = 7):
    """Members on both sides take turns to talk; returns (frame of deliveries, members).

    The frame has one row per (message, receiver): receiver_kind, seq, sender, delay_ms. Each
    message goes through the sender's own side (WebSocket send or REST POST).
    """
    import random

    import pandas as pd

    rng = random.Random(seed)
    with RestClient(target) as api:
        start = api.get(PATH).json()
    since = start[-1]["seq"] if start else 0
    ws = [ChatWsClient(target, f"ws-{i + 1}") for i in range(ws_members)]
    rest = [ChatRestClient(target, f"rest-{i + 1}", interval_s=poll_interval_s, since=since)
            for i in range(rest_members)]
    seconds = messages * gap_s + 2 * poll_interval_s + 1.0
    for member in rest:
        member.start(seconds)
    members = ws + rest
    sent = []
    for n in range(messages):
        who = rng.choice(members)
        if isinstance(who, ChatWsClient):
            who.typing()
        time.sleep(gap_s)
        who.send(f"message {n + 1} from {who.name}")
        sent.append(who.name)
    time.sleep(poll_interval_s + 0.3)  # one more poll round, so pollers see the last message
    for member in rest:
        member.stop()
    for member in ws:
        member.close()
    for member in rest:
        member.close()
    rows = [row for m in members for row in m.rows() if row["seq"] > since]
    return pd.DataFrame(rows), members
