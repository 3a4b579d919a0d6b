"""Numbers too long to be data: every JSON entry point refuses them as bad input, never a 500.

Python's int() refuses more than 4,300 digits with a ValueError that json.loads does not turn into a
JSONDecodeError, and a long integer costs quadratic time to convert anyway; a float written with
hundreds of digits is no more precise than one with 17. So `load_json` refuses an integer of more
than MAX_JSON_INT_DIGITS digits, a float written in more than MAX_JSON_FLOAT_CHARS characters, and a
float that overflows to infinity: 400 problem+json over HTTP, an error message over a WebSocket
(which stays open). Real sockets on 127.0.0.1 against a real lab.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from labkit.server.validate import MAX_JSON_FLOAT_CHARS, MAX_JSON_INT_DIGITS, JSONInputError, load_json

HUGE_INT = "1" + "0" * 5000          # 10**5000: past Python's int-digit limit
LONG_INT = "9" * (MAX_JSON_INT_DIGITS + 1)
NEG_LONG_INT = "-" + LONG_INT
LONG_FLOAT = "0." + "3" * 400
OVERFLOW_FLOAT = "1e400"             # float() gives inf: not a JSON number a server can echo
BIG_NUMBERS = [HUGE_INT, LONG_INT, NEG_LONG_INT, LONG_FLOAT, OVERFLOW_FLOAT]
IDS = ["10**5000", "31 digits", "-31 digits", "402-char float", "1e400"]
JSON_CT = {"Content-Type": "application/json"}


def run(coro):
    return asyncio.run(coro)


async def _post(url: str, body: str) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body.encode(), headers=JSON_CT, timeout=aiohttp.ClientTimeout(20)) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.json(content_type=None)


def _assert_refused(status: int, content_type: str, body: dict) -> None:
    assert status == 400, (status, body)
    assert content_type.startswith("application/problem+json")
    assert body["status"] == 400 and "number" in body["detail"], body


@pytest.mark.parametrize("number", BIG_NUMBERS, ids=IDS)
def test_load_json_refuses_numbers_too_long_to_be_data(number):
    with pytest.raises(JSONInputError, match="number"):
        load_json(f'{{"n": {number}}}')


def test_load_json_keeps_ordinary_numbers():
    doc = load_json('{"a": 123456789012345678901234567890, "b": -5, "c": 0.1, "d": 1.5e300, '
                    '"e": -0.0, "f": 1E-7}')
    assert doc == {"a": 123456789012345678901234567890, "b": -5, "c": 0.1, "d": 1.5e300, "e": -0.0,
                   "f": 1e-7}
    assert len(str(doc["a"])) == MAX_JSON_INT_DIGITS
    assert load_json("-" + "9" * MAX_JSON_INT_DIGITS) == -int("9" * MAX_JSON_INT_DIGITS)
    assert load_json("0." + "1" * (MAX_JSON_FLOAT_CHARS - 2)) > 0


@pytest.mark.parametrize("number", BIG_NUMBERS, ids=IDS)
def test_notes_post_refuses_a_huge_number_with_400(lab, number):
    for body in (f'{{"title": "t", "votes": {number}}}', f'{{"title": {number}}}'):
        _assert_refused(*run(_post(lab.url + "/api/notes", body)))
    assert run(_post(lab.url + "/api/notes", '{"title": "still works", "votes": 3}'))[0] == 201


@pytest.mark.parametrize("number", BIG_NUMBERS, ids=IDS)
def test_chat_post_refuses_a_huge_number_with_400(lab, number):
    _assert_refused(*run(_post(lab.url + "/api/chat/messages",
                               f'{{"name": "ann", "text": "hi", "extra": {number}}}')))
    _assert_refused(*run(_post(lab.url + "/api/chat/messages", f'{{"name": "ann", "text": {number}}}')))


@pytest.mark.parametrize("number", BIG_NUMBERS, ids=IDS)
def test_cluster_counter_says_why_it_refuses_a_huge_number(lab, number):
    """The counter's 400 names the reason (it said only what to send, which the fuzz test could
    not tell from a refusal of valid data)."""
    _assert_refused(*run(_post(lab.url + "/api/cluster/counter", f'{{"store": "memory", "n": {number}}}')))
    assert run(_post(lab.url + "/api/cluster/counter", '{"store": "memory", "n": 3}'))[0] == 200


@pytest.mark.parametrize("number", BIG_NUMBERS, ids=IDS)
def test_bank_payment_amount_refuses_a_huge_number_with_400(lab, number):
    status, _, account = run(_post(lab.url + "/api/accounts", '{"owner": "Ann", "opening_balance": 100}'))
    assert status == 201
    _assert_refused(*run(_post(lab.url + "/api/payments",
                               f'{{"account": "{account["id"]}", "payee": "x", "amount": {number}}}')))
    _assert_refused(*run(_post(lab.url + "/api/accounts", f'{{"owner": "B", "opening_balance": {number}}}')))


def test_rest_over_websocket_answers_a_huge_number_with_400_and_stays_open(lab):
    async def go():
        async with aiohttp.ClientSession() as session, session.ws_connect(lab.ws_url + "/ws/rest") as ws:
            answers = []
            for number in BIG_NUMBERS:
                await ws.send_str(f'{{"id": 1, "method": "POST", "path": "/api/notes", '
                                  f'"body": {{"title": "t", "votes": {number}}}}}')
                answers.append(json.loads((await ws.receive(timeout=10)).data))
            await ws.send_str('{"id": 2, "method": "POST", "path": "/api/notes", "body": {"title": "ok"}}')
            return answers, json.loads((await ws.receive(timeout=10)).data)

    answers, after = run(go())
    for answer in answers:
        assert answer["status"] == 400 and "number" in answer["error"]["detail"], answer
    assert after["status"] == 201


def test_chat_websocket_answers_a_huge_number_with_an_error_and_stays_open(lab):
    async def go():
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(lab.ws_url + "/ws/chat?name=zed") as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "welcome"
            errors = []
            for number in BIG_NUMBERS:
                await ws.send_str(f'{{"type": "message", "text": "x", "n": {number}}}')
                errors.append(json.loads((await ws.receive(timeout=10)).data))
            await ws.send_str('{"type": "message", "text": "after"}')
            while (msg := json.loads((await ws.receive(timeout=10)).data))["type"] != "message":
                pass
            return errors, msg

    errors, after = run(go())
    assert all(e["type"] == "error" for e in errors), errors
    assert after["data"]["text"] == "after"
