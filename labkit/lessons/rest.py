"""Experiments for the REST lesson: each one talks to the lab's notes API and returns a tidy frame.

status_tour: one request per status code the API can answer; repeat_effects / repeat_summary:
what repeating a request does to the server (idempotency); conditional_savings: the same GET with and without
If-None-Match, bytes and milliseconds; operations: the operations an OpenAPI document lists;
channels: the channels an AsyncAPI document lists; response_schema / schema_errors: check a real
answer or message against the schema a document gives for it (jsonschema, draft 2020-12);
Conflict / stale_write: a note someone else changed after you read it (for the 412 exercise);
increment: read-modify-write that recovers from 412 by reading again; log_view: a client's
request log in columns that fit a notebook page; notes_file: where a lab keeps its notes.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.clients.rest import RestClient
from labkit.tables import shorten, view

if TYPE_CHECKING:
    import pandas as pd

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _frame(rows: list[dict] | dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows)


def _new_note(api: RestClient, **fields) -> str:
    reply = api.post("/api/notes", json={"title": f"scratch {uuid.uuid4().hex[:6]}", **fields})
    if reply.status != 201:
        raise RuntimeError(f"could not create a note: {reply.status} {reply.text[:200]}")
    return reply.headers["Location"]


def status_tour(target) -> pd.DataFrame:
    """Make one request for each status the notes API can answer; a row per request."""
    with RestClient(target) as api:
        location = _new_note(api, body="tour")
        etag = api.get(location).headers["ETag"]
        limit = getattr(getattr(target, "config", None), "max_body", 1024 * 1024)
        big = "x" * (limit + 1)
        plan = [
            ("read a note", "GET", location, {}, None),
            ("create a note", "POST", "/api/notes", {"Content-Type": "application/json"},
             '{"title": "made on the tour"}'),
            ("ask again with its ETag", "GET", location, {"If-None-Match": etag}, None),
            ("send broken JSON", "POST", "/api/notes", {"Content-Type": "application/json"},
             '{"title": '),
            ("ask for a note that is not there", "GET", "/api/notes/999999", {}, None),
            ("use a method the route lacks", "DELETE", "/api/notes", {}, None),
            ("ask for a format it lacks", "GET", location, {"Accept": "text/csv"}, None),
            ("send a body that is too big", "POST", "/api/notes",
             {"Content-Type": "application/json"}, big),
            ("send the wrong Content-Type", "POST", "/api/notes", {"Content-Type": "text/plain"},
             "title=x"),
            ("send a note without a title", "POST", "/api/notes",
             {"Content-Type": "application/json"}, '{"votes": "many"}'),
            ("write with a stale ETag", "PUT", location,
             {"Content-Type": "application/json", "If-Match": '"stale"'}, '{"title": "x"}'),
            ("delete the note", "DELETE", location, {}, None),
        ]
        rows = []
        for what, method, path, headers, data in plan:
            reply = api.request(method, path, headers=headers, data=data)
            detail = ""
            if reply.headers.get("Content-Type", "").startswith("application/problem+json"):
                problem = reply.json()
                detail = f"{problem['title']}: {problem['detail']}"
            rows.append({"what": what, "request": f"{method} {shorten(path, 32)}",
                         "status": reply.status, "problem (title: detail)": shorten(detail, 110)})
    return _frame(rows)


def log_view(client: RestClient, last: int | None = None):
    """`client`'s request log, narrow enough to read without scrolling: one "request" column
    (method and path), status, bytes up and down as "headers + body", time, and whether the
    request reused an open connection (plus the cache's verdict when the client has a cache)."""
    log = client.log_frame(last)
    rows = {
        "request": [f"{m} {shorten(p, 40)}" for m, p in zip(log["method"], log["path"], strict=True)],
        "status": log["status"],
        "up: head + body (B)": [f"{h:,} + {b:,}" for h, b in
                                zip(log["request_header_bytes"], log["request_body_bytes"], strict=True)],
        "down: head + body (B)": [f"{h:,} + {b:,}" for h, b in
                                  zip(log["response_header_bytes"], log["response_body_bytes"],
                                      strict=True)],
        "ms": log["elapsed_ms"],
        "reused connection": log["reused_connection"].map({True: "yes", False: "no (new)"}),
    }
    if client.cache is not None:
        rows["cache"] = log["cache"]
    table = _frame(rows)
    table.index = log.index.rename("#")
    return view(table, width=44)


def repeat_effects(target, times: int = 3) -> pd.DataFrame:
    """Send each verb's request `times` times; record status and the server state after each.

    `notes` counts notes on the server; `state` is the ETag of the note the request touched (for
    POST: the note it created), "(gone)" when there is none. A verb is idempotent when the state
    after N repetitions equals the state after one.
    """
    rows = []
    with RestClient(target) as api:
        location = _new_note(api, body="before")
        doomed = _new_note(api, body="to delete")
        title = f"repeat {uuid.uuid4().hex[:6]}"
        plan = [
            ("PUT", location, {"Content-Type": "application/json"},
             json.dumps({"title": title, "body": "replaced"})),
            ("PATCH", location, MERGE_PATCH, json.dumps({"body": "patched"})),
            ("DELETE", doomed, {}, None),
            ("POST", "/api/notes", {"Content-Type": "application/json"},
             json.dumps({"title": title})),
        ]
        for method, path, headers, data in plan:
            for attempt in range(1, times + 1):
                reply = api.request(method, path, headers=headers, data=data)
                total = api.get("/api/notes?per_page=1").json()["total"]
                touched = reply.headers.get("Location") if method == "POST" else path
                after = api.get(touched) if touched else None
                state = after.headers["ETag"] if after is not None and after.status == 200 else "(gone)"
                rows.append({"verb": method, "repetition": attempt, "status": reply.status,
                             "notes": total, "state": state})
    return _frame(rows)


def repeat_summary(effects) -> pd.DataFrame:
    """One row per verb of `repeat_effects`: the statuses, the note count after the first and the
    last repetition, how many distinct states were seen, and whether repeating changed anything."""
    rows = []
    for verb, group in effects.groupby("verb", sort=False):
        first, last = group.iloc[0], group.iloc[-1]
        rows.append({"verb": verb, "statuses": " ".join(str(s) for s in group["status"]),
                     "notes_after_first": int(first["notes"]),
                     "notes_after_last": int(last["notes"]),
                     "distinct_states": int(group["state"].nunique()),
                     "idempotent": bool((first["notes"], first["state"])
                                        == (last["notes"], last["state"]))})
    return _frame(rows)


def non_idempotent_verbs(effects) -> list[str]:
    """The verbs whose state after the last repetition differs from the state after the first."""
    summary = repeat_summary(effects)
    return summary.loc[~summary["idempotent"], "verb"].tolist()


def conditional_savings(target, *, body_bytes: int = 50_000, trials: int = 20) -> pd.DataFrame:
    """GET one note `trials` times plainly and `trials` times with If-None-Match; a row per GET."""
    rows = []
    with RestClient(target) as api:
        location = _new_note(api, body="x" * body_bytes)
        etag = api.get(location).headers["ETag"]  # warm-up, dropped
        for trial in range(trials):
            for kind, headers in (("plain GET (200)", {}),
                                  ("conditional GET (304)", {"If-None-Match": etag})):
                reply = api.get(location, headers=headers)
                e = reply.exchange
                rows.append({"kind": kind, "trial": trial, "status": reply.status,
                             "response_header_bytes": e.response_header_bytes,
                             "response_body_bytes": e.response_body_bytes,
                             "bytes_down": e.response_header_bytes + e.response_body_bytes,
                             "elapsed_ms": e.elapsed_ms})
        api.delete(location)
    return _frame(rows)


def savings_summary(frame) -> dict:
    """Median bytes down and milliseconds per kind, and what the 304 saved per request.

    `ms_noise`: how far apart the medians of two equal halves of the plain GETs (odd and even
    trials) are, i.e. what two runs of the same request differ by here and now. A time saved no
    larger than that is noise (`time_saved_text` says so; never a negative saving)."""
    med = frame.groupby("kind")[["bytes_down", "elapsed_ms"]].median()
    plain, cond = med.loc["plain GET (200)"], med.loc["conditional GET (304)"]
    plain_ms = frame.loc[frame["kind"] == "plain GET (200)", "elapsed_ms"].reset_index(drop=True)
    halves = (plain_ms.iloc[0::2].median(), plain_ms.iloc[1::2].median())
    return {
        "ms_noise": float(abs(halves[0] - halves[1])) if len(plain_ms) > 1 else float("inf"),
        "n_per_kind": int(frame.groupby("kind").size().min()),
        "bytes_200": float(plain["bytes_down"]), "bytes_304": float(cond["bytes_down"]),
        "bytes_saved": float(plain["bytes_down"] - cond["bytes_down"]),
        "ms_200": float(plain["elapsed_ms"]), "ms_304": float(cond["elapsed_ms"]),
        "ms_saved": float(plain["elapsed_ms"] - cond["elapsed_ms"]),
    }


def time_saved_text(summary: dict) -> str:
    """The time a 304 saved, in words: "0.42 ms (31 % of the time)", or, when it is no larger
    than the run's noise (`savings_summary`'s ms_noise), "no time beyond the noise (two halves of
    the plain GETs differed by 0.05 ms)"."""
    saved, noise = summary["ms_saved"], summary["ms_noise"]
    if saved <= noise:
        return (f"no time beyond the noise (two halves of the plain GETs differed by "
                f"{noise:.2f} ms)")
    return f"{saved:.2f} ms ({saved / summary['ms_200']:.0%} of the time)"


def operations(document: dict) -> pd.DataFrame:
    """One row per operation of an OpenAPI document: method, path, operationId, summary."""
    rows = [
        {"method": method.upper(), "path": path, "operationId": op.get("operationId", ""),
         "summary": op.get("summary", "")}
        for path, item in document.get("paths", {}).items()
        for method, op in item.items()
        if method in OPERATION_METHODS
    ]
    return _frame(rows)


def channels(document: dict) -> pd.DataFrame:
    """One row per channel of an AsyncAPI 3 document: channel, address, what the lab sends and
    what it receives there (message names, from the document's operations: in AsyncAPI an
    operation's `action` is the application's, here the lab's)."""
    sends: dict[str, list[str]] = {}
    receives: dict[str, list[str]] = {}
    for op in document.get("operations", {}).values():
        name = op["channel"]["$ref"].rsplit("/", 1)[-1]
        messages = [m["$ref"].rsplit("/", 1)[-1] for m in op.get("messages", [])]
        (sends if op["action"] == "send" else receives).setdefault(name, []).extend(messages)
    rows = [{"channel": name, "address": channel.get("address", ""),
             "lab sends": ", ".join(sends.get(name, [])),
             "lab receives": ", ".join(receives.get(name, []))}
            for name, channel in document.get("channels", {}).items()]
    return _frame(rows)


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def response_schema(document: dict, path: str, method: str, status: int,
                    media: str = "application/json") -> str:
    """The JSON pointer, inside an OpenAPI document, of the schema of one answer's body."""
    pointer = _pointer("paths", path, method.lower(), "responses", str(status), "content", media,
                       "schema")
    node: Any = document
    for part in pointer.split("/")[1:]:
        node = node[part.replace("~1", "/").replace("~0", "~")]  # KeyError: not documented
    return pointer


def message_schema(document: dict, channel: str, message: str) -> str:
    """The JSON pointer, inside an AsyncAPI document, of one message's payload schema."""
    pointer = _pointer("channels", channel, "messages", message, "payload")
    document["channels"][channel]["messages"][message]["payload"]  # KeyError: not documented
    return pointer


def schema_errors(document: dict, pointer: str, instance) -> list[str]:
    """Why `instance` does not fit the schema at `pointer` in `document` (OpenAPI 3.1 and AsyncAPI
    3 schemas are JSON Schema; `$ref`s resolve inside the document); [] when it fits."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    validator = Draft202012Validator({**document, "$ref": "#" + pointer})
    return [f"{'/'.join(map(str, e.absolute_path)) or '(the whole message)'}: {e.message}"
            for e in validator.iter_errors(instance)]


def traffic_checks(openapi: dict, asyncapi: dict, note: dict, tick: dict) -> pd.DataFrame:
    """A real answer of GET /api/notes/{id} checked against OpenAPI and a real /ws/clock tick
    against AsyncAPI, each also with one field made wrong: traffic, document, schema, fits,
    errors."""
    note_schema = response_schema(openapi, "/api/notes/{id}", "get", 200)
    tick_schema = message_schema(asyncapi, "clock", "tick")
    rows = []
    for what, doc, spec, pointer, value in [
            ("GET /api/notes/{id}, as answered", "OpenAPI", openapi, note_schema, note),
            ("the same, votes as text", "OpenAPI", openapi, note_schema, {**note, "votes": "many"}),
            ("a /ws/clock tick, as sent", "AsyncAPI", asyncapi, tick_schema, tick),
            ("the same, seq as text", "AsyncAPI", asyncapi, tick_schema, {**tick, "seq": "three"})]:
        errors = schema_errors(spec, pointer, value)
        rows.append({"traffic": what, "document": doc, "schema": pointer, "fits": not errors,
                     "errors": "; ".join(errors)})
    return _frame(rows)


@dataclass(frozen=True)
class Conflict:
    """A note you read (its ETag and votes as you saw them) that someone else has changed since."""

    path: str
    stale_etag: str
    votes_seen: int
    votes_now: int


def stale_write(target) -> Conflict:
    """Create a note, read it, then let another client add a vote: your ETag is now stale."""
    with RestClient(target) as you, RestClient(target) as someone_else:
        path = _new_note(you, votes=1)
        seen = you.get(path)
        theirs = someone_else.patch(path, data=json.dumps({"votes": seen.json()["votes"] + 1}),
                                    headers=MERGE_PATCH)
    return Conflict(path, seen.headers["ETag"], seen.json()["votes"], theirs.json()["votes"])


def increment(api: RestClient, path: str, *, field: str = "votes", etag: str | None = None,
              value: int | None = None, max_attempts: int = 5):
    """Add 1 to `field` with If-Match; on 412 read the note again and retry. Returns the last reply.

    Pass `etag` and `value` to start from what you read earlier (possibly stale).
    """
    reply = None
    for _ in range(max_attempts):
        if etag is None or value is None:
            current = api.get(path)
            etag, value = current.headers["ETag"], current.json()[field]
        reply = api.patch(path, data=json.dumps({field: value + 1}),
                          headers={**MERGE_PATCH, "If-Match": etag})
        if reply.status != 412:
            return reply
        etag = value = None
    return reply


def notes_file(lab) -> str:
    """Where `lab` keeps the notes, in two lines for lesson 01: the file and its kind. A class
    server (`lk.join`) keeps them on the instructor's machine, which a student cannot see."""
    path, db = getattr(lab, "db_path", None), getattr(getattr(lab, "config", None), "db", None)
    if path is None:  # a ClassroomLab: a handle on someone else's server
        return (f"notes file: on the class server ({lab.base_url}), the instructor's machine\n"
                "kind: the instructor's choice: `labkit serve --classroom --db FILE` keeps it; without "
                "--db it is temporary, deleted when the class server stops")
    kind = ("your own file, kept" if db else
            "temporary: deleted by lab.stop(), a kernel restart or lk.start(other options)")
    return f"notes file: {path}\nkind: {kind}"
