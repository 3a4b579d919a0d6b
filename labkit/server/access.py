"""The one access policy: who may read, change, follow or act on each resource of the lab.

Every door asks this module: the classroom middleware (`auth.py`) looks up the rule of every HTTP
request (every method; HEAD obeys GET's rule, `rule_method`), of every WebSocket handshake and SSE
request, in `RULES` by (method, route); a route with no rule is refused (403), so a new route is
closed until it gets its row (and `tests/test_access_matrix.py` fails until it does). Requests whose
resource travels in a body or a message ask `require` themselves with the same kinds and actions:
`POST /api/payments` (the account paid from), IoT readings (the device), `/ws/rest` (each notes
operation), chat names (`claim_chat_name`).

Who: a request's identity is its principal (`auth.identify`): "instructor", "student-<8 hex of the
token's hash>" (each student token is one person: give `labkit serve --classroom --token T` once
per student, so each has an identity of their own), or "local" outside classroom mode, where
everybody is the instructor of their own lab and this module allows everything without asking the
store.

The policy, by kind of resource (`POLICY`):

| kind | read | change / act | follow (WS, SSE, long poll) | owner |
|---|---|---|---|---|
| note | every member (a class board) | owner | - | whoever's POST made it |
| account | owner | owner (pays from it) | owner (`/ws/bank`; support room) | whoever opened it |
| payment | owner | - | - | whoever paid it |
| device | owner | owner (readings, commands) | owner (`/ws/iot`) | its first user |
| hub topic | `/api/hub` lists only what a member may follow | - | - | the topic's resource |
| game, whiteboard, feed, chat | every member | every member | every member | nobody (*) |

(*) only the instructor removes a chat member, sets the feed or fails the bank's webhooks.

The instructor may do everything; the bank's support *agent* is the instructor, never a query
parameter. Owners live in SQLite (`stores/owners.py`, table `owner(kind, id, principal)` in the
lab's `--db`), so a class server restarted on the same file keeps them. A resource with no owner
row (it does not exist, or was made before this table) is the instructor's: a student gets the same
403 for "not yours" and "no such thing", so ids cannot be probed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

from labkit.stores.owners import ClaimLimit, OwnerStore

from .keys import CONFIG
from .problem import ProblemError
from .validate import name_key, name_keys, reserved_word

ROLE = web.RequestKey("role", str)
""""instructor" or "student" (everyone is "instructor" outside classroom mode)."""
PRINCIPAL = web.RequestKey("principal", str)
"""Who made the request: "instructor", "student-<8 hex digits of the token's hash>", or "local"."""
OWNERS = web.AppKey("owner_store", OwnerStore)

READ, CHANGE, FOLLOW, ACT = "read", "change", "follow", "act"
MEMBER_, OWNER_ = "member", "owner"

POLICY: dict[str, dict[str, str]] = {
    "note": {READ: MEMBER_, CHANGE: OWNER_},
    "account": {READ: OWNER_, CHANGE: OWNER_, ACT: OWNER_, FOLLOW: OWNER_},
    "payment": {READ: OWNER_},
    "device": {READ: OWNER_, ACT: OWNER_, FOLLOW: OWNER_},
}
"""kind -> action -> who besides the instructor may do it: every member, or the owner only."""

CLAIMED_BY_FIRST_USE = frozenset({"device"})
"""Kinds nobody creates with a POST: the first identity that uses one owns it."""

ID_SHAPES = {"device": re.compile(r"[A-Za-z0-9_-]{1,32}"), "note": re.compile(r"[0-9]{1,18}"),
             "payment": re.compile(r"[0-9]{1,18}"), "account": re.compile(r"[A-Za-z0-9_]{1,40}")}
"""What an id of each kind looks like; a malformed one is left to the handler (422/404) and never
stored."""

NOT_YOURS = "only its owner, or the instructor, may {action} this {kind}."


def classroom(app: web.Application) -> bool:
    """True when the lab runs in classroom mode (an instructor token is set)."""
    return app[CONFIG].instructor_token is not None


def is_instructor(request: web.Request) -> bool:
    """May this request do what only the instructor may? (Everybody, outside classroom mode.)"""
    return request.get(ROLE, "instructor") == "instructor"


def principal(request: web.Request) -> str:
    return request.get(PRINCIPAL, "local")


def rule_method(method: str) -> str:
    """The method whose rule a request obeys: HEAD is GET without the body (aiohttp answers it with
    the GET handler), so it obeys GET's rule exactly; every other method its own."""
    return "GET" if method == "HEAD" else method


# -- the rules of the doors ----------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """Who may pass one door. `who`: "open" (no token: the provider's webhook proves itself by its
    signature), "member" (any class token), "instructor", or "owner" (the rule of `kind`/`action`
    for the id found in the path parameter or query parameter `param`). `creates`: the kind a 201
    with a Location creates (its sender owns it). `body`: the door admits members and the handler
    asks `require` for the resource named in the body or messages. `check`: a door's own rule."""

    who: str
    kind: str | None = None
    action: str | None = None
    param: str | None = None
    query: bool = False
    creates: str | None = None
    body: str | None = None
    check: Callable | None = None


OPEN = Rule("open")
MEMBER = Rule("member")
INSTRUCTOR = Rule("instructor")


def owner_in_path(kind: str, action: str, param: str = "id") -> Rule:
    return Rule("owner", kind, action, param)


def owner_in_query(kind: str, action: str, param: str) -> Rule:
    return Rule("owner", kind, action, param, query=True)


async def _support_room(request: web.Request) -> None:
    """The support room of ?account=: the agent is the instructor; the customer is the account's
    owner (the instructor may sit on either side: outside classroom mode one person plays both)."""
    role, account = request.query.get("role", ""), request.query.get("account", "")
    if role == "agent" and not is_instructor(request):
        raise ProblemError(403, "the bank's support agent is the instructor; join as role=customer")
    if role == "customer" and account:
        await require(request, "account", account, FOLLOW)


RULES: dict[tuple[str, str], Rule] = {
    # core, documents
    ("GET", "/"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/openapi.json"): MEMBER,
    ("GET", "/asyncapi.json"): MEMBER,
    # echo, session, workers, hub, clock: no resource of anyone's
    ("GET", "/api/echo"): MEMBER,
    ("POST", "/api/echo"): MEMBER,
    ("GET", "/api/cacheable"): MEMBER,  # lesson 01's caches: one answer, no one's resource
    ("GET", "/api/cacheable/stats"): MEMBER,
    ("POST", "/api/cacheable/version"): MEMBER,  # harmless: the cache tour runs on the own lab
    ("GET", "/ws/echo"): MEMBER,
    ("GET", "/ws/session"): MEMBER,
    ("GET", "/ws/clock"): MEMBER,
    ("GET", "/api/cluster"): MEMBER,
    ("POST", "/api/cluster/counter"): MEMBER,
    ("GET", "/api/hub"): MEMBER,  # filtered: only the topics this identity may follow
    ("GET", "/api/clock"): MEMBER,
    ("GET", "/api/classroom"): INSTRUCTOR,
    ("POST", "/api/classroom/join"): MEMBER,
    # notes (REST; /ws/rest asks `require` for each message)
    ("GET", "/api/notes"): MEMBER,
    ("POST", "/api/notes"): Rule("member", creates="note"),
    ("OPTIONS", "/api/notes"): MEMBER,
    ("GET", "/api/notes/{id}"): owner_in_path("note", READ),
    ("PUT", "/api/notes/{id}"): owner_in_path("note", CHANGE),
    ("PATCH", "/api/notes/{id}"): owner_in_path("note", CHANGE),
    ("DELETE", "/api/notes/{id}"): owner_in_path("note", CHANGE),
    ("OPTIONS", "/api/notes/{id}"): MEMBER,
    ("GET", "/ws/rest"): Rule("member", body="note"),
    # feed: one shared ticker; only the instructor sets it
    ("GET", "/api/feed"): MEMBER,
    ("GET", "/api/feed/source"): MEMBER,
    ("POST", "/api/feed/source"): INSTRUCTOR,
    ("GET", "/sse/feed"): MEMBER,
    ("GET", "/ws/feed"): MEMBER,
    # chat: one room; names are bound to identities (`claim_chat_name`)
    ("GET", "/api/chat/messages"): MEMBER,
    ("POST", "/api/chat/messages"): Rule("member", body="chat name"),
    ("GET", "/ws/chat"): Rule("member", body="chat name"),
    ("DELETE", "/api/chat/members/{name}"): INSTRUCTOR,
    ("POST", "/api/chat/members/{name}/allow"): INSTRUCTOR,
    # bank
    ("POST", "/api/accounts"): Rule("member", creates="account"),
    ("GET", "/api/accounts/{id}"): owner_in_path("account", READ),
    ("GET", "/api/accounts/{id}/statement"): owner_in_path("account", READ),
    ("POST", "/api/payments"): Rule("member", creates="payment", body="account"),
    ("GET", "/api/payments/{id}"): owner_in_path("payment", READ),
    ("POST", "/api/webhooks/provider"): OPEN,
    ("GET", "/api/bank"): MEMBER,
    ("POST", "/api/bank/webhook-outage"): INSTRUCTOR,
    ("GET", "/ws/bank"): owner_in_query("account", FOLLOW, "account"),
    ("GET", "/ws/bank/support"): Rule("member", check=_support_room),
    # iot: a device is its first user's
    ("POST", "/api/iot/readings"): Rule("member", body="device"),
    ("POST", "/api/iot/readings/batch"): Rule("member", body="device"),
    ("GET", "/api/iot/devices/{device}/commands"): owner_in_path("device", READ, "device"),
    ("POST", "/api/iot/devices/{device}/commands"): owner_in_path("device", ACT, "device"),
    ("GET", "/api/iot/stats"): MEMBER,
    ("GET", "/ws/iot"): owner_in_query("device", FOLLOW, "device"),
    # games and whiteboards: every member plays and watches any
    ("GET", "/api/games"): MEMBER,
    ("POST", "/api/games"): MEMBER,
    ("PUT", "/api/games/{game}"): MEMBER,
    ("GET", "/api/games/{game}"): MEMBER,
    ("POST", "/api/games/{game}/seats"): MEMBER,
    ("POST", "/api/games/{game}/moves"): MEMBER,
    ("GET", "/ws/game"): MEMBER,
    ("GET", "/api/collab"): MEMBER,
    ("POST", "/api/collab"): MEMBER,
    ("PUT", "/api/collab/{room}"): MEMBER,
    ("GET", "/api/collab/{room}"): MEMBER,
    ("GET", "/ws/collab"): MEMBER,
}
"""(method, route) -> the rule of that door. HEAD uses GET's row."""

OPEN_ROUTES = frozenset(path for (_, path), rule in RULES.items() if rule.who == "open")
INSTRUCTOR_ONLY = frozenset(key for key, rule in RULES.items() if rule.who == "instructor")
"""(method, route) pairs only the instructor may call. A GET entry covers HEAD too."""


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def rule_for(request: web.Request) -> Rule | None:
    """The rule of this request's door, or None (no such route: 404/405 follow; or a route without
    a rule, which `enforce` refuses)."""
    return RULES.get((rule_method(request.method), route_of(request)))


def routed(request: web.Request) -> bool:
    """False when aiohttp found no route (404) or no such method (405) for the request."""
    return request.match_info.http_exception is None


async def enforce(request: web.Request, rule: Rule | None) -> None:
    """Refuse (403) what this request's door does not let its sender do."""
    if rule is None:
        if routed(request):
            raise ProblemError(403, f"{request.method} {route_of(request)} has no access rule yet; "
                                    "it stays closed until it has one (labkit/server/access.py)")
        return
    if rule.who == "instructor" and not is_instructor(request):
        raise ProblemError(403, f"{request.method} {route_of(request)} is the instructor's to do.")
    if rule.who == "owner" and rule.kind and rule.action and rule.param:
        source = request.query if rule.query else request.match_info
        rid = source.get(rule.param)
        if rid:  # none: the handler says what is missing (422)
            await require(request, rule.kind, rid, rule.action)
    if rule.check is not None:
        await rule.check(request)


def _store(request: web.Request) -> OwnerStore:
    return request.app[OWNERS]


async def may(request: web.Request, kind: str, rid: str, action: str) -> bool:
    """Whether the request's sender may do `action` on the resource (kind, rid)."""
    if is_instructor(request) or POLICY[kind].get(action) == MEMBER_:
        return True
    shape = ID_SHAPES.get(kind)
    if shape is not None and not shape.fullmatch(rid):
        return True  # no such resource can exist: the handler answers 404/422 and nothing is stored
    who = principal(request)
    owner: str | None
    if kind in CLAIMED_BY_FIRST_USE:
        try:
            owner = await asyncio.to_thread(_store(request).claim, kind, rid, who)
        except ClaimLimit:
            raise ProblemError(507, f"one identity may hold at most this many {kind}s") from None
    else:
        owner = await asyncio.to_thread(_store(request).owner, kind, rid)
    return owner == who


async def require(request: web.Request, kind: str, rid: str, action: str) -> None:
    """403 unless the request's sender may do `action` on (kind, rid): the one ownership rule."""
    if not await may(request, kind, rid, action):
        raise ProblemError(403, NOT_YOURS.format(action=action, kind=kind))


async def remember(request: web.Request, kind: str, rid: str) -> None:
    """Record the request's sender as the owner of the resource it just created."""
    if classroom(request.app):
        await asyncio.to_thread(_store(request).remember, kind, str(rid), principal(request))


async def after(request: web.Request, rule: Rule | None, response: web.StreamResponse) -> None:
    """A 201 with a Location on a creating door: the sender owns what it names."""
    if rule is None or rule.creates is None or response.status != 201:
        return
    location = response.headers.get("Location", "")
    rid = request.url.join(URL(location)).path.rstrip("/").rsplit("/", 1)[-1] if location else ""
    if rid:
        await remember(request, rule.creates, rid)


# -- chat names: bound to identities -------------------------------------------------------------
def chat_identity(request: web.Request, name: str) -> str:
    """Who is speaking, for the room's bookkeeping (rates, removal): the identity in a class; the
    name itself outside classroom mode, where everybody is the same "local" person."""
    return principal(request) if classroom(request.app) else "name:" + name_key(name)


def _name_taken(name: str, detail: str = "") -> ProblemError:
    return ProblemError(409, detail or f"name: {name!r} is taken in this room (or looks like a name "
                        "that is)", errors=[{"field": "name", "message": "taken"}])


async def claim_chat_name(request: web.Request, name: str, members: dict, *,
                          websocket: bool) -> str:
    """May the request's sender speak in the chat room as `name` (already `validate.chat_name`d)?
    Returns its chat identity (`chat_identity`); refuses otherwise:

    - 403: the instructor removed this identity and has not allowed it back;
    - 422: a student's name that holds a reserved word (`validate.reserved_word`);
    - 409: in a class, a name (by skeleton, `name_keys`) another identity holds, online or not, or
      a second name for a student, who has one (held while offline); over WebSocket, a name that
      already has a socket in the room. Outside classroom mode only the last rule applies, to REST
      posts too, as before: nobody holds a name while away.
    """
    keys, who = name_keys(name), chat_identity(request, name)
    store = _store(request)
    if await asyncio.to_thread(store.is_removed, who):
        raise ProblemError(403, "the instructor removed you from this room; ask them to let you back")
    if not classroom(request.app):
        if keys & members.keys():
            raise _name_taken(name)
        return who
    if not is_instructor(request) and (word := reserved_word(name)):
        raise ProblemError(422, f"name: {name!r} holds the reserved word {word!r}; pick another name",
                           errors=[{"field": "name", "message": f"reserved ({word})"}])
    status, other = await asyncio.to_thread(store.bind_name, who, name, keys,
                                            not is_instructor(request))
    if status == "taken":
        raise _name_taken(name)
    if status == "other":
        raise _name_taken(name, f"name: you are {other!r} in this room; one name per person")
    if websocket and keys & members.keys():
        raise _name_taken(name, f"name: {name!r} is already in the room on another connection")
    return who


# -- the hub's topic list ------------------------------------------------------------------------
TOPIC_KINDS = {"bank.": "account", "support.": "account", "iot.": "device"}
"""Topics that carry one resource's events: `bank.<account>`, `support.<account>`, `iot.<device>`.
Every other topic (feed, chat, games) is the class's."""


async def visible_topics(request: web.Request, names: list[str]) -> list[str]:
    """The topic names this request's sender may follow (every one for the instructor)."""
    if is_instructor(request):
        return names
    owned: dict[str, set[str]] = {}
    for kind in set(TOPIC_KINDS.values()):
        owned[kind] = await asyncio.to_thread(_store(request).owned, kind, principal(request))
    shown = []
    for name in names:
        prefix = next((p for p in TOPIC_KINDS if name.startswith(p)), None)
        if prefix is None or name[len(prefix):] in owned[TOPIC_KINDS[prefix]]:
            shown.append(name)
    return shown


def setup(app: web.Application, db_path: Callable[[web.Application], str]) -> None:
    """Give `app` its owner store in the SQLite file `db_path(app)` names (read at startup, after
    the family that opens the file)."""
    async def _open(app: web.Application) -> None:
        app[OWNERS] = OwnerStore(db_path(app))
        await asyncio.to_thread(app[OWNERS].init)

    app.on_startup.append(_open)
