"""Clients for the bank of lesson 09: a customer who pays over REST and watches the account over
WebSocket, and the experiments the lesson runs on it. Every function talks to the lab over real
sockets and returns plain dicts or tidy DataFrames.

- `open_account(target, owner, cents)`: POST /api/accounts.
- `pay_and_watch(target, account, count)`: pay `count` times; per payment the REST answer time and
  the time until the WebSocket pushed the settled balance (the customer's screen).
- `retry_after_lost_answer(target, account, with_key)`: a payment whose answer is lost (as after a
  client timeout) and is sent again: how many payments and how much money it cost.
- `webhook_redelivery(target, account, deliveries)`: the provider delivers each webhook N times;
  the bank's counters show how many were applied.
- `forged_webhook(target)`: a webhook with a wrong signature, and the bank's answer.
- `support_chat(target, account, lines)`: a customer and an agent talk in the account's room.
- `ask_support(target, account, text)`: the customer alone; the bank's support bot answers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
from websockets.asyncio.client import connect

from labkit import _loop

from ._target import base_url, lab_ssl_context

SETTLE_TIMEOUT_S = 10.0


def _session(url: str) -> aiohttp.ClientSession:
    """An HTTP session that trusts the lab's local CA when `url` is https (a `tls=True` lab)."""
    ssl = lab_ssl_context(url)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl) if ssl else None)


def _ws(url: str):
    """Open a WebSocket to `url` (no compression; the lab's CA trusted for wss)."""
    ssl = lab_ssl_context(url)
    return connect(url, compression=None, **({"ssl": ssl} if ssl else {}))


def _ms_since(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict, dict]:
    async with session.request(method, url, **kw) as reply:
        body = await reply.read()
        data = json.loads(body) if body else {}
        return reply.status, data, dict(reply.headers)


def open_account(target, owner: str = "Ada", cents: int = 10_000) -> dict:
    """Open an account with `cents` in it; returns the account as the bank sent it."""
    url = base_url(target)

    async def _open():
        async with _session(url) as session:
            status, body, _ = await _json(session, "POST", f"{url}/api/accounts",
                                          json={"owner": owner, "opening_balance": cents})
        if status != 201:
            raise RuntimeError(f"the bank refused the account ({status}): {body.get('detail')}")
        return body

    return _loop.run(_open())


def account(target, account_id: str) -> dict:
    """The account now (REST GET)."""
    url = base_url(target)

    async def _get():
        async with _session(url) as session:
            return (await _json(session, "GET", f"{url}/api/accounts/{account_id}"))[1]

    return _loop.run(_get())


async def _settled(ws, payment_id: int, seen: list) -> dict:
    """Read the account stream until `payment_id` leaves "pending"; every message goes to `seen`."""
    while True:
        msg = json.loads(await ws.recv())
        seen.append(msg)
        data = msg.get("data") or {}
        payment = data.get("payment") or {}
        if payment.get("id") == payment_id and payment.get("status") != "pending":
            return data


def pay_and_watch(target, account_id: str, count: int = 5, amount: int = 100,
                  payee: str = "Corner shop", ws_target=None, progress=None):
    """Pay `count` times over REST while a WebSocket watches the account. One row per payment:
    rest_ms (the POST's answer: "pending"), screen_ms (until the pushed balance arrived), status,
    balance. `ws_target` lets the stream go through another path (e.g. an emulated link).
    `progress` (e.g. `print`) gets a line every 2 s while it runs."""
    import pandas as pd

    from .game import run_interruptible

    url, ws_url = base_url(target), base_url(ws_target or target, "ws")
    rows: list[dict] = []

    def report() -> None:
        if progress is not None:
            progress(f"{len(rows)} of {count} payments settled")

    async def _run():
        seen: list[dict] = []
        async with _session(url) as session, \
                _ws(f"{ws_url}/ws/bank?account={account_id}") as ws:
            json.loads(await ws.recv())  # welcome
            for i in range(count):
                started = time.perf_counter_ns()
                status, body, _ = await _json(session, "POST", f"{url}/api/payments", json={
                    "account": account_id, "payee": payee, "amount": amount})
                rest_ms = _ms_since(started)
                if status != 201:
                    rows.append({"payment": i + 1, "http_status": status, "rest_ms": rest_ms,
                                 "screen_ms": float("nan"), "status": "refused", "balance": None})
                    continue
                data = await asyncio.wait_for(_settled(ws, body["id"], seen), SETTLE_TIMEOUT_S)
                rows.append({"payment": i + 1, "http_status": status, "rest_ms": rest_ms,
                             "screen_ms": _ms_since(started), "status": data["payment"]["status"],
                             "balance": data["balance"]})
        return rows, seen

    rows, seen = run_interruptible(_run(), SETTLE_TIMEOUT_S * (count + 1), progress=report)
    frame = pd.DataFrame(rows)
    frame.attrs["messages"] = seen
    return frame


def retry_after_lost_answer(target, account_id: str, *, with_key: bool, amount: int = 500,
                            attempts: int = 2) -> dict:
    """Send the same payment `attempts` times, as a client does whose answers were lost (a
    timeout): the server acts on every request it receives, the client sees no answer and sends
    again. With `with_key` every try carries the same Idempotency-Key. Returns how many payments
    the bank created, how much left the account once they settled, the last try's status and
    Location, and the payment's status read from that Location on a new connection (how a client
    that lost every answer still learns the outcome)."""
    url = base_url(target)
    payee = f"retry-{uuid.uuid4().hex[:8]}"
    key = f'"{uuid.uuid4()}"'

    async def _run():
        async with _session(url) as session:
            before = (await _json(session, "GET", f"{url}/api/accounts/{account_id}"))[1]
            for _ in range(attempts):
                headers = {"Idempotency-Key": key} if with_key else {}
                status, _, answer_headers = await _json(
                    session, "POST", f"{url}/api/payments", headers=headers,
                    json={"account": account_id, "payee": payee, "amount": amount})
                # the answer is thrown away: from the client's side it never arrived
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while True:
                payments = (await _json(session, "GET", f"{url}/api/accounts/{account_id}/statement"))[1]
                mine = [p for p in payments if p["payee"] == payee]
                if all(p["status"] != "pending" for p in mine) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            after = (await _json(session, "GET", f"{url}/api/accounts/{account_id}"))[1]
        location = answer_headers.get("Location")
        looked_up = None
        if location:  # a new connection asks the payment's own address for its outcome
            async with _session(url) as fresh:
                looked_up = (await _json(fresh, "GET", f"{url}{location}"))[1].get("status")
        return {"with_key": with_key, "attempts": attempts, "payments_created": len(mine),
                "charged_cents": before["balance"] - after["balance"], "amount": amount,
                "last_status": status, "location": location, "outcome_at_location": looked_up}

    return _loop.run(_run(), timeout=SETTLE_TIMEOUT_S + 10)


def webhook_redelivery(target, account_id: str, deliveries: int = 3, amount: int = 100) -> dict:
    """Make the provider send every webhook `deliveries` times, pay once, and count: webhook
    attempts the provider made for this payment, how many the bank applied, how many it recognised
    as duplicates, and how many times the account's stream showed the payment settled."""
    url, ws_url = base_url(target), base_url(target, "ws")

    async def _run() -> dict:
        async with _session(url) as session:
            bank = (await _json(session, "GET", f"{url}/api/bank"))[1]
            provider = bank["provider_url"]
            await _json(session, "POST", f"{provider}/config", json={"deliveries": deliveries})
            try:
                async with _ws(f"{ws_url}/ws/bank?account={account_id}") as ws:
                    json.loads(await ws.recv())
                    status, payment, _ = await _json(session, "POST", f"{url}/api/payments", json={
                        "account": account_id, "payee": "Redelivery test", "amount": amount})
                    seen: list = []
                    await asyncio.wait_for(_settled(ws, payment["id"], seen), SETTLE_TIMEOUT_S)
                    attempts: list[dict] = []
                    deadline = time.monotonic() + SETTLE_TIMEOUT_S
                    while len([a for a in attempts if a.get("status") == 200]) < deliveries \
                            and time.monotonic() < deadline:
                        log = (await _json(session, "GET", f"{provider}/deliveries"))[1]
                        attempts = [a for a in log if a["payment_id"] == payment["id"]]
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.1)  # anything still arriving on the stream
                    while True:
                        try:
                            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 0.05)))
                        except TimeoutError:
                            break
            finally:
                await _json(session, "POST", f"{provider}/config", json={"deliveries": 1})
            after = (await _json(session, "GET", f"{url}/api/bank"))[1]
        settled = [m for m in seen if (m.get("data") or {}).get("payment", {}).get("id") == payment["id"]
                   and m["data"]["payment"]["status"] != "pending"]
        return {"deliveries_made": len(attempts),
                "applied": after["webhooks"]["applied"] - bank["webhooks"]["applied"],
                "duplicates": after["webhooks"]["duplicates"] - bank["webhooks"]["duplicates"],
                "balance_updates_seen": len(settled)}

    return _loop.run(_run(), timeout=SETTLE_TIMEOUT_S * 3)


def forged_webhook(target, payment_id: int = 1) -> dict:
    """POST a webhook signed with the wrong secret; returns the bank's status and detail."""
    import hashlib
    import hmac

    url = base_url(target)
    body = json.dumps({"id": "evt_forged", "type": "charge.succeeded", "payment_id": payment_id,
                       "amount": 1}).encode()
    t = int(time.time())
    signature = hmac.new(b"not the shared secret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()

    async def _run():
        async with _session(url) as session:
            status, problem, _ = await _json(session, "POST", f"{url}/api/webhooks/provider", data=body,
                                             headers={"Content-Type": "application/json",
                                                      "Webhook-Signature": f"t={t},v1={signature}"})
        return {"status": status, "detail": problem.get("detail")}

    return _loop.run(_run())


def support_chat(target, account_id: str, lines: list[tuple[str, str]]):
    """Customer and agent each hold the account's support WebSocket; `lines` are (role, text) said in
    order. One row per message as each side received it: receiver, sender, text, seq, delay_ms."""
    import pandas as pd

    ws_url = base_url(target, "ws")

    async def _run():
        socks = {}
        for role in ("customer", "agent"):
            socks[role] = await _ws(f"{ws_url}/ws/bank/support?account={account_id}&role={role}")
            json.loads(await socks[role].recv())
        rows = []
        try:
            for sender, text in lines:
                sent = time.perf_counter_ns()
                await socks[sender].send(json.dumps({"type": "message", "text": text}))
                for receiver, sock in socks.items():
                    msg = json.loads(await asyncio.wait_for(sock.recv(), SETTLE_TIMEOUT_S))
                    rows.append({"receiver": receiver, "sender": msg["data"]["name"],
                                 "text": msg["data"]["text"], "seq": msg["seq"],
                                 "delay_ms": _ms_since(sent)})
        finally:
            for sock in socks.values():
                await sock.close()
        return rows

    return pd.DataFrame(_loop.run(_run(), timeout=SETTLE_TIMEOUT_S * (len(lines) + 1)))


def ask_support(target, account_id: str, text: str, *, wait_s: float = 3.0) -> list[dict]:
    """Say `text` in the account's support room as the customer, alone (no agent in the room), and
    return what the room said within `wait_s` s: your own message first, then the answer, if any
    (while no agent is there, the bank's support bot answers). One dict each: name, text, delay_ms
    after sending."""
    ws_url = base_url(target, "ws")

    async def _run():
        heard = []
        async with _ws(f"{ws_url}/ws/bank/support?account={account_id}&role=customer") as sock:
            last = json.loads(await sock.recv())["last_seq"]  # the welcome
            sent = time.perf_counter_ns()
            await sock.send(json.dumps({"type": "message", "text": text}))
            deadline = time.monotonic() + wait_s
            while len(heard) < 2 and time.monotonic() < deadline:
                try:
                    msg = json.loads(await asyncio.wait_for(sock.recv(), deadline - time.monotonic()))
                except TimeoutError:
                    break
                if msg.get("seq", 0) > last and "data" in msg:
                    heard.append({"name": msg["data"]["name"], "text": msg["data"]["text"],
                                  "delay_ms": _ms_since(sent)})
        return heard

    return _loop.run(_run(), timeout=wait_s + 15)


def configure_provider(target, *, decision_ms: int = 20, deliveries: int = 1) -> dict:
    """Set the simulated provider's decision time (ms) and how often it delivers each webhook."""
    url = base_url(target)

    async def _set():
        async with _session(url) as session:
            provider = (await _json(session, "GET", f"{url}/api/bank"))[1]["provider_url"]
            return (await _json(session, "POST", f"{provider}/config",
                                json={"decision_ms": decision_ms, "deliveries": deliveries}))[1]

    return _loop.run(_set())


def provider_deliveries(target):
    """Every webhook delivery attempt the provider made, as a DataFrame (event, payment_id,
    attempt, status, ts)."""
    import pandas as pd

    url = base_url(target)

    async def _get():
        async with _session(url) as session:
            provider = (await _json(session, "GET", f"{url}/api/bank"))[1]["provider_url"]
            async with session.get(f"{provider}/deliveries") as reply:
                return await reply.json()

    return pd.DataFrame(_loop.run(_get()))
