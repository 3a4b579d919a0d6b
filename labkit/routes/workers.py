"""Route family "workers": which worker process answered, and the list of a cluster's workers.

Every answer of a cluster's worker carries a `Lab-Worker` header (the worker's number), WebSocket
upgrades (101) and SSE streams included (a single lab sends none); the chat welcome message
repeats the number as `worker`.

- `GET /api/cluster`: the workers of this lab, each `{id, pid, port, connections, alive}`. A worker
  of a cluster reads the list of its peers from the cluster file its parent wrote and asks each one
  for its own entry (`?local=1`); a peer that does not answer within a second is `alive: false`.
  `connections` counts the TCP connections open to that worker (HTTP keep-alive and WebSocket);
  null for a single lab, which does not count them.
- `POST /api/cluster/counter` {"store": "memory" | "shared"}: add one to a counter and return it.
  "memory" lives in this worker's memory (a session done wrong: each worker has its own count),
  "shared" in the SQLite file every worker shares (one count, whichever worker answers).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from labkit.server.problem import ProblemError
from labkit.server.validate import load_json  # the lab's one JSON reader (depth-limited)
from labkit.stores.sqlite import create_schema

PEER_TIMEOUT_S = 1.0
"""How long `GET /api/cluster` waits for a peer worker before calling it not alive."""


@dataclass
class WorkerInfo:
    """Who this process is in its cluster: `id` from 1, the parent's `cluster_file` (None: a
    single lab), the backplane URL and the balance mode (for display)."""

    id: int = 1
    cluster_file: str | None = None
    backplane: str | None = None
    balance: str | None = None
    memory_counter: int = 0
    transports: weakref.WeakSet = field(default_factory=weakref.WeakSet)


WORKER = web.AppKey("worker", WorkerInfo)


def worker_id(app: web.Application) -> int:
    """The number of the worker this app runs in (1 for a single lab)."""
    info = app.get(WORKER)
    return info.id if info is not None else 1


def configure(app: web.Application, worker: int, cluster_file: str | None,
              backplane: str | None = None, balance: str | None = None) -> None:
    """Make `app` worker number `worker` of the cluster described by `cluster_file`."""
    info = app[WORKER]
    info.id, info.cluster_file, info.backplane, info.balance = worker, cluster_file, backplane, balance
    if _tag not in app.on_response_prepare:
        app.on_response_prepare.append(_tag)


async def _tag(request: web.Request, response: web.StreamResponse) -> None:
    info = request.app[WORKER]
    response.headers["Lab-Worker"] = str(info.id)
    if request.transport is not None and request.query.get("local") is None:
        info.transports.add(request.transport)


def _own_entry(request: web.Request, asked_by_peer: bool = False) -> dict:
    """This worker's entry. A peer's question (`?local=1`) is not counted as a connection. A
    single lab (not a cluster's worker) does not count its connections: `connections` is null."""
    info = request.app[WORKER]
    if _tag not in request.app.on_response_prepare:
        return {"id": info.id, "pid": os.getpid(), "port": _port(request), "connections": None,
                "alive": True}
    if request.transport is not None and not asked_by_peer:
        info.transports.add(request.transport)
    open_ = [t for t in list(info.transports)
             if not t.is_closing() and not (asked_by_peer and t is request.transport)]
    return {"id": info.id, "pid": os.getpid(), "port": _port(request),
            "connections": len(open_), "alive": True}


def _port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if sockname else None


async def _peer_entry(session: aiohttp.ClientSession, peer: dict) -> dict:
    entry = {"id": peer["id"], "pid": peer["pid"], "port": peer["port"], "connections": None,
             "alive": False}
    try:
        async with session.get(f"http://127.0.0.1:{peer['port']}/api/cluster?local=1") as r:
            if r.status == 200:
                mine = (await r.json())["workers"][0]
                entry.update(connections=mine["connections"], alive=mine["pid"] == peer["pid"])
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError):
        pass
    return entry


routes = web.RouteTableDef()


@routes.get("/api/cluster")
async def cluster(request: web.Request) -> web.Response:
    """The workers of this lab: id, pid, port, open connections, alive."""
    info = request.app[WORKER]
    raw = request.query.get("local")
    if raw is not None and raw not in ("0", "1", "true", "false"):
        raise ProblemError(422, f"local must be 0, 1, true or false, got {raw[:20]!r}",
                           errors=[{"field": "local", "message": "one of 0, 1, true, false"}])
    local = raw in ("1", "true")
    own = _own_entry(request, asked_by_peer=local)
    workers = [own]
    if info.cluster_file and not local:
        peers = json.loads(Path(info.cluster_file).read_text())["workers"]
        timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            others = await asyncio.gather(*(_peer_entry(session, p) for p in peers
                                            if p["id"] != info.id))
        workers = sorted([own, *others], key=lambda w: w["id"])
    return web.json_response({"worker": info.id, "backplane": info.backplane,
                              "balance": info.balance, "workers": workers},
                             headers={"Cache-Control": "no-store"})


def _add_shared(path: str) -> int:
    create_schema(path, "CREATE TABLE IF NOT EXISTS lab_counters (name TEXT PRIMARY KEY, value INTEGER);")
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        row = con.execute("INSERT INTO lab_counters VALUES ('visits', 1) ON CONFLICT(name) "
                          "DO UPDATE SET value = value + 1 RETURNING value").fetchone()
        return row[0]
    finally:
        con.close()


@routes.post("/api/cluster/counter")
async def counter(request: web.Request) -> web.Response:
    """Add one to the "memory" (this worker only) or "shared" (SQLite) counter; return it."""
    from .rest import NOTES

    try:
        body = load_json(await request.read())
    except ValueError as exc:  # JSONInputError says why (depth, a too-long number, ...)
        raise ProblemError(400, f'not JSON the lab accepts ({exc}); send JSON such as '
                                '{"store": "shared"}') from None
    store = body.get("store") if isinstance(body, dict) else None
    if store not in ("memory", "shared"):
        raise ProblemError(422, '"store" must be "memory" or "shared"',
                           errors=[{"field": "store", "message": "memory or shared"}])
    info = request.app[WORKER]
    if store == "memory":
        info.memory_counter += 1
        value = info.memory_counter
    else:
        value = await asyncio.to_thread(_add_shared, request.app[NOTES].path)
    return web.json_response({"store": store, "value": value, "worker": info.id})


def setup(app: web.Application) -> None:
    app[WORKER] = WorkerInfo()  # a cluster's worker is tagged too: see configure()
    app.add_routes(routes)


_WORKER = {"type": "object", "properties": {
    "id": {"type": "integer", "minimum": 1}, "pid": {"type": "integer"},
    "port": {"type": ["integer", "null"]}, "connections": {"type": ["integer", "null"]},
    "alive": {"type": "boolean"}}}
_PROBLEM = {"$ref": "#/components/responses/Problem"}
OPENAPI_PATHS = {
    "/api/cluster": {
        "get": {
            "summary": "The workers of this lab: id, pid, port, open connections, alive",
            "operationId": "clusterWorkers",
            "parameters": [{"name": "local", "in": "query", "required": False,
                            "description": "1: only the worker that answers (no peers asked)",
                            "schema": {"type": "string", "enum": ["0", "1", "true", "false"]}}],
            "responses": {"200": {
                "description": "`worker` is the one that answered (also in the Lab-Worker header "
                               "of a cluster's worker)",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "worker": {"type": "integer"}, "backplane": {"type": ["string", "null"]},
                    "balance": {"type": ["string", "null"]},
                    "workers": {"type": "array", "items": _WORKER}}}}}},
                "422": {"$ref": "#/components/responses/Problem"}},
        }
    },
    "/api/cluster/counter": {
        "post": {
            "summary": "Add one to a counter kept in this worker's memory or in the shared store",
            "operationId": "clusterCounter",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["store"],
                "properties": {"store": {"enum": ["memory", "shared"]}}}}}},
            "responses": {
                "200": {"description": "The counter after adding one, and who counted",
                        "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "store": {"type": "string"}, "value": {"type": "integer"},
                            "worker": {"type": "integer"}}}}}},
                "400": _PROBLEM, "422": _PROBLEM,
            },
        }
    },
}
