"""HEAD obeys exactly GET's role rule (aiohttp answers HEAD with the GET handler, so a HEAD that
skipped GET's rule would run an instructor-only handler for a student). Real sockets on 127.0.0.1
against a real classroom lab."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from labkit.routes.core import route_index
from labkit.server.auth import INSTRUCTOR_ONLY

STUDENT, INSTRUCTOR = "student-token-1", "instructor-token"
HEADERS = {None: {}, STUDENT: {"Authorization": f"Bearer {STUDENT}"},
           INSTRUCTOR: {"Authorization": f"Bearer {INSTRUCTOR}"}}
GET_RULES = sorted(path for method, path in INSTRUCTOR_ONLY if method == "GET")


@pytest.fixture
def classroom(make_lab):
    return make_lab(student_tokens=(STUDENT,), instructor_token=INSTRUCTOR)


async def _status(session, method: str, url: str, token: str | None) -> int:
    async with session.request(method, url, headers=HEADERS[token], allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(5)) as resp:
        return resp.status


def test_there_is_a_get_route_with_a_role_rule():
    assert "/api/classroom" in GET_RULES


@pytest.mark.parametrize("path", GET_RULES)
def test_head_of_an_instructor_only_get_route_is_the_instructors(classroom, path):
    async def go():
        async with aiohttp.ClientSession() as session:
            return {(method, token): await _status(session, method, classroom.url + path, token)
                    for method in ("GET", "HEAD") for token in (None, STUDENT, INSTRUCTOR)}

    got = asyncio.run(go())
    assert got[("GET", STUDENT)] == got[("HEAD", STUDENT)] == 403, got
    assert got[("GET", None)] == got[("HEAD", None)] == 401, got
    assert got[("GET", INSTRUCTOR)] == got[("HEAD", INSTRUCTOR)] == 200, got


def test_head_is_refused_exactly_when_get_is_on_every_route(classroom):
    """A table over every GET route of the app: HEAD is refused (401/403) for a student and for no
    token exactly when GET is, with the same status."""
    paths = [entry["path"] for entry in route_index(classroom.app) if "GET" in entry["methods"]]
    assert len(paths) > 10

    async def go():
        rows = []
        async with aiohttp.ClientSession() as session:
            for path in paths:
                concrete = path.replace("{name}", "nobody").replace("{id}", "999999")
                concrete = concrete.split("{")[0].rstrip("/") or "/"
                for token in (None, STUDENT):
                    get = await _status(session, "GET", classroom.url + concrete, token)
                    head = await _status(session, "HEAD", classroom.url + concrete, token)
                    rows.append((path, token, get, head))
        return rows

    for path, token, get, head in asyncio.run(go()):
        if get in (401, 403) or head in (401, 403):
            assert get == head, (path, token, get, head)
