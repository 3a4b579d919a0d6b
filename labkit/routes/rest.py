"""Route family "rest": the notes resource, a CRUD API with HTTP's full semantics, on SQLite.

- `/api/notes`: GET a page (JSON or CSV, `Link` header and `links` in the body), POST a note
  (201, `Location`, the created representation), OPTIONS.
- `/api/notes/{id}`: GET (`ETag`, `Last-Modified`, `Cache-Control: no-cache`), PUT (full
  replace), PATCH (`application/merge-patch+json`, RFC 7396), DELETE (204), OPTIONS. HEAD comes
  with every GET.
- Conditional requests (RFC 9110 section 13): If-None-Match / If-Modified-Since give 304 on
  GET and HEAD; If-Match / If-Unmodified-Since that fail give 412, checked inside the same SQLite
  transaction as the write, so concurrent writers never lose an update.
- Every error is problem+json; bad input of any kind is a 4xx naming what was wrong.
- Bounds (LabConfig): a note larger than `max_note_bytes` as JSON gets 413; a write that would take
  the store past `max_store_bytes` gets 507. A page holds at most per_page notes, so at most
  per_page x max_note_bytes; it is built in a worker thread, not on the server loop.

Size: longer than 500 lines because HTTP's semantics for one resource (conditional requests, caching
headers, content negotiation, pagination, idempotency) and each route's OpenAPI description beside
it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tempfile
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from aiohttp import web

from labkit.server import access
from labkit.server.keys import CONFIG
from labkit.server.problem import ProblemError
from labkit.server.validate import (
    NOT_BLANK,
    JSONInputError,
    csv_cell,
    json_integer,
    load_json,
    query_integer,
)
from labkit.stores import idempotency
from labkit.stores.notes import EDITABLE, Note, NotesStore, StoreFull, representation_bytes, strong_etag

NOTES = web.AppKey("notes_store", NotesStore)
_TEMP_DB = web.AppKey("notes_temp_db", tempfile.TemporaryDirectory)

MAX_TITLE = 200
MAX_TEXT = 100_000
MAX_TAGS = 20
MAX_TAG = 50
MAX_VOTES = 2**53 - 1
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
MAX_PAGE = 10**9
CACHE_CONTROL = "no-cache"
"""Caches may keep a note but must revalidate it (If-None-Match) before each reuse."""

JSON = "application/json"
CSV = "text/csv"
MERGE_PATCH = "application/merge-patch+json"
READ_ONLY = ("id", "version", "created", "updated")

routes = web.RouteTableDef()


# -- content negotiation ------------------------------------------------------------------
def _accept_ranges(header: str) -> list[tuple[str, float]]:
    ranges = []
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        ranges.append((media.lower(), q))
    return ranges


def _quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    """q of the most specific range matching `offer` (RFC 9110 12.5.1); 0 when none does."""
    kind = offer.split("/")[0]
    best, best_rank = 0.0, -1
    for media, q in ranges:
        if media == offer:
            rank = 2
        elif media == f"{kind}/*":
            rank = 1
        elif media == "*/*":
            rank = 0
        else:
            continue
        if rank > best_rank:
            best, best_rank = q, rank
    return best


def negotiate(request: web.Request, offers: tuple[str, ...]) -> str:
    """The offer the client's Accept likes best (the first offer without Accept), else 406."""
    header = request.headers.get("Accept", "").strip()
    if not header:
        return offers[0]
    ranges = _accept_ranges(header)
    scored = [(_quality(o, ranges), -i, o) for i, o in enumerate(offers)]
    q, _, offer = max(scored)
    if q <= 0:
        raise ProblemError(
            406,
            f"This resource is available as {', '.join(offers)}; your Accept "
            f"({header[:200]!r}) allows none of them.",
            available=list(offers),
        )
    return offer


# -- request bodies ---------------------------------------------------------------------------
async def read_json(request: web.Request, media_type: str):
    """The request body parsed as JSON of `media_type`: 415, 413 or 400 when it is not."""
    raw_type = request.headers.get("Content-Type")
    charset = (request.charset or "utf-8").lower()
    if raw_type is None or request.content_type != media_type or charset not in ("utf-8", "utf8"):
        headers = {"Accept-Patch": MERGE_PATCH} if request.method == "PATCH" else None
        got = "no Content-Type" if raw_type is None else f"Content-Type {raw_type[:100]!r}"
        raise ProblemError(
            415, f"{request.method} {request.path} takes {media_type} (UTF-8); you sent {got}.",
            headers=headers, accepted=media_type,
        )
    body = await request.read()  # over the lab's limit: 413 from aiohttp, made problem+json
    if not body.strip():
        raise ProblemError(400, "The body is empty; send a JSON object.")
    try:
        return load_json(body)
    except JSONInputError as exc:
        raise ProblemError(400, f"The body is not JSON the lab accepts: {exc}.") from None


def _text_error(value, limit: int, *, empty_ok: bool) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__ if value is not None else 'null'}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    if not empty_ok and not re.search(NOT_BLANK, value):
        return "must not be empty or only whitespace"
    if len(value) > limit:
        return f"must be at most {limit} characters, got {len(value)}"
    return None


def validate(doc) -> dict:
    """The editable fields of a full note document, defaults filled in; 422 naming each bad field."""
    if not isinstance(doc, dict):
        kind = "array" if isinstance(doc, list) else type(doc).__name__
        raise ProblemError(422, f"The body must be a JSON object, got {kind}.",
                           errors=[{"field": "(body)", "message": "must be a JSON object"}])
    errors = []
    unknown = sorted(k for k in doc if k not in EDITABLE and k not in READ_ONLY)
    errors += [{"field": k[:100], "message": "is not a field of a note"} for k in unknown]
    if "title" not in doc:
        errors.append({"field": "title", "message": "is required"})
    elif problem := _text_error(doc["title"], MAX_TITLE, empty_ok=False):
        errors.append({"field": "title", "message": problem})
    if "body" in doc and (problem := _text_error(doc["body"], MAX_TEXT, empty_ok=True)):
        errors.append({"field": "body", "message": problem})
    tags = doc.get("tags", [])
    if not isinstance(tags, list):
        errors.append({"field": "tags", "message": "must be an array of strings"})
    elif len(tags) > MAX_TAGS:
        errors.append({"field": "tags", "message": f"at most {MAX_TAGS} tags, got {len(tags)}"})
    else:
        for i, tag in enumerate(tags):
            if problem := _text_error(tag, MAX_TAG, empty_ok=False):
                errors.append({"field": f"tags[{i}]", "message": problem})
    raw_votes = doc.get("votes", 0)
    votes = json_integer(raw_votes)  # JSON Schema: 3.0 is an integer too
    if votes is None:
        kind = "null" if raw_votes is None else type(raw_votes).__name__
        errors.append({"field": "votes", "message": f"must be an integer, got {kind}"})
    elif abs(votes) > MAX_VOTES:
        errors.append({"field": "votes", "message": f"must be within ±{MAX_VOTES}"})
    if errors:
        names = ", ".join(e["field"] for e in errors)
        raise ProblemError(422, f"Invalid note: {names}. See `errors` for each field.",
                           errors=errors)
    return {"title": doc["title"], "body": doc.get("body", ""), "tags": list(tags), "votes": votes}


def bounded(request: web.Request, doc) -> dict:
    """`validate(doc)`, then 413 when the note would be larger than the lab's `max_note_bytes`."""
    fields = validate(doc)
    size, limit = representation_bytes(fields), request.app[CONFIG].max_note_bytes
    if size > limit:
        raise ProblemError(413, f"This note would be {size} bytes as JSON; a note may be at most "
                                f"{limit} bytes. Shorten the body (control characters count 6 bytes).",
                           size=size, limit=limit)
    return fields


async def write_guarded(operation, *args):
    """Run a store write in a worker thread; a full store becomes 507 problem+json."""
    try:
        return await asyncio.to_thread(operation, *args)
    except StoreFull as exc:
        raise ProblemError(507, f"The notes store is full ({exc.used} of {exc.limit} bytes used; this "
                                f"write needs {exc.adding} more). Delete notes to make room.",
                           used=exc.used, limit=exc.limit) from None


def merge_patch(target, patch):
    """RFC 7396 JSON Merge Patch: objects merge member by member, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- conditional requests (RFC 9110 section 13) ------------------------------------------------
def _seconds(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


def http_date(ts: float) -> str:
    return format_datetime(_seconds(ts), usegmt=True)


def _matches(etag: str, tags, *, weak: bool) -> bool:
    bare = etag.strip('"')
    return any(t.value == "*" or (t.value == bare and (weak or not t.is_weak)) for t in tags)


def check_preconditions(request: web.Request, note: Note) -> None:
    """Steps 1-3 of RFC 9110 section 13.2.2: raise 412 when If-Match (or, without it,
    If-Unmodified-Since) fails, or when If-None-Match matches on a write. On GET and HEAD a
    matching If-None-Match is not a failure: `represent` answers it with 304."""
    if request.if_match is not None:
        ok = _matches(note.etag, request.if_match, weak=False)
    elif request.if_unmodified_since is not None:
        ok = _seconds(note.updated) <= request.if_unmodified_since
    else:
        ok = True
    if ok and request.method not in ("GET", "HEAD") and request.if_none_match is not None:
        ok = not _matches(note.etag, request.if_none_match, weak=True)
    if not ok:
        raise ProblemError(
            412,
            "The note changed since you read it (your precondition does not hold). GET it again, "
            "apply your change to the fresh copy, and send it with the new ETag in If-Match.",
            headers={"ETag": note.etag},
            current_etag=note.etag,
            current_version=note.version,
        )


def not_modified(request: web.Request, etag: str, updated: float | None) -> bool:
    """True when a GET/HEAD's If-None-Match (or, without it, If-Modified-Since) says 'you have it'."""
    if request.if_none_match is not None:
        return _matches(etag, request.if_none_match, weak=True)
    if updated is not None and request.if_modified_since is not None:
        return _seconds(updated) <= request.if_modified_since
    return False


def represent(request: web.Request, body: bytes, content_type: str, *, etag: str,
              updated: float | None = None, status: int = 200, headers: dict | None = None):
    """A representation with its validators; 304 without a body when the client already has it."""
    hdrs = {"ETag": etag, "Cache-Control": CACHE_CONTROL, **(headers or {})}
    if updated is not None:
        hdrs["Last-Modified"] = http_date(updated)
    if status == 200 and request.method in ("GET", "HEAD") and not_modified(request, etag, updated):
        return web.Response(status=304, headers=hdrs)
    return web.Response(status=status, body=body, content_type=content_type, charset="utf-8",
                        headers=hdrs)


# -- helpers ------------------------------------------------------------------------------------
def store(request: web.Request) -> NotesStore:
    return request.app[NOTES]


def note_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise ProblemError(404, f"There is no note {raw[:50]!r}: note ids are whole numbers.")
    return int(raw)


def _missing(nid: int) -> ProblemError:
    return ProblemError(404, f"There is no note {nid} (it never existed or was deleted).")


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    return default if raw is None else query_integer(raw, name, low, high)


def _page_url(page: int, per_page: int) -> str:
    return f"/api/notes?page={page}&per_page={per_page}"


def page_links(page: int, per_page: int, pages: int) -> dict[str, str]:
    """self/first/last always, prev/next when they exist (relative URLs, as the Link header)."""
    links = {"self": _page_url(page, per_page), "first": _page_url(1, per_page),
             "last": _page_url(pages, per_page)}
    if page > 1:
        links["prev"] = _page_url(min(page - 1, pages), per_page)
    if page < pages:
        links["next"] = _page_url(page + 1, per_page)
    return links


def _csv(notes: list[Note]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "title", "body", "tags", "votes", "version", "created", "updated"])
    for note in notes:
        d = note.as_dict()
        writer.writerow([csv_cell(cell) for cell in (
            d["id"], d["title"], d["body"], ";".join(d["tags"]), d["votes"], d["version"],
            d["created"], d["updated"])])
    return out.getvalue().encode()


def _note_response(request: web.Request, note: Note, status: int = 200, headers=None):
    return represent(request, note.json_bytes(), JSON, etag=note.etag, updated=note.updated,
                     status=status, headers=headers)


def _page_body(notes_store: NotesStore, media: str, page: int, per_page: int) -> tuple[bytes, int, dict]:
    """One page read and encoded (in a worker thread: a large page never holds the server loop)."""
    notes, total = notes_store.page((page - 1) * per_page, per_page)
    pages = max(1, -(-total // per_page))
    links = page_links(page, per_page, pages)
    if media == CSV:
        return _csv(notes), total, links
    body = json.dumps({
        "items": [n.as_dict() for n in notes], "page": page, "per_page": per_page,
        "total": total, "pages": pages, "links": links,
    }, ensure_ascii=False).encode()
    return body, total, links


# -- handlers -----------------------------------------------------------------------------------
@routes.get("/api/notes")
async def list_notes(request: web.Request) -> web.Response:
    """A page of notes (JSON or CSV), with Link headers to the other pages."""
    media = negotiate(request, (JSON, CSV))
    page = _query_int(request, "page", 1, 1, MAX_PAGE)
    per_page = _query_int(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    body, total, links = await asyncio.to_thread(_page_body, store(request), media, page, per_page)
    link_header = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    return represent(request, body, media, etag=strong_etag(body),
                     headers={"Link": link_header, "Vary": "Accept",
                              "X-Total-Count": str(total)})


@routes.post("/api/notes")
async def create_note(request: web.Request) -> web.StreamResponse:
    """Create a note: 201, Location of the new note, and its representation. With an
    Idempotency-Key header a retry replays the first answer and creates nothing new."""
    negotiate(request, (JSON,))
    return await idempotency.idempotent(request, "POST /api/notes", lambda: _create_note(request))


async def _create_note(request: web.Request) -> web.Response:
    fields = bounded(request, await read_json(request, JSON))
    note = await write_guarded(store(request).create, fields)
    location = f"/api/notes/{note.id}"
    return _note_response(request, note, 201,
                          {"Location": location, "Content-Location": location})


@routes.route("OPTIONS", "/api/notes")
async def notes_options(request: web.Request) -> web.Response:
    """Which methods /api/notes takes (Allow) and what POST accepts (Accept-Post)."""
    return web.Response(status=204, headers={"Allow": "GET, HEAD, POST, OPTIONS",
                                             "Accept-Post": JSON})


@routes.get("/api/notes/{id}")
async def get_note(request: web.Request) -> web.Response:
    """One note, with ETag, Last-Modified and Cache-Control; 304 when the client has it."""
    negotiate(request, (JSON,))
    nid = note_id(request)
    note = await asyncio.to_thread(store(request).get, nid)
    if note is None:
        raise _missing(nid)
    check_preconditions(request, note)
    return _note_response(request, note)


async def _update(request: web.Request, compute) -> web.Response:
    nid = note_id(request)

    def change(current: Note) -> dict:
        check_preconditions(request, current)
        return compute(current)

    result = await write_guarded(store(request).update, nid, change)
    if result is None:
        raise _missing(nid)
    note, _changed = result
    return _note_response(request, note)


@routes.put("/api/notes/{id}")
async def put_note(request: web.Request) -> web.Response:
    """Replace a note completely (fields left out get their defaults)."""
    negotiate(request, (JSON,))
    note_id(request)
    fields = bounded(request, await read_json(request, JSON))
    return await _update(request, lambda current: fields)


@routes.patch("/api/notes/{id}")
async def patch_note(request: web.Request) -> web.Response:
    """Change some fields with a JSON Merge Patch (RFC 7396): null removes a field."""
    negotiate(request, (JSON,))
    note_id(request)
    patch = await read_json(request, MERGE_PATCH)
    if isinstance(patch, dict):
        patch = {k: v for k, v in patch.items() if k not in READ_ONLY}
    return await _update(request, lambda current: bounded(request, merge_patch(current.fields(), patch)))


@routes.delete("/api/notes/{id}")
async def delete_note(request: web.Request) -> web.Response:
    """Delete a note: 204, and 404 from then on."""
    nid = note_id(request)
    found = await asyncio.to_thread(
        store(request).delete, nid, lambda current: check_preconditions(request, current)
    )
    if not found:
        raise _missing(nid)
    return web.Response(status=204)


@routes.route("OPTIONS", "/api/notes/{id}")
async def note_options(request: web.Request) -> web.Response:
    """Which methods a note takes (Allow) and the patch format (Accept-Patch)."""
    note_id(request)
    return web.Response(status=204, headers={"Allow": "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
                                             "Accept-Patch": MERGE_PATCH})


# -- family setup -------------------------------------------------------------------------------
async def _open_store(app: web.Application) -> None:
    path = app[CONFIG].db
    if not path:  # an app built without the runner: a database of its own, removed at cleanup
        app[_TEMP_DB] = tempfile.TemporaryDirectory(prefix="labkit-notes-")
        path = str(Path(app[_TEMP_DB].name) / "lab.db")
    app[NOTES] = NotesStore(path, max_store_bytes=app[CONFIG].max_store_bytes)
    await asyncio.to_thread(app[NOTES].init)


async def _close_store(app: web.Application) -> None:
    temp = app.get(_TEMP_DB)
    if temp is not None:
        temp.cleanup()


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.on_startup.append(_open_store)
    idempotency.setup(app, lambda app: app[NOTES].path)  # keys live in the notes' SQLite file
    access.setup(app, lambda app: app[NOTES].path)  # and so do the owners (labkit/server/access.py)
    app.on_cleanup.append(_close_store)


# -- OpenAPI ------------------------------------------------------------------------------------
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_NOTE_FIELDS = {
    "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE, "pattern": NOT_BLANK},
    "body": {"type": "string", "maxLength": MAX_TEXT, "default": "",
             "description": "The whole note may be at most 128 KiB as JSON (413 beyond that)"},
    "tags": {"type": "array", "maxItems": MAX_TAGS, "default": [],
             "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG, "pattern": NOT_BLANK}},
    "votes": {"type": "integer", "minimum": -MAX_VOTES, "maximum": MAX_VOTES, "default": 0},
}
# Server-set members may come back in a PUT of a fetched note: any value is accepted and ignored.
# (Not `readOnly`: OpenAPI reads that as "must not be sent", and the server does not refuse them.)
_SERVER_FIELDS = {name: {"description": "Set by the server; accepted and ignored when sent"}
                  for name in READ_ONLY}
_NOTE_INPUT = {"type": "object", "required": ["title"], "additionalProperties": False,
               "properties": {**_NOTE_FIELDS, **_SERVER_FIELDS},
               "description": "id, version, created and updated may be sent back; they are ignored."}
_NOTE_PATCH = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "title": _NOTE_FIELDS["title"],
        **{name: {"anyOf": [schema, {"type": "null"}]}
           for name, schema in _NOTE_FIELDS.items() if name != "title"},
        **_SERVER_FIELDS,
    },
    "description": "RFC 7396: members replace, null removes (back to the default)",
}
_NOTE = {
    "type": "object",
    "required": ["id", "title", "body", "tags", "votes", "version", "created", "updated"],
    "properties": {
        "id": {"type": "integer"}, **_NOTE_FIELDS,
        "version": {"type": "integer", "description": "Goes up by one with every change"},
        "created": {"type": "string", "format": "date-time"},
        "updated": {"type": "string", "format": "date-time"},
    },
}
_HEADER = {"schema": {"type": "string"}}
_VALIDATORS = {
    "ETag": {**_HEADER, "description": "Strong entity tag of this representation"},
    "Last-Modified": {**_HEADER, "description": "When the note last changed (HTTP date)"},
    "Cache-Control": {**_HEADER, "description": "no-cache: revalidate before reuse"},
}
_NOTE_OK = {"description": "The note", "headers": _VALIDATORS,
            "content": {JSON: {"schema": _NOTE}}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}


def _cond(name: str, what: str) -> dict:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"},
            "description": what}


_IF_MATCH = _cond("If-Match", "Write only if the note still has this ETag, else 412")
_IF_NONE_MATCH = _cond("If-None-Match", "304 when the note still has one of these ETags")
_IF_MODIFIED = _cond("If-Modified-Since", "304 when unchanged since then (ignored with If-None-Match)")
_NO_CONTENT = {"description": "No content; see the Allow header"}

OPENAPI_PATHS = {
    "/api/notes": {
        "get": {
            "summary": "A page of notes",
            "operationId": "listNotes",
            "parameters": [
                {"name": "page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
                {"name": "per_page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE,
                            "default": DEFAULT_PER_PAGE}},
                _IF_NONE_MATCH,
            ],
            "responses": {
                "200": {
                    "description": "One page; Link has first/prev/next/last",
                    "headers": {"Link": _HEADER, "ETag": _HEADER, "X-Total-Count": _HEADER},
                    "content": {
                        JSON: {"schema": {"type": "object", "properties": {
                            "items": {"type": "array", "items": _NOTE},
                            "page": {"type": "integer"}, "per_page": {"type": "integer"},
                            "total": {"type": "integer"}, "pages": {"type": "integer"},
                            "links": {"type": "object",
                                      "additionalProperties": {"type": "string"}},
                        }}},
                        CSV: {"schema": {"type": "string"}},
                    },
                },
                "304": {"description": "Not modified: your copy is current"},
                "406": _PROBLEM, "422": _PROBLEM,
            },
        },
        "post": {
            "summary": "Create a note",
            "operationId": "createNote",
            "parameters": [idempotency.OPENAPI_PARAMETER],
            "requestBody": {"required": True, "content": {JSON: {"schema": _NOTE_INPUT}}},
            "responses": {
                "201": {**_NOTE_OK, "description": "Created; Location names the new note",
                        "headers": {**_VALIDATORS, "Location": _HEADER}},
                "400": _PROBLEM, "406": _PROBLEM, "413": _PROBLEM, "415": _PROBLEM,
                "422": _PROBLEM, "507": _PROBLEM, "409": idempotency.OPENAPI_RESPONSES["409"],
            },
        },
        "options": {
            "summary": "Methods of the collection",
            "operationId": "notesOptions",
            "responses": {"204": {**_NO_CONTENT, "headers": {"Allow": _HEADER,
                                                             "Accept-Post": _HEADER}}},
        },
    },
    "/api/notes/{id}": {
        "parameters": [_ID],
        "get": {
            "summary": "One note",
            "operationId": "getNote",
            "parameters": [_IF_NONE_MATCH, _IF_MODIFIED, _IF_MATCH],
            "responses": {
                "200": _NOTE_OK,
                "304": {"description": "Not modified: your copy is current",
                        "headers": _VALIDATORS},
                "404": _PROBLEM, "406": _PROBLEM, "412": _PROBLEM,
            },
        },
        "put": {
            "summary": "Replace a note",
            "operationId": "replaceNote",
            "parameters": [_IF_MATCH],
            "requestBody": {"required": True, "content": {JSON: {"schema": _NOTE_INPUT}}},
            "responses": {
                "200": _NOTE_OK,
                "400": _PROBLEM, "404": _PROBLEM, "406": _PROBLEM, "412": _PROBLEM,
                "413": _PROBLEM, "415": _PROBLEM, "422": _PROBLEM, "507": _PROBLEM,
            },
        },
        "patch": {
            "summary": "Change some fields (JSON Merge Patch)",
            "operationId": "patchNote",
            "parameters": [_IF_MATCH],
            "requestBody": {"required": True, "content": {MERGE_PATCH: {"schema": _NOTE_PATCH}}},
            "responses": {
                "200": _NOTE_OK,
                "400": _PROBLEM, "404": _PROBLEM, "406": _PROBLEM, "412": _PROBLEM,
                "413": _PROBLEM, "415": _PROBLEM, "422": _PROBLEM, "507": _PROBLEM,
            },
        },
        "delete": {
            "summary": "Delete a note",
            "operationId": "deleteNote",
            "parameters": [_IF_MATCH],
            "responses": {"204": {"description": "Deleted"}, "404": _PROBLEM, "412": _PROBLEM},
        },
        "options": {
            "summary": "Methods of a note",
            "operationId": "noteOptions",
            "responses": {"204": {**_NO_CONTENT, "headers": {"Allow": _HEADER,
                                                             "Accept-Patch": _HEADER}},
                          "404": _PROBLEM},
        },
    },
}
