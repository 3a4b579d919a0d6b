"""/ws/rest obeys the same ownership rule as REST (auth.require_owner): in classroom mode a student
may change or delete only the notes they created, whichever way they created or change them.
Real sockets on 127.0.0.1 against a real classroom lab."""

from __future__ import annotations

import asyncio
import itertools
import json
from urllib.parse import urlsplit

import aiohttp
import pytest

STUDENT_A, STUDENT_B, INSTRUCTOR = "student-token-a", "student-token-b", "instructor-token"
_ids = itertools.count(1)


@pytest.fixture
def classroom(make_lab):
    return make_lab(student_tokens=(STUDENT_A, STUDENT_B), instructor_token=INSTRUCTOR)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def _rest(session, method: str, url: str, token: str, body=None) -> tuple[int, dict | None]:
    async with session.request(method, url, json=body, headers=_bearer(token),
                               timeout=aiohttp.ClientTimeout(10)) as resp:
        loc = resp.headers.get("Location")
        return resp.status, ({"location": urlsplit(loc).path} if loc else None)


async def _ws_call(ws, method: str, path: str, body=None) -> dict:
    request_id = next(_ids)
    await ws.send_str(json.dumps({"id": request_id, "method": method, "path": path, "body": body}))
    while True:
        answer = json.loads((await ws.receive(timeout=10)).data)
        if answer.get("id") == request_id:
            return answer


def test_student_b_cannot_change_or_delete_a_note_of_a_over_ws_rest(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            status, created = await _rest(session, "POST", classroom.url + "/api/notes", STUDENT_A,
                                          {"title": "A's"})
            assert status == 201
            note = created["location"]
            async with session.ws_connect(f"{classroom.ws_url}/ws/rest?token={STUDENT_B}") as b_ws:
                put = await _ws_call(b_ws, "PUT", note, {"title": "hijacked"})
                patch = await _ws_call(b_ws, "PATCH", note, {"title": "hijacked"})
                delete = await _ws_call(b_ws, "DELETE", note)
                read = await _ws_call(b_ws, "GET", note)
            rest_put = (await _rest(session, "PUT", classroom.url + note, STUDENT_B, {"title": "x"}))[0]
            return put, patch, delete, read, rest_put

    put, patch, delete, read, rest_put = asyncio.run(go())
    assert rest_put == 403
    assert (put["status"], patch["status"], delete["status"]) == (403, 403, 403), (put, patch, delete)
    assert put["error"]["detail"] and "body" not in put
    assert read["status"] == 200 and read["body"]["title"] == "A's"


def test_notes_made_over_ws_rest_belong_to_their_creator_both_ways(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{classroom.ws_url}/ws/rest?token={STUDENT_A}") as a_ws:
                created = await _ws_call(a_ws, "POST", "/api/notes", {"title": "made over ws"})
                note = f"/api/notes/{created['body']['id']}"
                own_ws_patch = await _ws_call(a_ws, "PATCH", note, {"votes": 1})
                async with session.ws_connect(f"{classroom.ws_url}/ws/rest?token={STUDENT_B}") as b_ws:
                    b_ws_put = await _ws_call(b_ws, "PUT", note, {"title": "mine now"})
                b_rest_delete = (await _rest(session, "DELETE", classroom.url + note, STUDENT_B))[0]
                own_rest_put = (await _rest(session, "PUT", classroom.url + note, STUDENT_A,
                                            {"title": "still A's"}))[0]
                own_ws_delete = await _ws_call(a_ws, "DELETE", note)
            return created, own_ws_patch, b_ws_put, b_rest_delete, own_rest_put, own_ws_delete

    created, own_ws_patch, b_ws_put, b_rest_delete, own_rest_put, own_ws_delete = asyncio.run(go())
    assert created["status"] == 201
    assert own_ws_patch["status"] == 200
    assert b_ws_put["status"] == 403 and b_rest_delete == 403
    assert own_rest_put == 200 and own_ws_delete["status"] == 204


def test_the_instructor_may_change_anyones_note_over_ws_rest(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            note = (await _rest(session, "POST", classroom.url + "/api/notes", STUDENT_A,
                                {"title": "A's"}))[1]["location"]
            async with session.ws_connect(f"{classroom.ws_url}/ws/rest?token={INSTRUCTOR}") as ws:
                return (await _ws_call(ws, "PATCH", note, {"votes": 2}),
                        await _ws_call(ws, "DELETE", note))

    patch, delete = asyncio.run(go())
    assert (patch["status"], delete["status"]) == (200, 204)


def test_without_classroom_mode_ws_rest_changes_any_note(lab):
    async def go():
        async with aiohttp.ClientSession() as session, session.ws_connect(lab.ws_url + "/ws/rest") as ws:
            async with session.post(lab.url + "/api/notes", json={"title": "t"}) as resp:
                note = urlsplit(resp.headers["Location"]).path
            return await _ws_call(ws, "PUT", note, {"title": "u"}), await _ws_call(ws, "DELETE", note)

    put, delete = asyncio.run(go())
    assert (put["status"], delete["status"]) == (200, 204)


def test_ws_rest_has_the_same_size_bounds_as_rest(make_lab):
    lab = make_lab(max_note_bytes=2000, max_store_bytes=3000)

    async def go():
        async with aiohttp.ClientSession() as session, session.ws_connect(lab.ws_url + "/ws/rest") as ws:
            too_big = await _ws_call(ws, "POST", "/api/notes", {"title": "t", "body": "x" * 2500})
            first = await _ws_call(ws, "POST", "/api/notes", {"title": "t", "body": "x" * 1700})
            full = await _ws_call(ws, "POST", "/api/notes", {"title": "t", "body": "y" * 1700})
            grow = await _ws_call(ws, "PATCH", f"/api/notes/{first['body']['id']}", {"body": "z" * 2500})
            alive = await _ws_call(ws, "GET", "/api/notes")
            return too_big, full, grow, alive

    too_big, full, grow, alive = asyncio.run(go())
    assert (too_big["status"], full["status"], grow["status"], alive["status"]) == (413, 507, 413, 200)
