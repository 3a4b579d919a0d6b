"""The notes resource over real sockets and real SQLite: CRUD, HTTP semantics, errors, concurrency."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import sqlite3

import aiohttp
import pytest

from labkit.clients.rest import RestClient
from labkit.routes.rest import merge_patch

JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}
LONG_AGO = "Mon, 01 Jan 2001 00:00:00 GMT"


@pytest.fixture
def api(lab):
    client = RestClient(lab)
    yield client
    client.close()


def create(api, **fields):
    reply = api.post("/api/notes", json={"title": "a note", **fields})
    assert reply.status == 201, reply.text
    return reply


def assert_problem(reply, status):
    assert reply.status == status, (reply.status, reply.text)
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    body = reply.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body


# -- CRUD ---------------------------------------------------------------------------------------
def test_post_answers_201_with_location_and_the_representation(api):
    reply = create(api, body="text", tags=["x"], votes=2)
    note = reply.json()
    assert reply.headers["Location"] == f"/api/notes/{note['id']}"
    assert note["title"] == "a note" and note["body"] == "text" and note["tags"] == ["x"]
    assert note["votes"] == 2 and note["version"] == 1
    assert reply.headers["ETag"].startswith('"')
    fetched = api.get(reply.headers["Location"])
    assert fetched.status == 200 and fetched.json() == note
    assert fetched.headers["ETag"] == reply.headers["ETag"]


def test_get_one_carries_etag_cache_control_and_last_modified(api):
    location = create(api).headers["Location"]
    reply = api.get(location)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["Cache-Control"] == "no-cache"
    assert reply.headers["ETag"].startswith('"') and reply.headers["ETag"].endswith('"')
    assert reply.headers["Last-Modified"].endswith(" GMT")


def test_list_is_paginated_with_link_header_and_links_in_the_body(api):
    ids = [create(api, title=f"n{i}").json()["id"] for i in range(5)]
    first = api.get("/api/notes?per_page=2")
    body = first.json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (1, 2, 5, 3)
    assert "prev" not in body["links"] and body["links"]["next"] == "/api/notes?page=2&per_page=2"
    assert first.headers["X-Total-Count"] == "5"
    link = first.headers["Link"]
    assert '</api/notes?page=2&per_page=2>; rel="next"' in link
    assert '</api/notes?page=3&per_page=2>; rel="last"' in link
    seen, url, hops = [], "/api/notes?per_page=2", 0
    while url and hops < 10:  # a client needs nothing but the links to walk every page
        page = api.get(url).json()
        seen += [n["id"] for n in page["items"]]
        url, hops = page["links"].get("next"), hops + 1
    assert seen == ids
    middle = api.get("/api/notes?page=2&per_page=2").json()["links"]
    assert middle["prev"] == "/api/notes?page=1&per_page=2"
    beyond = api.get("/api/notes?page=9&per_page=2").json()
    assert beyond["items"] == [] and beyond["total"] == 5


def test_put_replaces_the_whole_note_and_repeating_it_changes_nothing(api):
    location = create(api, body="old", tags=["t"], votes=7).headers["Location"]
    first = api.put(location, json={"title": "new"})
    assert first.status == 200
    note = first.json()
    assert (note["title"], note["body"], note["tags"], note["votes"]) == ("new", "", [], 0)
    assert note["version"] == 2
    again = [api.put(location, json={"title": "new"}) for _ in range(3)]
    assert {r.json()["version"] for r in again} == {2}
    assert {r.headers["ETag"] for r in again} == {first.headers["ETag"]}
    assert api.get("/api/notes").json()["total"] == 1


def test_post_repeated_creates_a_new_note_each_time(api):
    ids = [create(api, title="same").json()["id"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert api.get("/api/notes").json()["total"] == 3


def test_put_ignores_read_only_fields_sent_back(api):
    note = create(api).json()
    reply = api.put(f"/api/notes/{note['id']}", json={**note, "id": 999, "title": "changed"})
    assert reply.status == 200 and reply.json()["id"] == note["id"]


def test_patch_is_a_json_merge_patch(api):
    location = create(api, body="keep", tags=["a", "b"], votes=1).headers["Location"]
    reply = api.patch(location, data=json.dumps({"votes": 5, "tags": ["c"]}), headers=MERGE)
    assert reply.status == 200
    note = reply.json()
    assert (note["body"], note["tags"], note["votes"]) == ("keep", ["c"], 5)
    removed = api.patch(location, data=json.dumps({"body": None}), headers=MERGE).json()
    assert removed["body"] == "" and removed["votes"] == 5
    body = assert_problem(api.patch(location, data=json.dumps({"title": None}), headers=MERGE), 422)
    assert [e["field"] for e in body["errors"]] == ["title"]
    wrong_type = api.patch(location, data=json.dumps({"votes": 1}), headers=JSON)
    assert_problem(wrong_type, 415)
    assert wrong_type.headers["Accept-Patch"] == "application/merge-patch+json"


def test_merge_patch_follows_rfc_7396_examples():
    cases = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, result in cases:
        assert merge_patch(target, patch) == result, (target, patch)


def test_delete_answers_204_then_404(api):
    location = create(api).headers["Location"]
    gone = api.delete(location)
    assert gone.status == 204 and gone.body == b""
    assert_problem(api.get(location), 404)
    assert_problem(api.delete(location), 404)
    assert_problem(api.put(location, json={"title": "x"}), 404)


def test_head_has_the_headers_of_get_and_no_body(api):
    location = create(api, body="x" * 100).headers["Location"]
    for path in (location, "/api/notes"):
        got, head = api.get(path), api.head(path)
        assert head.status == 200 and head.body == b""
        for name in ("ETag", "Content-Type", "Cache-Control", "Content-Length"):
            assert head.headers.get(name) == got.headers.get(name), name
        assert int(head.headers["Content-Length"]) == len(got.body)


def test_options_lists_the_methods_the_route_takes(api):
    location = create(api).headers["Location"]
    for path, methods in ((location, {"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}),
                          ("/api/notes", {"GET", "HEAD", "POST", "OPTIONS"})):
        reply = api.options(path)
        assert reply.status == 204 and reply.body == b""
        assert {m.strip() for m in reply.headers["Allow"].split(",")} == methods
        refused = api.request("TRACE", path)
        assert_problem(refused, 405)
        assert {m.strip() for m in refused.headers["Allow"].split(",")} == methods
    assert api.options(location).headers["Accept-Patch"] == "application/merge-patch+json"
    assert api.options("/api/notes").headers["Accept-Post"] == "application/json"


# -- conditional requests -------------------------------------------------------------------------
def test_if_none_match_gives_304_without_a_body(api):
    location = create(api).headers["Location"]
    etag = api.get(location).headers["ETag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        reply = api.get(location, headers={"If-None-Match": header})
        assert reply.status == 304 and reply.body == b"", header
        assert reply.headers["ETag"] == etag and "Content-Type" not in reply.headers
    assert api.head(location, headers={"If-None-Match": etag}).status == 304
    assert api.get(location, headers={"If-None-Match": '"other"'}).status == 200
    api.put(location, json={"title": "changed"})
    changed = api.get(location, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.json()["title"] == "changed"


def test_if_modified_since_gives_304_unless_if_none_match_says_otherwise(api):
    location = create(api).headers["Location"]
    stamp = api.get(location).headers["Last-Modified"]
    assert api.get(location, headers={"If-Modified-Since": stamp}).status == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert api.get(location, headers={"If-Modified-Since": old}).status == 200
    both = {"If-Modified-Since": stamp, "If-None-Match": '"other"'}
    assert api.get(location, headers=both).status == 200  # If-None-Match wins (RFC 9110 13.1.3)


def test_the_list_answers_304_too_and_varies_on_accept(api):
    create(api)
    first = api.get("/api/notes")
    assert first.headers["Vary"] == "Accept"
    assert api.get("/api/notes", headers={"If-None-Match": first.headers["ETag"]}).status == 304
    as_csv = api.get("/api/notes", headers={"Accept": "text/csv"})
    assert as_csv.headers["ETag"] != first.headers["ETag"]
    create(api)
    assert api.get("/api/notes", headers={"If-None-Match": first.headers["ETag"]}).status == 200


def test_if_match_that_does_not_match_gives_412_and_writes_nothing(api):
    location = create(api, votes=1).headers["Location"]
    stale = api.get(location).headers["ETag"]
    api.patch(location, data='{"votes": 2}', headers=MERGE)
    current = api.get(location)
    for reply in (
        api.put(location, json={"title": "lost"}, headers={"If-Match": stale}),
        api.patch(location, data='{"votes": 99}', headers={**MERGE, "If-Match": stale}),
        api.delete(location, headers={"If-Match": stale}),
        api.put(location, json={"title": "lost"}, headers={"If-Match": f"W/{current.headers['ETag']}"}),
        api.put(location, json={"title": "lost"}, headers={"If-None-Match": "*"}),
        api.put(location, json={"title": "x"}, headers={"If-Unmodified-Since": LONG_AGO}),
        api.get(location, headers={"If-Match": stale}),
    ):
        body = assert_problem(reply, 412)
        assert body["current_etag"] == current.headers["ETag"]
    assert api.get(location).json() == current.json()
    tag = current.headers["ETag"]  # RFC 9110 13.2.2: If-Match holds, If-None-Match then gives 304
    assert api.get(location, headers={"If-Match": tag, "If-None-Match": tag}).status == 304
    fresh = api.put(location, json={"title": "kept", "votes": 3},
                    headers={"If-Match": current.headers["ETag"]})
    assert fresh.status == 200 and fresh.json()["votes"] == 3
    assert api.patch(location, data='{"votes": 4}', headers={**MERGE, "If-Match": "*"}).status == 200
    assert api.delete(location, headers={"If-Match": api.get(location).headers["ETag"]}).status == 204


async def _increment_until_done(session, url, increments, counts):
    """Read-modify-write `increments` times, retrying on 412; bounded attempts."""
    done = attempts = 0
    while done < increments and attempts < 400:
        attempts += 1
        async with session.get(url) as r:
            etag, votes = r.headers["ETag"], (await r.json())["votes"]
        async with session.patch(url, data=json.dumps({"votes": votes + 1}),
                                 headers={**MERGE, "If-Match": etag}) as r:
            await r.read()
            if r.status == 200:
                done += 1
            else:
                assert r.status == 412, r.status
                counts["conflicts"] += 1
    counts["successes"] += done


def test_many_concurrent_writers_never_lose_an_update(make_lab, tmp_path):
    """20 writers on two servers sharing one SQLite file; each success is one increment, no more, no less."""
    shared = str(tmp_path / "shared.db")
    labs = [make_lab(db=shared), make_lab(db=shared)]
    with RestClient(labs[0]) as api:
        note_id = create(api).json()["id"]
    writers, increments = 20, 5
    counts = {"successes": 0, "conflicts": 0}

    async def run():
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(
                _increment_until_done(session, f"{labs[i % 2].url}/api/notes/{note_id}",
                                      increments, counts)
                for i in range(writers)
            ))

    asyncio.run(run())
    with RestClient(labs[1]) as api:
        final = api.get(f"/api/notes/{note_id}").json()
    assert counts["successes"] == writers * increments
    assert final["votes"] == counts["successes"]
    assert final["version"] == 1 + counts["successes"]
    assert counts["conflicts"] > 0  # the writers really did collide, and 412 resolved it


# -- content negotiation ------------------------------------------------------------------------
def test_json_by_default_csv_when_asked_406_when_unmeetable(api):
    location = create(api, title="a, b", tags=["x", "y"]).headers["Location"]
    create(api, title="second")
    assert api.get("/api/notes").headers["Content-Type"].startswith("application/json")
    for accept, expected in (("*/*", "application/json"), ("text/*", "text/csv"),
                             ("text/csv;q=0.5, application/json;q=0.9", "application/json"),
                             ("application/json;q=0, text/csv", "text/csv")):
        got = api.get("/api/notes", headers={"Accept": accept}).headers["Content-Type"]
        assert got.startswith(expected), accept
    reply = api.get("/api/notes", headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [r["title"] for r in rows] == ["a, b", "second"] and rows[0]["tags"] == "x;y"
    for path, accept in ((location, "text/csv"), ("/api/notes", "image/png"),
                         ("/api/notes", "application/json;q=0")):
        body = assert_problem(api.get(path, headers={"Accept": accept}), 406)
        assert "application/json" in body["available"]
    assert_problem(api.post("/api/notes", json={"title": "x"}, headers={"Accept": "text/csv"}), 406)
    assert api.get("/api/notes").json()["total"] == 2  # the refused POST wrote nothing


# -- errors ----------------------------------------------------------------------------------------
def test_bad_requests_get_the_right_problem(api):
    location = create(api).headers["Location"]
    cases = [
        ("POST", "/api/notes", JSON, "{bad json", 400),
        ("POST", "/api/notes", JSON, "", 400),
        ("POST", "/api/notes", JSON, b"\xff\xfe", 400),
        ("POST", "/api/notes", JSON, '{"title": NaN}', 400),
        ("PUT", location, JSON, "[1, 2", 400),
        ("GET", "/api/notes/12345", {}, None, 404),
        ("GET", "/api/notes/abc", {}, None, 404),
        ("GET", "/api/notes/99999999999999999999999", {}, None, 404),
        ("GET", "/api/nothing-here", {}, None, 404),
        ("DELETE", "/api/notes", {}, None, 405),
        ("POST", location, JSON, "{}", 405),
        ("POST", "/api/notes", {"Content-Type": "text/plain"}, '{"title": "x"}', 415),
        ("POST", "/api/notes", {}, '{"title": "x"}', 415),
        ("POST", "/api/notes", {"Content-Type": "application/json; charset=latin-1"}, "{}", 415),
        ("PUT", location, MERGE, '{"title": "x"}', 415),
        ("POST", "/api/notes", JSON, "[]", 422),
        ("POST", "/api/notes", JSON, '"just a string"', 422),
        ("GET", "/api/notes?page=0", {}, None, 422),
        ("GET", "/api/notes?per_page=1000", {}, None, 422),
        ("GET", "/api/notes?page=two", {}, None, 422),
    ]
    for method, path, headers, data, status in cases:
        reply = api.request(method, path, headers=headers, data=data)
        assert_problem(reply, status)
        if status == 405:
            assert reply.headers["Allow"]


def test_422_names_every_bad_field(api):
    reply = api.post("/api/notes", json={"body": 5, "tags": ["ok", 3, ""], "votes": "1",
                                         "colour": "red"})
    body = assert_problem(reply, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"title", "body", "tags[1]", "tags[2]", "votes", "colour"}
    for name in fields:
        assert name in body["detail"]
    for bad in ({"title": ""}, {"title": "x" * 201}, {"title": 1}, {"title": "x", "votes": 1.5},
                {"title": "x", "votes": True}, {"title": "x", "votes": 2**60},
                {"title": "x", "tags": "a"}, {"title": "x", "tags": ["t"] * 21},
                {"title": "\ud800"}):
        assert_problem(api.post("/api/notes", json=bad), 422)
    assert api.get("/api/notes").json()["total"] == 0


def test_a_body_over_the_limit_gets_413(make_lab):
    lab = make_lab(max_body=1024)
    with RestClient(lab) as api:
        big = json.dumps({"title": "x", "body": "y" * 2000})
        assert_problem(api.post("/api/notes", data=big, headers=JSON), 413)
        assert api.post("/api/notes", json={"title": "small"}).status == 201


def test_any_input_gets_a_4xx_never_a_5xx(api):
    """A seeded storm of malformed requests: every answer is < 500 and errors are problem+json."""
    location = create(api).headers["Location"]
    rng = random.Random(1234)
    paths = ["/api/notes", location, "/api/notes/0", "/api/notes/-1", "/api/notes/%00",
             "/api/notes/1.5", "/api/notes?page=%ff", "/api/notes?per_page=-3&page=1e3",
             "/api/notes/" + "9" * 40, "/api/notes/%F0%9F%98%80"]
    types = ["application/json", "application/merge-patch+json", "text/plain", "",
             "application/json; charset=utf-16", "multipart/form-data", "application/*"]
    values = [None, True, 0, -1, 2**70, 1.5, "", "x", "\u0000", [], {}, [1], {"a": None},
              "x" * 300, ["t"] * 30]
    bodies = [b"", b"{", b"}", b"null", b"[]", b"\xff", b"{\"title\": \"\\ud800\"}",
              b"[" * 5000, b"1e999", b"{\"title\": 1" + b"0" * 5000 + b"}", b"\x00" * 10]
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND"]
    statuses = []
    for _ in range(150):
        method = rng.choice(methods)
        if rng.random() < 0.5:
            doc = {k: rng.choice(values) for k in rng.sample(["title", "body", "tags", "votes",
                                                             "id", "zzz"], rng.randint(0, 4))}
            data = json.dumps(doc).encode()
        else:
            data = rng.choice(bodies)
        headers = {}
        if (ctype := rng.choice(types)):
            headers["Content-Type"] = ctype
        if rng.random() < 0.3:
            headers[rng.choice(["If-Match", "If-None-Match", "Accept", "If-Modified-Since"])] = \
                rng.choice(["*", "garbage", '"x"', "W/", "text/csv;q=abc", "Mon, 99 Foo"])
        reply = api.request(method, rng.choice(paths), headers=headers,
                            data=None if method in ("GET", "HEAD") else data)
        statuses.append(reply.status)
        assert reply.status < 500, (method, headers, data[:80], reply.text)
        if reply.status >= 400 and method != "HEAD":
            assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert sum(400 <= s < 500 for s in statuses) > 75  # mostly refused, and refused politely
    # a method HTTP's parser does not know never reaches the app: aiohttp answers a plain 400
    assert api.request("FOO", "/api/notes").status == 400
    assert api.get("/healthz").status == 200


# -- state ----------------------------------------------------------------------------------------
def test_data_survive_a_server_restart(lab, api):
    location = create(api, body="persist me").headers["Location"]
    etag = api.get(location).headers["ETag"]
    port = lab.port
    lab.restart()
    assert lab.port == port
    with RestClient(lab) as fresh:
        reply = fresh.get(location)
        assert reply.status == 200 and reply.json()["body"] == "persist me"
        assert reply.headers["ETag"] == etag
    assert api.get(location, headers={"If-None-Match": etag}).status == 304


def test_an_app_built_without_a_database_path_uses_a_temporary_one():
    """make_app() alone (no runner, db=None) still serves notes, from a file it removes at cleanup."""
    from aiohttp import web

    from labkit.routes.rest import NOTES
    from labkit.server.app import make_app

    async def run():
        app = make_app()
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/notes"
        async with aiohttp.ClientSession() as session, session.post(url, json={"title": "t"}) as r:
            status = r.status
        path = app[NOTES].path
        await runner.cleanup()
        return status, path

    status, path = asyncio.run(run())
    assert status == 201
    assert not os.path.exists(path)


def test_the_database_file_uses_wal(lab, api):
    create(api)
    with sqlite3.connect(lab.db_path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 1
