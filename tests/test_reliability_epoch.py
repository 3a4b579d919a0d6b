"""Epochs: resuming across a lab restart gets an explicit reset (409 before streaming, a reset
event on a 200 SSE stream), never events of another history, on all three transports."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from labkit.clients import feed
from labkit.clients.rest import RestClient
from labkit.lessons import reliability


def publish(lab, n: int) -> dict:
    return reliability._publish(lab, n, 200.0)


def run(coro):
    return asyncio.run(coro)


def test_every_poll_answer_names_the_epoch_and_a_restart_changes_it(lab):
    state = publish(lab, 3)
    with RestClient(lab) as api:
        r = api.get("/api/feed?since=1")
        assert r.headers["Feed-Epoch"] == state["epoch"]
        assert {e["epoch"] for e in r.json()} == {state["epoch"]}
        assert api.get(f"/api/feed?since=1&epoch={state['epoch']}").status == 200
    lab.restart()
    with RestClient(lab) as api:
        assert api.get("/api/feed").headers["Feed-Epoch"] != state["epoch"]


def test_a_poll_from_another_epoch_gets_409_with_the_current_one(lab):
    old = publish(lab, 5)
    lab.restart()
    new = publish(lab, 7)  # past the old SEQ: without the epoch it would silently go on
    with RestClient(lab) as api:
        silent = api.get("/api/feed?since=5")
        assert [e["seq"] for e in silent.json()] == [6, 7]  # what epochs are for
        r = api.get(f"/api/feed?since=5&epoch={old['epoch']}&wait=1")
    assert r.status == 409 and r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("epoch-changed")
    assert (body["epoch"], body["last_seq"]) == (new["epoch"], 7)


@pytest.mark.parametrize("epoch", ["", "a b", "x" * 65, "ab/cd"])
def test_a_malformed_epoch_is_refused_with_422(lab, epoch):
    with RestClient(lab) as api:
        r = api.get("/api/feed?" + urlencode({"since": 0, "epoch": epoch}))
    assert r.status == 422 and r.json()["errors"][0]["field"] == "epoch"


def test_a_websocket_from_another_epoch_is_refused_409_before_the_upgrade(lab):
    old = publish(lab, 3)
    lab.restart()
    publish(lab, 4)
    async def open_it():
        async with connect(f"{lab.ws_url}/ws/feed?since=3&epoch={old['epoch']}"):
            pass

    with pytest.raises(InvalidStatus) as info:
        run(open_it())
    assert info.value.response.status_code == 409
    assert json.loads(info.value.response.body)["last_seq"] == 4


async def _sse(url: str, headers: dict, n_blocks: int) -> tuple[int, list[dict]]:
    """Status and the first `n_blocks` blocks of an SSE stream (fields per block)."""
    blocks, block = [], {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        if resp.status != 200:
            return resp.status, []
        async for raw in resp.content:
            line = raw.decode().rstrip("\r\n")
            if line:
                name, _, value = line.partition(":")
                block[name] = value.lstrip(" ")
            elif block:
                blocks.append(block)
                block = {}
                if len(blocks) == n_blocks:
                    break
    return 200, blocks


def test_sse_ids_carry_the_epoch_and_another_epoch_gets_a_reset_event_on_a_200(lab):
    old = publish(lab, 3)
    status, blocks = run(_sse(lab.url + "/sse/feed", {"Last-Event-ID": f"{old['epoch']}:1"}, 2))
    assert status == 200 and [b["id"] for b in blocks] == [f"{old['epoch']}:2", f"{old['epoch']}:3"]
    lab.restart()
    new = publish(lab, 2)
    status, blocks = run(_sse(lab.url + "/sse/feed", {"Last-Event-ID": f"{old['epoch']}:3"}, 1))
    assert status == 200  # an EventSource would give up for good on a 4xx
    assert blocks[0]["event"] == "reset" and blocks[0]["id"] == f"{new['epoch']}:2"
    assert json.loads(blocks[0]["data"]) == {"type": "reset", "epoch": new["epoch"], "last_seq": 2}


def test_sse_query_from_another_epoch_is_refused_with_409(lab):
    old = publish(lab, 1)
    lab.restart()
    status, _ = run(_sse(f"{lab.url}/sse/feed?since=1&epoch={old['epoch']}", {}, 1))
    assert status == 409


def test_a_fresh_sse_stream_starts_with_an_id_only_block(lab):
    state = publish(lab, 2)
    status, blocks = run(_sse(lab.url + "/sse/feed", {}, 1))
    assert status == 200 and blocks[0] == {"id": f"{state['epoch']}:2", "retry": "1000"}


@pytest.mark.parametrize("transport", ["ws", "sse", "long_poll"])
def test_resuming_across_a_restart_resyncs_and_never_mixes_histories(lab, transport):
    result = reliability.epoch_run(lab, transport, events=15)
    assert result["resyncs"] == 1 and len(result["epochs"]) == 2
    assert result["old_epoch_ok"] and result["new_epoch_ok"]
    assert result["duplicates_delivered"] == 0 and result["gaps"] == 0


def test_the_source_says_whether_it_keeps_its_rate(lab):
    state = feed.set_source(lab, 50, ticks=5, seed=1)
    assert {"achieved_rate_hz", "behind_s", "schedule_resets", "keeping_up", "epoch"} <= set(state)
    done = publish(lab, 10)
    assert done["published_this_run"] == 10 and done["schedule_resets"] == 0
