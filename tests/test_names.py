"""Chat names: RFC 8265 usernames (PRECIS, `precis-i18n`), unique by UTS #39 skeleton, reserved words
refused to students, bound to one identity each (held while offline, across REST and WebSocket),
and the room's rate counted per identity. Rules in labkit/server/validate.py, binding in
labkit/server/access.py; the room over real sockets against a class server."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from labkit.server.validate import RESERVED_WORDS, chat_name, name_keys, reserved_word

A, B, T = "names-student-a", "names-student-b", "names-instructor"
BEARER = {t: {"Authorization": f"Bearer {t}"} for t in (A, B, T)}

DOTTED = ["ali\u0307ce", "al\u0131\u0307ce"]
"""i + COMBINING DOT ABOVE, and dotless ı + COMBINING DOT ABOVE: both are drawn as `alice`."""


@pytest.mark.parametrize("name", DOTTED + ["Alice", "ALICE", "\u0430lice", "ａｌｉｃｅ", "al\u0131ce"],
                         ids=lambda n: n.encode("unicode_escape").decode())
def test_look_alikes_of_alice_clash_with_alice(name):
    accepted, errors = chat_name(name)
    assert accepted is not None, errors
    assert name_keys(accepted) & name_keys("alice")


@pytest.mark.parametrize("name", ["alicia", "malice", "bob", "Zoë", "李雷", "علي"])
def test_other_names_do_not(name):
    assert not name_keys(chat_name(name)[0]) & name_keys("alice")


@pytest.mark.parametrize("name", ["a\u2665b", "al ice\u00a0\u2603", "x\u0301\u200d"],
                         ids=lambda n: n.encode("unicode_escape").decode())
def test_what_precis_refuses_is_refused(name):
    """Symbols (♥, ☃) and joiners are no username characters (RFC 8265 IdentifierClass)."""
    accepted, errors = chat_name(name)
    assert accepted is None and errors and errors[0]["field"] == "name"


def test_names_are_precis_usernames_part_by_part():
    assert chat_name("Ada  Lovelace")[0] == "Ada Lovelace"  # spaces between parts: one
    assert chat_name("ｂｏｂ")[0] == "bob"  # width mapping


@pytest.mark.parametrize("name", ["Instructor", "Teacher (instructor)", "teacher", "ADMIN",
                                  "\u0430dmin", "adm1n", "ＳＹＳＴＥＭ", "The Bank", "support agent",
                                  "sys tem", "T\u0435acher"],
                         ids=lambda n: n.encode("unicode_escape").decode())
def test_reserved_words_in_any_case_or_script_or_inside(name):
    accepted = chat_name(name)[0]
    assert accepted is not None
    assert reserved_word(accepted) in RESERVED_WORDS


@pytest.mark.parametrize("name", ["alice", "bob", "Zoë", "Ada Lovelace"])
def test_ordinary_names_are_not_reserved(name):
    assert reserved_word(name) is None


# -- the room -------------------------------------------------------------------------------------
@pytest.fixture
def klass(make_lab):
    return make_lab(student_tokens=(A, B), instructor_token=T, chat_burst=5, chat_rate=0.5)


async def _post(session, lab, token, name, text="hi") -> int:
    async with session.post(lab.url + "/api/chat/messages", headers=BEARER[token],
                            json={"name": name, "text": text}) as resp:
        return resp.status


async def _join(session, lab, token, name):
    try:
        ws = await session.ws_connect(f"{lab.ws_url}/ws/chat", params={"name": name, "token": token})
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status, None
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
    return 101, ws


def test_a_student_cannot_post_as_the_instructor_or_as_someone_offline(klass):
    async def go():
        async with aiohttp.ClientSession() as session:
            out = {"A alice": await _post(session, klass, A, "alice")}  # A now holds "alice"
            for name in ("Instructor", "Teacher (instructor)", "alice", "Alice", *DOTTED):
                out[f"B {name}"] = await _post(session, klass, B, name)
            out["B ws alice (offline)"] = (await _join(session, klass, B, "alice"))[0]
            out["T Instructor"] = await _post(session, klass, T, "Instructor")
            out["B bob"] = await _post(session, klass, B, "bob")
            out["B second name"] = await _post(session, klass, B, "robert")
            out["A ws alice"], ws = await _join(session, klass, A, "alice")
            out["B dotted while alice is in"] = [(await _join(session, klass, B, n))[0] for n in DOTTED]
            await ws.close()
            return out

    out = asyncio.run(go())
    assert out["A alice"] == 201
    assert out["B Instructor"] == out["B Teacher (instructor)"] == 422
    assert out["B alice"] == out["B Alice"] == 409
    assert [out[f"B {n}"] for n in DOTTED] == [409, 409]
    assert out["B ws alice (offline)"] == 409, "a name is held while its owner is offline"
    assert out["T Instructor"] == 201, "the instructor may use a reserved word"
    assert out["B bob"] == 201 and out["B second name"] == 409, "one name per person"
    assert out["A ws alice"] == 101
    assert out["B dotted while alice is in"] == [409, 409]


def test_names_are_held_across_a_restart(make_lab, tmp_path):
    db = str(tmp_path / "names.db")
    first = make_lab(db=db, student_tokens=(A, B), instructor_token=T)

    async def post(lab, token, name):
        async with aiohttp.ClientSession() as session:
            return await _post(session, lab, token, name)

    assert asyncio.run(post(first, A, "alice")) == 201
    first.stop()
    again = make_lab(db=db, student_tokens=(A, B), instructor_token=T)
    assert asyncio.run(post(again, B, "alice")) == 409
    assert asyncio.run(post(again, A, "alice")) == 201


def test_the_rate_is_per_identity_not_per_name(klass):
    """100 messages under 100 names from one token: the first name is bound, the rest refused; and
    the one name's messages meet the rate after the burst."""
    async def go():
        async with aiohttp.ClientSession() as session:
            many = [await _post(session, klass, A, f"user{i}") for i in range(100)]
            one = [await _post(session, klass, B, "bea", f"m{i}") for i in range(8)]
            return many, one

    many, one = asyncio.run(go())
    assert many[0] == 201 and set(many[1:]) == {409}
    assert one[:5] == [201] * 5 and 429 in one[5:], one


def test_the_websocket_rate_is_the_identitys_too(klass):
    """One identity's REST posts and WebSocket messages draw from one bucket."""
    async def go():
        async with aiohttp.ClientSession() as session:
            posted = [await _post(session, klass, A, "ann", f"r{i}") for i in range(5)]
            status, ws = await _join(session, klass, A, "ann")
            await ws.send_str(json.dumps({"type": "message", "text": "one more"}))
            while True:
                msg = json.loads((await ws.receive(timeout=5)).data)
                if msg["type"] == "error":
                    break
            await ws.close()
            return posted, status, msg

    posted, status, msg = asyncio.run(go())
    assert posted == [201] * 5 and status == 101
    assert "too fast" in msg["detail"]


def test_the_stored_forbidden_class_is_what_unicodedata_says():
    import unicodedata

    from labkit.server import validate

    if unicodedata.unidata_version != validate.NAME_FORBIDDEN_UNICODE:
        assert validate._name_forbidden_class() == validate.NAME_FORBIDDEN  # computed, not stored
    else:
        assert validate._name_forbidden_class() == validate.NAME_FORBIDDEN_AS_COMPUTED
