"""Route family "bank": one application that uses both REST and WebSocket, each where it fits.

- REST for what is a request with a definite answer: accounts (`POST /api/accounts`,
  `GET /api/accounts/{id}`), a cacheable statement (`GET /api/accounts/{id}/statement`, ETag → 304)
  and payments (`POST /api/payments`, honouring `Idempotency-Key` so a retried payment charges once).
  A payment answers `201 Created`, not `202 Accepted`: before answering, the bank has created the
  payment (a resource at its `Location`, readable at once) and held its amount; only the outcome is
  still to come, as a later change of that resource's `status`. `202` (RFC 9110 §15.3.3) says the
  request itself is queued and may still be refused or never acted on, with nothing created yet:
  what the provider answers the bank (`POST /charges`), where the decision really comes later.
  Amounts are whole numbers of minor units (cents); a payment holds the amount inside one SQLite
  transaction that checks the available balance, so concurrent payments can never overdraw
  (the table's CHECK constraints say the same a second time).
- Service integration: the bank hands each payment to a payment provider (a separate HTTP service,
  `provider.py`) and learns the outcome from the provider's signed **webhook**
  (`POST /api/webhooks/provider`): the HMAC signature is checked (401 when it does not match), and
  events are de-duplicated by their id, so a webhook delivered three times is applied once.
- WebSocket for what the server must say first: `WS /ws/bank?account=ID` pushes every change of the
  account (payment pending / succeeded / failed, with the new balance) the moment the webhook lands;
  `WS /ws/bank/support?account=ID&role=customer|agent` is the account's support chat; while no
  agent is in the room, a support bot answers the customer from the account's data.

Who may do what is the access policy's (`labkit/server/access.py`): an account, its statement, its
payments, its live changes and its support room (as the customer) are its owner's (whoever opened
it) and the instructor's; the support **agent** is the instructor, never whoever writes
`role=agent` in the query.

`GET /api/bank` says where the provider is and counts the webhooks (received, applied, duplicates,
refused); `POST /api/bank/webhook-outage` {"fail_next": N} makes the next N deliveries fail with 503,
so the provider's retries can be watched.

Size: longer than 500 lines because one application on purpose (lesson 09): accounts, payments,
webhooks, the live balance and the support chat share one store and one idempotency rule, and each
route keeps its OpenAPI description beside it.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import secrets
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import aiohttp
from aiohttp import web

from labkit.server import access
from labkit.server.guard import serve_app
from labkit.server.keys import CONFIG
from labkit.server.problem import ProblemError
from labkit.server.validate import (
    csv_cell,
    json_integer,
    load_json,  # the lab's one JSON reader (depth-limited)
)
from labkit.stores import idempotency
from labkit.stores.sqlite import connect, create_schema, write_transaction
from labkit.streaming.hub import HUB, event_schema
from labkit.streaming.sockets import (
    pump_to_websocket,
    run_websocket,
    send_message,
    topic_websocket,
)

from .bank_provider import SIGNATURE_HEADER, charge_token, make_provider, verify
from .chat import TEXT_SCHEMA, check_text, render
from .core import websocket_route
from .feed import (
    JSON_BODY_ERRORS,
    SINCE_PARAM,
    read_json_object,
)
from .rest import NOTES, represent

CURRENCY = "EUR"
MAX_AMOUNT = 100_000_000
"""Largest payment or opening balance, in minor units (1,000,000.00 EUR)."""
MAX_OWNER = 64
PROVIDER_TIMEOUT_S = 5.0
BUSY_TIMEOUT_S = 10.0
ROLES = ("customer", "agent")

SCHEMA = """
CREATE TABLE IF NOT EXISTS bank_accounts (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= balance),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL REFERENCES bank_accounts(id),
    payee TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bank_webhook_events (
    id TEXT PRIMARY KEY,
    payment INTEGER NOT NULL,
    type TEXT NOT NULL,
    received REAL NOT NULL
);
"""

routes = web.RouteTableDef()


class Refused(Exception):
    """A payment the bank refuses: the status and detail of the problem to answer."""

    def __init__(self, status: int, detail: str, **extra):
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def _account(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "owner": row["owner"], "currency": row["currency"],
            "balance": row["balance"], "held": row["held"],
            "available": row["balance"] - row["held"]}


def _payment(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "account": row["account"], "payee": row["payee"],
            "amount": row["amount"], "currency": row["currency"], "status": row["status"],
            "created": row["created"], "updated": row["updated"]}


class BankStore:
    """Accounts, payments and received webhook ids in one SQLite file (the lab's, shared by every
    worker process). Each write is one `BEGIN IMMEDIATE` transaction: read, check, write."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, BUSY_TIMEOUT_S, rows=True)

    def init(self) -> None:
        create_schema(self.path, SCHEMA, BUSY_TIMEOUT_S)

    def _write(self, work):
        return write_transaction(self._connect, work)

    def open_account(self, owner: str, opening_balance: int) -> dict:
        account_id = f"acc_{secrets.token_hex(4)}"
        return self._write(lambda con: _account(con.execute(
            "INSERT INTO bank_accounts (id, owner, currency, balance, held, created) "
            "VALUES (?, ?, ?, ?, 0, ?) RETURNING *",
            (account_id, owner, CURRENCY, opening_balance, time.time())).fetchone()))

    def account(self, account_id: str) -> dict | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM bank_accounts WHERE id = ?", (account_id,)).fetchone()
        return _account(row) if row else None

    def payments(self, account_id: str) -> list[dict]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT * FROM bank_payments WHERE account = ? ORDER BY id",
                               (account_id,)).fetchall()
        return [_payment(r) for r in rows]

    def payment(self, payment_id: int) -> dict | None:
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM bank_payments WHERE id = ?", (payment_id,)).fetchone()
        return _payment(row) if row else None

    def hold(self, account_id: str, payee: str, amount: int) -> tuple[dict, dict]:
        """Create a pending payment and hold its amount, if the available balance covers it."""

        def work(con):
            row = con.execute("SELECT * FROM bank_accounts WHERE id = ?", (account_id,)).fetchone()
            if row is None:
                raise Refused(422, f"there is no account {account_id!r}",
                              errors=[{"field": "account", "message": "no such account"}])
            available = row["balance"] - row["held"]
            if amount > available:
                raise Refused(409, f"insufficient funds: {amount} requested, {available} available",
                              available=available)
            now = time.time()
            payment = con.execute(
                "INSERT INTO bank_payments (account, payee, amount, currency, status, created, updated) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?) RETURNING *",
                (account_id, payee, amount, CURRENCY, now, now)).fetchone()
            account = con.execute("UPDATE bank_accounts SET held = held + ? WHERE id = ? RETURNING *",
                                  (amount, account_id)).fetchone()
            return _payment(payment), _account(account)

        return self._write(work)

    def settle(self, event_id: str, payment_id: int, succeeded: bool) -> tuple[dict, dict] | None:
        """Apply a provider outcome once: None when this event id was already applied (or the
        payment is no longer pending); else the payment and account after the change."""

        def work(con):
            try:
                con.execute("INSERT INTO bank_webhook_events (id, payment, type, received) "
                            "VALUES (?, ?, ?, ?)",
                            (event_id, payment_id, "succeeded" if succeeded else "failed", time.time()))
            except sqlite3.IntegrityError:
                return None
            payment = con.execute("SELECT * FROM bank_payments WHERE id = ?", (payment_id,)).fetchone()
            if payment is None or payment["status"] != "pending":
                return None
            amount, account_id = payment["amount"], payment["account"]
            debit = amount if succeeded else 0
            account = con.execute(
                "UPDATE bank_accounts SET balance = balance - ?, held = held - ? WHERE id = ? "
                "RETURNING *", (debit, amount, account_id)).fetchone()
            payment = con.execute(
                "UPDATE bank_payments SET status = ?, updated = ? WHERE id = ? RETURNING *",
                ("succeeded" if succeeded else "failed", time.time(), payment_id)).fetchone()
            return _payment(payment), _account(account)

        return self._write(work)


BANK = web.AppKey("bank_store", BankStore)
BANK_STATE = web.AppKey("bank_state", dict)


def _topic_name(account_id: str) -> str:
    return f"bank.{account_id}"


async def _publish_change(app: web.Application, payment: dict, account: dict) -> None:
    await app[HUB].apublish(_topic_name(account["id"]), {"kind": "payment", "payment": payment,
                                                  "balance": account["balance"],
                                                  "available": account["available"]})


def _amount(value, field: str, errors: list, *, low: int) -> int | None:
    amount = json_integer(value)
    if amount is None or not low <= amount <= MAX_AMOUNT:
        errors.append({"field": field, "message": f"a whole number of cents from {low} to {MAX_AMOUNT}"})
        return None
    return amount


def _short_text(value, field: str, errors: list, limit: int = MAX_OWNER) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit \
            or re.search(r"[\x00-\x1f\x7f-\x9f]", value):
        errors.append({"field": field, "message": f"1-{limit} characters, no control characters"})
        return None
    return value.strip()


def _refuse(errors: list[dict]) -> ProblemError:
    return ProblemError(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)


def _unknown(body: dict, known: set[str], errors: list) -> None:
    errors += [{"field": k, "message": "unknown field"} for k in sorted(set(body) - known)]


def _account_id(request: web.Request) -> str:
    raw = request.match_info["id"]
    account = request.app[BANK].account(raw)
    if account is None:
        raise ProblemError(404, f"There is no account {raw[:40]!r}.")
    return raw


@routes.post("/api/accounts")
async def open_account(request: web.Request) -> web.Response:
    """Open an account {"owner", "opening_balance"} (cents): 201 + Location."""
    body = await read_json_object(request)
    errors: list[dict] = []
    owner = _short_text(body.get("owner"), "owner", errors)
    opening = _amount(body.get("opening_balance", 0), "opening_balance", errors, low=0)
    _unknown(body, {"owner", "opening_balance"}, errors)
    if errors or owner is None or opening is None:  # a None always comes with its error
        raise _refuse(errors)
    account = await asyncio.to_thread(request.app[BANK].open_account, owner, opening)
    return web.json_response(account, status=201, headers={"Location": f"/api/accounts/{account['id']}"})


@routes.get("/api/accounts/{id}")
async def get_account(request: web.Request) -> web.Response:
    """The account: balance, held (pending payments) and available, in cents."""
    account = await asyncio.to_thread(request.app[BANK].account, request.match_info["id"])
    if account is None:
        raise ProblemError(404, f"There is no account {request.match_info['id'][:40]!r}.")
    body = json.dumps(account).encode()
    return represent(request, body, "application/json", etag=_etag(body))


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@routes.get("/api/accounts/{id}/statement")
async def statement(request: web.Request) -> web.Response:
    """Every payment of the account, as JSON or CSV (Accept: text/csv); ETag, so a repeat is a 304."""
    account_id = _account_id(request)
    payments = await asyncio.to_thread(request.app[BANK].payments, account_id)
    if "text/csv" in request.headers.get("Accept", ""):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["id", "payee", "amount", "currency", "status", "created"])
        for p in payments:
            writer.writerow([csv_cell(cell) for cell in (  # no formulas into a spreadsheet
                p["id"], p["payee"], p["amount"], p["currency"], p["status"], p["created"])])
        body, content_type = out.getvalue().encode(), "text/csv"
    else:
        body, content_type = json.dumps(payments).encode(), "application/json"
    return represent(request, body, content_type, etag=_etag(body), headers={"Vary": "Accept"})


@routes.post("/api/payments")
async def create_payment(request: web.Request) -> web.StreamResponse:
    """Pay {"account", "payee", "amount", "currency"}: the amount is held and sent to the provider;
    201 + Location with status "pending". Honours Idempotency-Key."""
    return await idempotency.idempotent(request, "payments", lambda: _pay(request))


async def _pay(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors: list[dict] = []
    account_id = _short_text(body.get("account"), "account", errors)
    payee = _short_text(body.get("payee"), "payee", errors)
    amount = _amount(body.get("amount"), "amount", errors, low=1)
    if body.get("currency", CURRENCY) != CURRENCY:
        errors.append({"field": "currency", "message": f"this bank pays in {CURRENCY} only"})
    _unknown(body, {"account", "payee", "amount", "currency"}, errors)
    if errors or account_id is None or payee is None or amount is None:  # a None comes with its error
        raise _refuse(errors)
    await access.require(request, "account", account_id, access.ACT)  # the owner pays from it
    try:
        payment, account = await asyncio.to_thread(request.app[BANK].hold, account_id, payee, amount)
    except Refused as refused:
        raise ProblemError(refused.status, refused.detail, **refused.extra) from None
    await access.remember(request, "payment", str(payment["id"]))  # also when the provider fails
    await _publish_change(request.app, payment, account)
    await _send_to_provider(request, payment)
    return web.json_response(payment, status=201, headers={"Location": f"/api/payments/{payment['id']}"})


async def _send_to_provider(request: web.Request, payment: dict) -> None:
    """Hand the payment to the provider over REST; its outcome comes back later as a webhook."""
    state = request.app[BANK_STATE]
    transport = request.transport
    if transport is None:  # the client closed its connection before the payment was sent on
        raise RuntimeError("the request's connection is closed: no address for the webhook")
    host, port = transport.get_extra_info("sockname")[:2]
    host = f"[{host}]" if ":" in host else host
    webhook = f"{'https' if request.secure else 'http'}://{host}:{port}/api/webhooks/provider"
    charge = {"payment_id": payment["id"], "amount": payment["amount"], "currency": payment["currency"],
              "payee": payment["payee"], "webhook_url": webhook}
    try:
        async with state["session"].post(f"{state['provider_url']}/charges", json=charge, headers={
                "Authorization": f"Bearer {charge_token(state['secret'])}"}) as reply:  # the bank's own
            if reply.status == 202:
                return
            reason = f"the provider answered {reply.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = f"the provider could not be reached ({type(exc).__name__})"
    settled = await asyncio.to_thread(request.app[BANK].settle, f"local-{payment['id']}",
                                      payment["id"], False)
    if settled:
        await _publish_change(request.app, *settled)
    raise ProblemError(502, f"{reason}; the payment was cancelled and the amount released",
                       payment_id=payment["id"])


@routes.get("/api/payments/{id}")
async def get_payment(request: web.Request) -> web.Response:
    """One payment and its status."""
    raw = request.match_info["id"]
    payment = None
    if re.fullmatch(r"[0-9]{1,18}", raw):
        payment = await asyncio.to_thread(request.app[BANK].payment, int(raw))
    if payment is None:
        raise ProblemError(404, f"There is no payment {raw[:40]!r}.")
    return web.json_response(payment)


@routes.post("/api/webhooks/provider")
async def provider_webhook(request: web.Request) -> web.Response:
    """The provider's outcome of a payment: signature checked, applied once per event id."""
    state = request.app[BANK_STATE]
    counts = state["webhooks"]
    counts["received"] += 1
    if state["fail_next"] > 0:
        state["fail_next"] -= 1
        counts["outage"] += 1
        raise ProblemError(503, "the webhook receiver is down (a simulated outage)",
                           headers={"Retry-After": "1"})
    raw = await request.read()
    reason = verify(state["secret"], raw, request.headers.get(SIGNATURE_HEADER))
    if reason is not None:
        counts["refused"] += 1
        raise ProblemError(401, f"webhook refused: {reason}",
                           headers={"WWW-Authenticate": f'{SIGNATURE_HEADER} realm="provider webhooks"'})
    try:
        event = load_json(raw)
        event_id, payment_id, kind = str(event["id"]), int(event["payment_id"]), event["type"]
    except (ValueError, KeyError, TypeError):
        counts["refused"] += 1
        raise ProblemError(422, "a webhook event needs id, payment_id and type") from None
    if kind not in ("charge.succeeded", "charge.failed"):
        counts["refused"] += 1
        raise ProblemError(422, f"unknown event type {str(kind)[:40]!r}")
    settled = await asyncio.to_thread(request.app[BANK].settle, event_id, payment_id,
                                      kind == "charge.succeeded")
    if settled is None:
        counts["duplicates"] += 1
        return web.json_response({"applied": False, "duplicate": True})
    counts["applied"] += 1
    await _publish_change(request.app, *settled)
    return web.json_response({"applied": True, "duplicate": False})


@routes.get("/api/bank")
async def bank_info(request: web.Request) -> web.Response:
    """Where the provider listens, and the webhook counters."""
    state = request.app[BANK_STATE]
    return web.json_response({"provider_url": state["provider_url"], "currency": CURRENCY,
                              "webhooks": dict(state["webhooks"]), "fail_next": state["fail_next"]})


@routes.post("/api/bank/webhook-outage")
async def webhook_outage(request: web.Request) -> web.Response:
    """{"fail_next": N}: the next N webhook deliveries are answered 503 (0-10)."""
    body = await read_json_object(request)
    n = json_integer(body.get("fail_next"))
    if n is None or not 0 <= n <= 10 or set(body) - {"fail_next"}:
        raise _refuse([{"field": "fail_next", "message": "a whole number from 0 to 10"}])
    request.app[BANK_STATE]["fail_next"] = n
    return web.json_response({"fail_next": n})


@routes.get("/ws/bank")
@websocket_route
async def account_ws(request: web.Request) -> web.WebSocketResponse:
    """Push every change of ?account=ID (payments, balance) as {"seq", "epoch", "ts", "data"},
    after a {"type": "welcome"} message."""
    account_id = request.query.get("account", "")
    account = await asyncio.to_thread(request.app[BANK].account, account_id)
    if account is None:
        raise ProblemError(422, "?account= must name an existing account",
                           errors=[{"field": "account", "message": "no such account"}])
    topic = request.app[HUB].topic(_topic_name(account_id))
    welcome = {"type": "welcome", "account": account, "last_seq": topic.last_seq}
    async with topic_websocket(request, topic, first=(welcome,)) as (ws, sub, replay, counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters))

        async def on_message(text: str) -> None:
            await send_message(ws, json.dumps({"type": "error", "detail": "this stream is read-only; "
                                          "pay with POST /api/payments"}))

        await run_websocket(ws, pump, on_message)
    return ws


@routes.get("/ws/bank/support")
@websocket_route
async def support_ws(request: web.Request) -> web.WebSocketResponse:
    """The support chat of ?account=ID, joined as ?role=customer|agent: one room per customer.
    The customer is the account's owner, the agent the instructor (the access policy's rule)."""
    account_id = request.query.get("account", "")
    role = request.query.get("role", "")
    if role not in ROLES:
        raise ProblemError(422, '?role= must be "customer" or "agent"',
                           errors=[{"field": "role", "message": "customer or agent"}])
    if await asyncio.to_thread(request.app[BANK].account, account_id) is None:
        raise ProblemError(422, "?account= must name an existing account",
                           errors=[{"field": "account", "message": "no such account"}])
    hub = request.app[HUB]
    topic_name = f"support.{account_id}"
    topic = hub.topic(topic_name)
    agents = request.app[BANK_STATE]["agents"]
    welcome = {"type": "welcome", "role": role, "account": account_id, "last_seq": topic.last_seq,
               "agents_online": agents.get(account_id, 0)}
    if role == "agent":
        agents[account_id] = agents.get(account_id, 0) + 1
    try:
        return await _support_room(request, topic, welcome, role, account_id)
    finally:
        if role == "agent":
            agents[account_id] -= 1
            if not agents[account_id]:
                del agents[account_id]


BOT = "support bot"
"""The name the bank's bot answers under while no agent is in the room."""


def bot_answer(text: str, account: dict | None, payments: list[dict]) -> str:
    """The support bot's answer to a customer's message, from the account's own data: its balance,
    its latest payments, or how to reach a person. A bot, not a person: it reads keywords."""
    words = text.lower()
    if account is not None and any(w in words for w in ("balance", "money", "how much")):
        return (f"Your balance is {account['balance'] / 100:.2f} {account['currency']}, of which "
                f"{account['held'] / 100:.2f} is held by payments still pending.")
    if any(w in words for w in ("payment", "paid", "twice", "charge", "pay")):
        if not payments:
            return "I see no payments on this account yet."
        latest = payments[-3:]
        listed = "; ".join(f"#{p['id']} {p['amount'] / 100:.2f} to {p['payee']}: {p['status']}"
                           for p in latest)
        return (f"Your latest payments ({len(payments)} in all): {listed}. A retry sent with the same "
                "Idempotency-Key is one payment, never two.")
    return ("No agent is in this room right now (the agent is your instructor). I am the bank's bot: "
            "ask me about your balance or your payments.")


async def _support_room(request: web.Request, topic, welcome: dict, role: str,
                        account_id: str) -> web.WebSocketResponse:
    """The support room's socket: messages published to the room's topic; while no agent is in
    the room, the bot answers each customer message."""
    hub = request.app[HUB]
    topic_name = f"support.{account_id}"
    agents = request.app[BANK_STATE]["agents"]
    async with topic_websocket(request, topic, first=(welcome,)) as (ws, sub, replay, counters):
        pump = asyncio.create_task(pump_to_websocket(request, ws, sub, replay, counters,
                                                     render))

        async def on_message(raw: str) -> None:
            try:
                msg = load_json(raw)
            except (ValueError, RecursionError):
                msg = None
            text, errs = check_text(msg.get("text") if isinstance(msg, dict) else None)
            if errs or text is None:  # check_text gives a text or its errors
                await send_message(ws, json.dumps({"type": "error", "detail": f"text: {errs[0]['message']}",
                                              "errors": errs}))
                return
            await hub.apublish(topic_name, {"name": role, "text": text})
            if role == "customer" and not agents.get(account_id):  # nobody to answer: the bot does
                store = request.app[BANK]
                account = await asyncio.to_thread(store.account, account_id)
                payments = await asyncio.to_thread(store.payments, account_id)
                await hub.apublish(topic_name, {"name": BOT, "text": bot_answer(text, account, payments)})

        await run_websocket(ws, pump, on_message)
    return ws


async def _open(app: web.Application) -> None:
    app[BANK] = BankStore(app[NOTES].path)
    await asyncio.to_thread(app[BANK].init)
    secret = secrets.token_bytes(32)
    trust = None
    if app[CONFIG].tls:
        from labkit.net.tls import client_ssl_context

        trust = client_ssl_context()
    # the lab's own limits: the provider is one more listener of this lab
    provider = await serve_app(make_provider(secret, trust), "127.0.0.1", 0, config=app[CONFIG])
    host, port = "127.0.0.1", provider.port
    app[BANK_STATE] = {
        "secret": secret, "provider": provider, "provider_url": f"http://{host}:{port}",
        "session": aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROVIDER_TIMEOUT_S)),
        "webhooks": {"received": 0, "applied": 0, "duplicates": 0, "refused": 0, "outage": 0},
        "fail_next": 0, "agents": {},  # account -> agents in its support room (none: the bot answers)
    }


async def _close(app: web.Application) -> None:
    state = app.get(BANK_STATE)
    if state is not None:
        await state["provider"].close()
        await state["session"].close()


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    idempotency.setup(app, lambda app: app[NOTES].path)
    app.on_startup.append(_open)
    app.on_shutdown.append(_close)


# -- OpenAPI / AsyncAPI ---------------------------------------------------------------------------
_P = {"$ref": "#/components/responses/Problem"}
_CENTS = {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT, "description": "minor units (cents)"}
_SHORT = {"type": "string", "minLength": 1, "maxLength": MAX_OWNER, "pattern": r"\S",
          "not": {"pattern": "[\\x00-\\x1f\\x7f-\\x9f]"}}
_ACCOUNT = {"type": "object", "required": ["id", "owner", "currency", "balance", "held", "available"],
            "properties": {"id": {"type": "string"}, "owner": {"type": "string"},
                           "currency": {"const": CURRENCY}, "balance": {"type": "integer", "minimum": 0},
                           "held": {"type": "integer", "minimum": 0},
                           "available": {"type": "integer", "minimum": 0}}}
_PAYMENT = {"type": "object", "required": ["id", "account", "payee", "amount", "currency", "status"],
            "properties": {"id": {"type": "integer"}, "account": {"type": "string"},
                           "payee": {"type": "string"}, "amount": {"type": "integer"},
                           "currency": {"type": "string"},
                           "status": {"enum": ["pending", "succeeded", "failed"]},
                           "created": {"type": "number"}, "updated": {"type": "number"}}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


OPENAPI_PATHS = {
    "/api/accounts": {"post": {
        "summary": "Open an account", "operationId": "bankAccountOpen",
        "requestBody": _body({"type": "object", "required": ["owner"], "additionalProperties": False,
                              "properties": {"owner": _SHORT,
                                             "opening_balance": {**_CENTS, "minimum": 0}}}),
        "responses": {"201": _json(_ACCOUNT, "The new account"), **JSON_BODY_ERRORS}}},
    "/api/accounts/{id}": {"get": {
        "summary": "An account's balance", "operationId": "bankAccountGet", "parameters": [_ID],
        "responses": {"200": _json(_ACCOUNT, "The account"), "304": {"description": "Not modified"},
                      "404": _P}}},
    "/api/accounts/{id}/statement": {"get": {
        "summary": "Every payment of an account (JSON or CSV)", "operationId": "bankStatement",
        "parameters": [_ID],
        "responses": {"200": {"description": "The statement", "content": {
            "application/json": {"schema": {"type": "array", "items": _PAYMENT}},
            "text/csv": {"schema": {"type": "string"}}}},
            "304": {"description": "Not modified"}, "404": _P}}},
    "/api/payments": {"post": {
        "summary": "Pay from an account (the provider's webhook settles it)",
        "operationId": "bankPaymentCreate", "parameters": [idempotency.OPENAPI_PARAMETER],
        "requestBody": _body({"type": "object", "required": ["account", "payee", "amount"],
                              "additionalProperties": False,
                              "properties": {"account": _SHORT, "payee": _SHORT, "amount": _CENTS,
                                             "currency": {"const": CURRENCY}}}),
        "responses": {"201": _json(_PAYMENT, "The payment, pending"),
                      "409": {**_P, "description": "Insufficient funds, or the key is in use"},
                      "502": _P, **JSON_BODY_ERRORS, **idempotency.OPENAPI_RESPONSES}}},
    "/api/payments/{id}": {"get": {
        "summary": "A payment and its status", "operationId": "bankPaymentGet", "parameters": [_ID],
        "responses": {"200": _json(_PAYMENT, "The payment"), "404": _P}}},
    "/api/webhooks/provider": {"post": {
        "summary": "The payment provider's signed webhook", "operationId": "bankProviderWebhook",
        "parameters": [{"name": SIGNATURE_HEADER, "in": "header", "required": True,
                        "schema": {"type": "string"}, "description": "t=<unix s>,v1=<hex HMAC-SHA256>"}],
        "requestBody": _body({"type": "object", "required": ["id", "type", "payment_id"]}),
        "responses": {"200": _json({"type": "object"}, "Applied, or recognised as a duplicate"),
                      "401": {**_P, "description": "The signature is missing, malformed, stale or wrong"},
                      "400": _P, "422": _P, "503": _P, "415": _P}}},
    "/api/bank": {"get": {
        "summary": "The provider's address and the webhook counters", "operationId": "bankInfo",
        "responses": {"200": _json({"type": "object"}, "Bank state")}}},
    "/api/bank/webhook-outage": {"post": {
        "summary": "Fail the next N webhook deliveries with 503", "operationId": "bankWebhookOutage",
        "requestBody": _body({"type": "object", "required": ["fail_next"], "additionalProperties": False,
                              "properties": {"fail_next": {"type": "integer", "minimum": 0,
                                                           "maximum": 10}}}),
        "responses": {"200": _json({"type": "object"}, "Set"), **JSON_BODY_ERRORS}}},
}

_CHANGE = event_schema({"type": "object", "properties": {"kind": {"const": "payment"},
                                                         "payment": _PAYMENT,
                                                         "balance": {"type": "integer"},
                                                         "available": {"type": "integer"}}})
ASYNCAPI_CHANNELS = {
    "bankAccount": {
        "address": "/ws/bank", "title": "An account's live changes",
        "description": "?account=ID (and optional ?since=SEQ): every payment status change with the "
                       "new balance, pushed when the provider's webhook lands.",
        "bindings": {"ws": {"query": {"type": "object", "required": ["account"], "properties": {
            "account": {"type": "string"}, "since": SINCE_PARAM["schema"]}}}},
        "messages": {"change": {"name": "change", "payload": _CHANGE}},
        "sends": ["change"],
    },
    "bankSupport": {
        "address": "/ws/bank/support", "title": "An account's support chat",
        "description": "?account=ID&role=customer|agent: one room per customer. While no agent is "
                       "in the room, the bank's support bot (name \"support bot\") answers each "
                       "customer message from the account's balance and payments.",
        "bindings": {"ws": {"query": {"type": "object", "required": ["account", "role"], "properties": {
            "account": {"type": "string"}, "role": {"enum": list(ROLES)}}}}},
        "messages": {
            "send": {"name": "send", "payload": {"type": "object", "properties": {"text": TEXT_SCHEMA}}},
            "message": {"name": "message", "payload": event_schema()},
        },
        "receives": ["send"],
        "sends": ["message"],
    },
}
