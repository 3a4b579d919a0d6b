"""Every route x transport x role against the one access policy (labkit/server/access.py), over real
sockets on 127.0.0.1 against a real class server with two student tokens and an instructor token.

The routes come from the server's own index (`GET /`, which lists every route the router serves),
so a new route cannot slip by: a route without a row in ROWS fails `test_every_route_has_a_row`,
and one whose row no longer matches a route fails too. Roles: the resource's owner (student A),
another student (B), the instructor, no token. Transports: HTTP (every method the route serves,
and HEAD wherever GET is), WebSocket handshakes (token in `?token=` and in `Authorization`), SSE,
and the notes operations as `/ws/rest` messages.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import aiohttp
import pytest

A, B, T = "student-token-a", "student-token-b", "instructor-token-t"
ROLES = ("owner", "other", "instructor", "none")
TOKEN = {"owner": A, "other": B, "instructor": T, "none": None}
OK = "ok"
"""Passed the door: anything but 401/403 (and never a 5xx). A 404 or 422 is the handler's."""

OPEN = {"owner": OK, "other": OK, "instructor": OK, "none": OK}
MEMBER = {"owner": OK, "other": OK, "instructor": OK, "none": 401}
INSTRUCTOR = {"owner": 403, "other": 403, "instructor": OK, "none": 401}
OWNED = {"owner": OK, "other": 403, "instructor": OK, "none": 401}
SIGNED = {"owner": 401, "other": 401, "instructor": 401, "none": 401}
"""The provider's webhook: no class token needed, its HMAC signature is (none is sent here)."""
AGENT = {"owner": 403, "other": 403, "instructor": OK, "none": 401}


def row(expect: dict, query: str = "", body=None, ws_rest: bool = False) -> list[dict]:
    return [{"expect": expect, "query": query, "body": body, "ws_rest": ws_rest}]


ROWS: dict[tuple[str, str], list[dict]] = {
    ("GET", "/"): row(OPEN),
    ("GET", "/healthz"): row(OPEN),
    ("GET", "/openapi.json"): row(MEMBER),
    ("GET", "/asyncapi.json"): row(MEMBER),
    ("GET", "/api/echo"): row(MEMBER, "size=4"),
    ("POST", "/api/echo"): row(MEMBER, body={"x": 1}),
    ("GET", "/api/cacheable"): row(MEMBER, "max_age=5"),
    ("GET", "/api/cacheable/stats"): row(MEMBER),
    ("POST", "/api/cacheable/version"): row(MEMBER),
    ("GET", "/ws/echo"): row(MEMBER),
    ("GET", "/ws/session"): row(MEMBER),
    ("GET", "/ws/clock"): row(MEMBER, "count=1"),
    ("GET", "/api/cluster"): row(MEMBER),
    ("POST", "/api/cluster/counter"): row(MEMBER, body={"kind": "memory"}),
    ("GET", "/api/hub"): row(MEMBER),
    ("GET", "/api/clock"): row(MEMBER),
    ("GET", "/api/classroom"): row(INSTRUCTOR),
    ("POST", "/api/classroom/join"): row(MEMBER),
    # notes: a class board everyone reads; changes are the owner's
    ("GET", "/api/notes"): row(MEMBER, ws_rest=True),
    ("POST", "/api/notes"): row(MEMBER, body={"title": "t"}, ws_rest=True),
    ("OPTIONS", "/api/notes"): row(MEMBER),
    ("GET", "/api/notes/{id}"): row(MEMBER, ws_rest=True),
    ("PUT", "/api/notes/{id}"): row(OWNED, body={"title": "put"}, ws_rest=True),
    ("PATCH", "/api/notes/{id}"): row(OWNED, body={"title": "patched"}, ws_rest=True),
    ("DELETE", "/api/notes/{id}"): row(OWNED, ws_rest=True),
    ("OPTIONS", "/api/notes/{id}"): row(MEMBER),
    ("GET", "/ws/rest"): row(MEMBER),
    # feed
    ("GET", "/api/feed"): row(MEMBER, "since=0"),
    ("GET", "/api/feed/source"): row(MEMBER),
    ("POST", "/api/feed/source"): row(INSTRUCTOR, body={"rate": 1}),
    ("GET", "/sse/feed"): row(MEMBER),
    ("GET", "/ws/feed"): row(MEMBER),
    # chat
    ("GET", "/api/chat/messages"): row(MEMBER, "since=0"),
    ("POST", "/api/chat/messages"): row(MEMBER, body={"name": "{name}", "text": "hi"}),
    ("GET", "/ws/chat"): row(MEMBER, "name={name}"),
    ("DELETE", "/api/chat/members/{name}"): row(INSTRUCTOR),
    ("POST", "/api/chat/members/{name}/allow"): row(INSTRUCTOR),
    # bank
    ("POST", "/api/accounts"): row(MEMBER, body={"owner": "x", "opening_balance": 1}),
    ("GET", "/api/accounts/{id}"): row(OWNED),
    ("GET", "/api/accounts/{id}/statement"): row(OWNED),
    ("POST", "/api/payments"): row(OWNED, body={"account": "{account}", "payee": "p", "amount": 1}),
    ("GET", "/api/payments/{id}"): row(OWNED),
    ("POST", "/api/webhooks/provider"): row(SIGNED, body={"id": "e", "type": "x", "payment_id": 1}),
    ("GET", "/api/bank"): row(MEMBER),
    ("POST", "/api/bank/webhook-outage"): row(INSTRUCTOR, body={"fail_next": 0}),
    ("GET", "/ws/bank"): row(OWNED, "account={account}"),
    ("GET", "/ws/bank/support"): row(OWNED, "account={account}&role=customer")
    + row(AGENT, "account={account}&role=agent"),
    # iot
    ("POST", "/api/iot/readings"): row(OWNED, body={"device": "{device}", "value": 1}),
    ("POST", "/api/iot/readings/batch"): row(OWNED, body={"device": "{device}", "values": [1, 2]}),
    ("GET", "/api/iot/devices/{device}/commands"): row(OWNED, "since=0"),
    ("POST", "/api/iot/devices/{device}/commands"): row(OWNED, body={"command": "off"}),
    ("GET", "/api/iot/stats"): row(MEMBER),
    ("GET", "/ws/iot"): row(OWNED, "device={device}"),
    # games and whiteboards: every member plays and watches any
    ("GET", "/api/games"): row(MEMBER),
    ("POST", "/api/games"): row(MEMBER),
    ("PUT", "/api/games/{game}"): row(MEMBER),
    ("GET", "/api/games/{game}"): row(MEMBER),
    ("POST", "/api/games/{game}/seats"): row(MEMBER, body={"name": "{name}"}),
    ("POST", "/api/games/{game}/moves"): row(MEMBER, body={"column": 0}),
    ("GET", "/ws/game"): row(MEMBER, "game={game}&name={name}"),
    ("GET", "/api/collab"): row(MEMBER),
    ("POST", "/api/collab"): row(MEMBER),
    ("PUT", "/api/collab/{room}"): row(MEMBER),
    ("GET", "/api/collab/{room}"): row(MEMBER),
    ("GET", "/ws/collab"): row(MEMBER, "room={room}&name={name}"),
}
"""(method, route) -> one or more variants: the expected outcome per role, the query and body."""

NAMES = {"owner": "ann", "other": "ben", "instructor": "tutor", "none": "nobody"}


@pytest.fixture
def klass(make_lab):
    return make_lab(student_tokens=(A, B), instructor_token=T)


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _index(session, url: str) -> list[dict]:
    async with session.get(url + "/", headers={"Accept": "application/json"}) as resp:
        assert resp.status == 200
        return (await resp.json())["routes"]


async def _resources(session, lab) -> dict:
    """What student A owns: a note, an account with a payment, a device; and a game and a room."""
    h = bearer(A)
    async with session.post(lab.url + "/api/notes", json={"title": "A's"}, headers=h) as r:
        assert r.status == 201
        note = urlsplit(r.headers["Location"]).path.rsplit("/", 1)[1]
    async with session.post(lab.url + "/api/accounts", json={"owner": "A", "opening_balance": 1000},
                            headers=h) as r:
        account = (await r.json())["id"]
    async with session.post(lab.url + "/api/payments", headers=h,
                            json={"account": account, "payee": "shop", "amount": 1}) as r:
        assert r.status == 201, await r.text()
        payment = str((await r.json())["id"])
    async with session.post(lab.url + "/api/iot/readings", json={"device": "dev-a", "value": 1},
                            headers=h) as r:
        assert r.status == 204
    for path in ("/api/games/g1", "/api/collab/r1"):
        async with session.put(lab.url + path, headers=h) as r:
            assert r.status in (200, 201), (path, r.status)
    return {"note": note, "account": account, "payment": payment, "device": "dev-a",
            "game": "g1", "room": "r1"}


def _fill(text: str, res: dict, route: str, role: str) -> str:
    ids = {"/api/notes/{id}": res["note"], "/api/accounts/{id}": res["account"],
           "/api/accounts/{id}/statement": res["account"], "/api/payments/{id}": res["payment"]}
    values = {"{id}": ids.get(route, "1"), "{device}": res["device"], "{game}": res["game"],
              "{room}": res["room"], "{account}": res["account"], "{name}": NAMES[role]}
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _verdict(expect, got: int) -> bool:
    if expect == OK:
        return got not in (401, 403) and got < 500
    return got == expect


async def _http(session, lab, method, route, variant, res, role) -> int:
    path = _fill(route, res, route, role)
    query = _fill(variant["query"], res, route, role)
    body = variant["body"]
    kwargs = {}
    if body is not None:
        kwargs["data"] = _fill(json.dumps(body), res, route, role).encode()
        ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
        kwargs["headers"] = {"Content-Type": ctype, **bearer(TOKEN[role])}
    else:
        kwargs["headers"] = bearer(TOKEN[role])
    url = lab.url + path + (f"?{query}" if query else "")
    async with session.request(method, url, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(10), **kwargs) as resp:
        return resp.status


async def _websocket(session, lab, route, variant, res, role, how: str) -> int:
    query = _fill(variant["query"], res, route, role)
    token = TOKEN[role]
    headers = {}
    if token and how == "query":
        query = f"{query}&token={token}" if query else f"token={token}"
    elif token:
        headers = bearer(token)
    try:
        ws = await session.ws_connect(lab.ws_url + route + (f"?{query}" if query else ""),
                                      headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=2))
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def _sse(session, lab, route, variant, res, role) -> int:
    async with session.get(lab.url + route, headers=bearer(TOKEN[role]),
                           timeout=aiohttp.ClientTimeout(10)) as resp:
        return resp.status


async def _ws_rest(session, lab, method, route, variant, res, role) -> int | None:
    token = TOKEN[role]
    if token is None:
        return None  # the handshake itself is 401: the /ws/rest row checks it
    body = variant["body"]
    async with session.ws_connect(f"{lab.ws_url}/ws/rest?token={token}") as ws:
        msg = {"id": 1, "method": method, "path": _fill(route, res, route, role)}
        if body is not None:
            msg["body"] = body
        await ws.send_str(json.dumps(msg))
        return json.loads((await ws.receive(timeout=10)).data)["status"]


def _walk(lab) -> tuple[list[dict], list[tuple], dict]:
    async def go():
        table, missing = [], []
        async with aiohttp.ClientSession() as session:
            index = await _index(session, lab.url)
            res = await _resources(session, lab)
            for entry in index:
                route, kind = entry["path"], entry["kind"]
                for method in entry["methods"]:
                    variants = ROWS.get((method, route))
                    if variants is None:
                        missing.append((method, route))
                        continue
                    for variant in variants:
                        for role in ("none", "other", "owner", "instructor"):
                            expect = variant["expect"][role]
                            if kind == "websocket":
                                for how in ("query", "header"):
                                    got = await _websocket(session, lab, route, variant, res, role, how)
                                    table.append((f"ws:{how}", method, route, role, expect, got))
                                continue
                            if kind == "sse":
                                got = await _sse(session, lab, route, variant, res, role)
                                table.append(("sse", method, route, role, expect, got))
                                continue
                            got = await _http(session, lab, method, route, variant, res, role)
                            table.append(("http", method, route, role, expect, got))
                            if method == "GET":
                                got = await _http(session, lab, "HEAD", route, variant, res, role)
                                table.append(("http", "HEAD", route, role, expect, got))
                            if variant["ws_rest"]:
                                got_ws = await _ws_rest(session, lab, method, route, variant, res, role)
                                if got_ws is not None:
                                    table.append(("ws-rest", method, route, role, expect, got_ws))
        return index, missing, table

    index, missing, table = asyncio.run(go())
    return index, missing, table


def test_every_route_has_a_row_and_every_cell_holds(klass):
    index, missing, table = _walk(klass)
    served = {(m, e["path"]) for e in index for m in e["methods"]}
    assert len(served) > 40, "the index lists every route"
    assert not missing, f"routes without a row in ROWS (add one, and a rule in access.RULES): {missing}"
    stale = sorted(set(ROWS) - served)
    assert not stale, f"rows for routes the server does not serve: {stale}"
    wrong = [cell for cell in table if not _verdict(cell[4], cell[5])]
    assert not wrong, "(transport, method, route, role, expected, got):\n" + "\n".join(map(str, wrong))
    transports = {cell[0] for cell in table}
    assert transports == {"http", "ws:query", "ws:header", "sse", "ws-rest"}
    assert {cell[3] for cell in table} == set(ROLES)


def test_every_route_of_the_app_has_a_rule_in_the_policy():
    """The server side of the same promise: a route without a rule in access.RULES is closed (403),
    so the policy must name every route the app serves."""
    from labkit.routes.core import route_index
    from labkit.server.access import RULES
    from labkit.server.app import make_app

    served = {(m, e["path"]) for e in route_index(make_app()) for m in e["methods"]}
    assert not served - set(RULES), sorted(served - set(RULES))
    assert set(ROWS) == served


def test_a_route_without_a_rule_is_closed(tmp_path):
    """Deny by default: a route added to the app without a rule in access.RULES answers 403 to every
    token, the instructor's too, and its handler never runs."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from labkit.server.app import make_app
    from labkit.server.config import LabConfig

    ran = []

    async def handler(request):
        ran.append(request.path)
        return web.json_response({})

    async def go():
        app = make_app(LabConfig(db=str(tmp_path / "lab.db"), student_tokens=(A,), instructor_token=T))
        app.router.add_get("/api/brand-new", handler)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return [(await client.get("/api/brand-new", headers=bearer(token))).status
                    for token in (A, T, None)]

    assert asyncio.run(go()) == [403, 403, 401]
    assert ran == []


def test_owners_survive_a_restart_on_the_same_db(make_lab, tmp_path):
    db = str(tmp_path / "class.db")
    first = make_lab(db=db, student_tokens=(A, B), instructor_token=T)

    async def make():
        async with aiohttp.ClientSession() as session:
            return await _resources(session, first)

    res = asyncio.run(make())
    first.stop()
    again = make_lab(db=db, student_tokens=(A, B), instructor_token=T)

    async def use():
        out = {}
        async with aiohttp.ClientSession() as session:
            for who in (A, B):
                async with session.patch(f"{again.url}/api/notes/{res['note']}", headers={
                        **bearer(who), "Content-Type": "application/merge-patch+json"},
                        data=b'{"title": "after"}') as r:
                    out[("note", who)] = r.status
                async with session.post(f"{again.url}/api/payments", headers=bearer(who), json={
                        "account": res["account"], "payee": "p", "amount": 1}) as r:
                    out[("pay", who)] = r.status
                async with session.get(f"{again.url}/api/hub", headers=bearer(who)) as r:
                    out[("hub", who)] = sorted(t for t in (await r.json())["topics"] if "acc_" in t)
        return out

    out = asyncio.run(use())
    assert out[("note", A)] == 200 and out[("pay", A)] == 201
    assert out[("note", B)] == 403 and out[("pay", B)] == 403
    assert out[("hub", A)] == [f"bank.{res['account']}"] and out[("hub", B)] == []


PAGE = "http://jupyter.example:8888"
"""A student's Jupyter origin the class server was told about (`--allow-origin`)."""
FOREIGN = "http://evil.example"


def _cors_walk(lab) -> list[tuple]:
    """For every route of the index and every method it serves: a preflight and the request itself
    (a student's, with the token) from the allowed page, from a loopback page and from a foreign
    origin; what came back: (kind, method, route, origin, status, Allow-Origin, the other headers)."""
    async def go():
        seen = []
        async with aiohttp.ClientSession() as session:
            index = await _index(session, lab.url)
            res = await _resources(session, lab)
            for entry in index:
                route, kind = entry["path"], entry["kind"]
                for method in entry["methods"]:
                    variant = ROWS[(method, route)][0]
                    path = _fill(route, res, route, "owner")
                    query = _fill(variant["query"], res, route, "owner")
                    for origin in (PAGE, "http://127.0.0.1:8888", FOREIGN):
                        ask = {"Origin": origin, "Access-Control-Request-Method": method,
                               "Access-Control-Request-Headers": "authorization, content-type"}
                        async with session.options(lab.url + path, headers=ask) as r:
                            seen.append(("preflight", method, route, origin, r.status,
                                         r.headers.get("Access-Control-Allow-Origin"), dict(r.headers)))
                        if kind == "websocket":
                            if route == "/ws/game" and origin != FOREIGN:  # the REST rows took the seats
                                query += "&role=watch"
                            url = f"{lab.ws_url}{path}?{query + '&' if query else ''}token={A}"
                            try:
                                ws = await session.ws_connect(url, headers={"Origin": origin})
                                await ws.close()
                                status = 101
                            except aiohttp.WSServerHandshakeError as exc:
                                status = exc.status
                            seen.append(("ws", method, route, origin, status, None, {}))
                            continue
                        headers = {"Origin": origin, **bearer(A)}
                        data = None
                        if variant["body"] is not None:
                            data = _fill(json.dumps(variant["body"]), res, route, "owner").encode()
                            headers["Content-Type"] = ("application/merge-patch+json" if method == "PATCH"
                                                       else "application/json")
                        url = lab.url + path + (f"?{query}" if query else "")
                        async with session.request(method, url, headers=headers, data=data,
                                                   allow_redirects=False,
                                                   timeout=aiohttp.ClientTimeout(10)) as r:
                            seen.append((kind, method, route, origin, r.status,
                                         r.headers.get("Access-Control-Allow-Origin"), dict(r.headers)))
        return seen

    return asyncio.run(go())


def test_cors_for_allowed_pages_on_every_route(make_lab):
    """A class server told `--allow-origin PAGE` lets that page (and a loopback one: the WebSocket
    Origin rule's own) call every route from the browser: every preflight is answered 204 without
    a token, naming the origin, the method and the headers the pages send; every answer, errors
    and SSE streams included, names the origin and exposes Location and ETag. A foreign origin
    gets no CORS header anywhere (its preflight is a 403) and no WebSocket."""
    lab = make_lab(student_tokens=(A, B), instructor_token=T, allowed_origins=[PAGE])
    seen = _cors_walk(lab)
    routes = {(m, r) for _, m, r, *_ in seen}
    assert len(routes) > 40 and {k for k, *_ in seen} == {"preflight", "http", "sse", "ws"}
    wrong = []
    for kind, method, route, origin, status, allow, headers in seen:
        if origin == FOREIGN:
            ok = allow is None and (status == 403 if kind in ("preflight", "ws") else True)
        elif kind == "preflight":
            ok = (status == 204 and allow == origin and method in headers["Access-Control-Allow-Methods"]
                  and "Authorization" in headers["Access-Control-Allow-Headers"]
                  and "Content-Type" in headers["Access-Control-Allow-Headers"]
                  and headers.get("Vary") == "Origin")
        elif kind == "ws":
            ok = status == 101 or (route, status) == ("/ws/bank/support", 403)  # role=agent
        else:
            ok = (allow == origin and "Origin" in headers.get("Vary", "")
                  and {"Location", "ETag"} <= set(headers["Access-Control-Expose-Headers"].split(", ")))
        if not ok:
            wrong.append((kind, method, route, origin, status, allow))
    assert not wrong, "\n".join(map(str, wrong))
    # a plain OPTIONS (no preflight) is still the route's own, behind the token
    async def plain():
        async with aiohttp.ClientSession() as session, session.options(
                lab.url + "/api/notes", headers={"Origin": PAGE}) as r:
            return r.status, r.headers.get("Access-Control-Allow-Origin")
    assert asyncio.run(plain()) == (401, PAGE)


def test_no_cors_on_the_kernels_own_lab(make_lab):
    """The kernel's own lab (no class, no origins named) is reached through Jupyter's proxy on the
    page's own origin: it answers no preflight and names no origin."""
    lab = make_lab()

    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.options(lab.url + "/api/games/g", headers={
                    "Origin": "http://127.0.0.1:8888", "Access-Control-Request-Method": "PUT"}) as r:
                pre = (r.status, r.headers.get("Access-Control-Allow-Origin"))
            async with session.get(lab.url + "/api/games", headers={"Origin": "http://127.0.0.1:8888"}) as r:
                return pre, r.status, r.headers.get("Access-Control-Allow-Origin")

    pre, status, allow = asyncio.run(go())
    assert pre[1] is None and pre[0] != 204 and status == 200 and allow is None
