"""A payment provider, simulated as a separate HTTP service that the bank talks to over loopback.

It is its own aiohttp Application on its own port (started by the bank family), so everything
between the bank and the provider crosses a real socket, as between two companies:

- `POST /charges` {"payment_id", "amount", "currency", "payee", "webhook_url"} → 202 {"charge_id"}:
  the provider accepts the charge at once and decides later (after `decision_ms`). Only its bank may
  charge: the request must carry `Authorization: Bearer <charge_token(secret)>`, a token derived
  from the lab's own provider secret (so one per lab, and known only to that lab's bank); anything
  else gets 401 and no webhook is ever signed for it. Without that, anyone on loopback could have
  the provider sign a `charge.failed` for another account's (predictable) payment id.
- The outcome reaches the bank as a **webhook**: `POST webhook_url` with a JSON event
  {"id", "type": "charge.succeeded" | "charge.failed", "payment_id", "charge_id", "amount"} and the
  header `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body" with the shared
  secret>` (the scheme Stripe and others use). A delivery counts as acknowledged when the bank
  answers 2xx; otherwise it is retried with exponential backoff (RETRY_BASE_S × 2^attempt, at most
  MAX_ATTEMPTS tries), so delivery is at least once and the receiver must de-duplicate by event id.
- `POST /config` {"decision_ms", "deliveries"} changes the simulation: `deliveries` sends every
  event that many times even when acknowledged (what a provider's retry after a lost ack looks like).
- `GET /deliveries`: the last DELIVERIES_KEPT attempts (event id, attempt, status or error, time)
  for the lesson to show.

Every route checks the `Host` header as the lab does (labkit/server/hostcheck.py: loopback names
and addresses only; 403 otherwise), so a web page cannot reach the provider by DNS rebinding.
Errors are problem+json.

Outcome rule (deterministic, so lessons and tests can rely on it): a charge fails when the payee
contains "decline", otherwise it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections import deque

import aiohttp
from aiohttp import web

from labkit.server.hostcheck import host_allowed
from labkit.server.problem import problem
from labkit.server.validate import load_json  # the lab's one JSON reader (depth-limited)

RETRY_BASE_S = 0.05
MAX_ATTEMPTS = 8
DELIVERY_TIMEOUT_S = 5.0
SIGNATURE_HEADER = "Webhook-Signature"
SIGNATURE_TOLERANCE_S = 300
"""A signature older (or newer) than this is refused, so a captured webhook cannot be replayed later."""

CHARGE_TOKEN_LABEL = b"labkit provider: charges from the bank"
"""What the charge token is derived from (with the secret): another use of the secret, another label."""

routes = web.RouteTableDef()
STATE = web.AppKey("provider_state", dict)


def charge_token(secret: bytes) -> str:
    """The bearer token the bank sends with its charges: HMAC-SHA256 of CHARGE_TOKEN_LABEL under
    the lab's provider secret (hex), so the secret itself never travels and each lab has its own."""
    return hmac.new(secret, CHARGE_TOKEN_LABEL, hashlib.sha256).hexdigest()


def _from_the_bank(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    expected = request.app[STATE]["charge_token"]
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


@web.middleware
async def _host_check(request: web.Request, handler):
    """403 problem+json for a Host that is not a loopback name or address (as the lab's own check)."""
    header = request.headers.get("Host")
    if header is not None and not host_allowed(header):
        return problem(403, f"Host {header[:100]!r} is not allowed: the payment provider answers only "
                            "requests addressed to localhost, 127.0.0.1 or [::1].")
    return await handler(request)


DELIVERIES_KEPT = 1_000
"""Delivery attempts `GET /deliveries` keeps (the newest); older ones are forgotten."""


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The Webhook-Signature header value for `body`: t=<unix time>,v1=<hex HMAC-SHA256(t.body)>."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: bytes, body: bytes, header: str | None, now: float | None = None) -> str | None:
    """None when `header` is a valid signature of `body`, else the reason it is refused."""
    if not header:
        return f"the {SIGNATURE_HEADER} header is missing"
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return f"the {SIGNATURE_HEADER} header is malformed (expected t=...,v1=...)"
    now = time.time() if now is None else now
    if abs(now - t) > SIGNATURE_TOLERANCE_S:
        return f"the signature's timestamp is more than {SIGNATURE_TOLERANCE_S} s away from now"
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        return "the signature does not match the body"
    return None


@routes.post("/charges")
async def create_charge(request: web.Request) -> web.Response:
    """Accept a charge from the bank (202) and schedule its webhook; 401 for anyone else."""
    state = request.app[STATE]
    if not _from_the_bank(request):
        return problem(401, "only the bank may create charges: send Authorization: Bearer <the bank's "
                            "charge token>.", headers={"WWW-Authenticate": 'Bearer realm="provider charges"'})
    try:
        charge = load_json(await request.read())
        payment_id, amount = int(charge["payment_id"]), int(charge["amount"])
        webhook_url, payee = str(charge["webhook_url"]), str(charge.get("payee", ""))
    except (ValueError, KeyError, TypeError):
        return problem(400, "payment_id, amount and webhook_url are required")
    charge_id = f"ch_{next(state['ids'])}"
    outcome = "charge.failed" if "decline" in payee.lower() else "charge.succeeded"
    event = {"id": f"evt_{secrets.token_hex(8)}", "type": outcome, "payment_id": payment_id,
             "charge_id": charge_id, "amount": amount}
    task = asyncio.create_task(_deliver_later(request.app, webhook_url, event))
    state["tasks"].add(task)
    task.add_done_callback(state["tasks"].discard)
    return web.json_response({"charge_id": charge_id, "status": "accepted"}, status=202)


async def _deliver_later(app: web.Application, url: str, event: dict) -> None:
    state = app[STATE]
    await asyncio.sleep(state["decision_ms"] / 1000.0)
    for _ in range(state["deliveries"]):
        await _deliver(app, url, event)


async def _deliver(app: web.Application, url: str, event: dict) -> None:
    """POST the signed event until the receiver answers 2xx (exponential backoff between tries)."""
    state = app[STATE]
    body = json.dumps(event).encode()
    for attempt in range(MAX_ATTEMPTS):
        record = {"event": event["id"], "payment_id": event["payment_id"], "attempt": attempt + 1,
                  "ts": time.time()}
        try:
            headers = {"Content-Type": "application/json",
                       SIGNATURE_HEADER: sign(state["secret"], body)}
            async with state["session"].post(url, data=body, headers=headers) as reply:
                record["status"] = reply.status
                await reply.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            record["status"], record["error"] = None, type(exc).__name__
        state["deliveries_log"].append(record)
        if record["status"] is not None and 200 <= record["status"] < 300:
            return
        await asyncio.sleep(RETRY_BASE_S * 2**attempt)


@routes.post("/config")
async def configure(request: web.Request) -> web.Response:
    """Change decision_ms (0-10,000) and deliveries (1-5)."""
    state = request.app[STATE]
    try:
        change = load_json(await request.read())
        decision_ms = int(change.get("decision_ms", state["decision_ms"]))
        deliveries = int(change.get("deliveries", state["deliveries"]))
    except (ValueError, TypeError, AttributeError):
        return problem(400, 'send {"decision_ms": int, "deliveries": int}')
    if not (0 <= decision_ms <= 10_000 and 1 <= deliveries <= 5):
        return problem(422, "decision_ms in 0-10000, deliveries in 1-5")
    state.update(decision_ms=decision_ms, deliveries=deliveries)
    return web.json_response({"decision_ms": decision_ms, "deliveries": deliveries})


@routes.get("/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    """Every webhook delivery attempt so far."""
    return web.json_response(list(request.app[STATE]["deliveries_log"]))


def make_provider(secret: bytes, ssl_context=None) -> web.Application:
    """The provider's own Application (not a family of the lab: a separate service). `secret` is the
    lab's (it signs webhooks and gives the charge token, `charge_token(secret)`); `ssl_context` is
    what its webhook client trusts when the bank serves https (the lab's local CA)."""
    app = web.Application(middlewares=[_host_check])
    app[STATE] = {"secret": secret, "charge_token": charge_token(secret), "ids": itertools.count(1),
                  "tasks": set(), "decision_ms": 20, "deliveries": 1,
                  "deliveries_log": deque(maxlen=DELIVERIES_KEPT),
                  "session": None}

    async def _open(app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
        connector = aiohttp.TCPConnector(ssl=ssl_context) if ssl_context is not None else None
        app[STATE]["session"] = aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def _close(app: web.Application) -> None:
        tasks = list(app[STATE]["tasks"])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await app[STATE]["session"].close()

    app.add_routes(routes)
    app.on_startup.append(_open)
    app.on_shutdown.append(_close)
    return app
