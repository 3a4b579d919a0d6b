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
import contextlib
import json
import time
from urllib.parse import urlencode

import aiohttp
from websockets.asyncio.client import connect

from .. import _loop
from ._target import base_url

PATH = "/api/chat/messages"


class ChatError(ValueError):
    """The room refused what was sent (the message says why)."""


class _Participant:
    kind = ""

    def __init__(self, target, name: str):
        self.target, self.name = target, name
        self.messages: list[dict] = []
        self.errors: list[dict] = []
        self.last_seq: int | None = None
        self._task: asyncio.Future | None = None

    def _record(self, event: dict, now: float) -> None:
        if self.last_seq is not None and event["seq"] <= self.last_seq:
            return
        self.messages.append({**event, "received_ts": now})
        self.last_seq = event["seq"]

    def rows(self) -> list[dict]:
        return [{"receiver": self.name, "receiver_kind": self.kind, "seq": m["seq"],
                 "sender": m["data"]["name"], "text": m["data"]["text"], "ts": m["ts"],
                 "received_ts": m["received_ts"],
                 "delay_ms": (m["received_ts"] - m["ts"]) * 1000.0}
                for m in self.messages]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.messages)} messages>"


class ChatWsClient(_Participant):
    """A WebSocket member of the room: sends messages and typing signals, receives everything."""

    kind = "WebSocket"

    def __init__(self, target, name: str, *, since: int | None = None, timeout: float = 10.0):
        super().__init__(target, name)
        self.typing_seen: list[dict] = []
        self.timeout = timeout
        self._conn = None
        self.welcome: dict | None = None
        url = base_url(target, "ws") + "/ws/chat?" + urlencode(
            {"name": name, **({} if since is None else {"since": since})})
        self._conn = _loop.run(_open(url), timeout=timeout)
        self.welcome = json.loads(_loop.run(self._conn.recv(), timeout=timeout))
        self._task = asyncio.run_coroutine_threadsafe(self._read(), _loop.client_loop())

    async def _read(self) -> None:
        try:
            async for raw in self._conn:
                now = time.time()
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "message":
                    self._record(msg, now)
                elif kind == "typing":
                    self.typing_seen.append({**msg, "received_ts": now})
                elif kind == "error":
                    self.errors.append(msg)
        except Exception as exc:  # noqa: BLE001 - a closed socket ends the reader
            self.errors.append({"detail": f"{type(exc).__name__}: {exc}"})

    def send(self, text: str) -> None:
        """Send a message; it arrives back (with its SEQ) like everyone else's."""
        _loop.run(self._conn.send(json.dumps({"type": "message", "text": text})), self.timeout)

    def typing(self) -> None:
        """Tell the other WebSocket members that you are typing (not stored anywhere)."""
        _loop.run(self._conn.send(json.dumps({"type": "typing"})), self.timeout)

    def send_raw(self, message: str) -> None:
        """Send any text frame as it is (to see how the room answers bad input)."""
        _loop.run(self._conn.send(message), self.timeout)

    def close(self) -> int | None:
        if self._conn is None:
            return None
        conn, self._conn = self._conn, None
        _loop.run(conn.close(), self.timeout)
        return conn.close_code


class ChatRestClient(_Participant):
    """A REST member of the room: POSTs messages and polls GET ?since=SEQ every `interval_s`."""

    kind = "REST poll"

    def __init__(self, target, name: str, *, interval_s: float = 1.0, since: int | None = 0,
                 timeout: float = 10.0):
        super().__init__(target, name)
        self.interval_s, self.timeout = interval_s, timeout
        self.requests = 0
        self.last_seq = since
        self._stop = False
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return base_url(self.target) + PATH

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _poll(self) -> list[dict]:
        session = await self._session_()
        params = {} if self.last_seq is None else {"since": self.last_seq}
        self.requests += 1
        async with session.get(self.url, params=params) as resp:
            body = await resp.json(content_type=None)
            now = time.time()
            if resp.status == 410:  # too far behind: take what is kept, note the loss
                self.errors.append(body)
                self.last_seq = body["oldest_seq"] - 1
                return []
            if resp.status != 200:
                raise ChatError(body.get("detail", f"HTTP {resp.status}"))
        for event in body:
            self._record(event, now)
        return body

    def poll(self) -> list[dict]:
        """One GET: the new messages since the last poll."""
        return _loop.run(self._poll(), self.timeout)

    async def _send(self, text: str) -> dict:
        session = await self._session_()
        async with session.post(self.url, json={"name": self.name, "text": text}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 201:
                raise ChatError(body.get("detail", f"HTTP {resp.status}"))
            return body

    def send(self, text: str) -> dict:
        """POST a message; returns it as stored (with its SEQ). Raises ChatError if refused."""
        return _loop.run(self._send(text), self.timeout)

    async def _loop_polls(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        next_at = loop.time()
        while not self._stop and loop.time() < end:
            try:
                await self._poll()
            except (aiohttp.ClientError, ChatError, OSError) as exc:
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
        self._stop = True
        if self._task is not None:
            with contextlib.suppress(Exception):  # stopping always finishes
                self._task.result(self.interval_s + self.timeout)
            self._task = None

    def close(self) -> None:
        self.stop()
        if self._session is not None:
            _loop.run(self._session.close(), self.timeout)
            self._session = None


def simulate_room(target, *, ws_members: int = 2, rest_members: int = 2, messages: int = 12,
                  gap_s: float = 0.25, poll_interval_s: float = 1.0, seed: int = 7):
    """Members on both sides take turns to talk; returns (frame of deliveries, members).

    The frame has one row per (message, receiver): receiver_kind, seq, sender, delay_ms. Each
    message goes through the sender's own side (WebSocket send or REST POST).
    """
    import random

    import pandas as pd

    rng = random.Random(seed)
    start = json.loads(_loop.run(_get_text(target), 10))
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


async def _open(url: str):
    return await connect(url, compression=None)


async def _get_text(target) -> str:
    async with aiohttp.ClientSession() as session, session.get(base_url(target) + PATH) as resp:
        return await resp.text()
