"""Delivery under faults: the slow consumer's 1008 close reaches it (and it resumes), a sender cut
as a slow consumer learns what was accepted (acks) and resends without doubling anything, a
blocked WebSocket falls back to SSE, a retried POST, and the three delivery semantics."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from labkit import _loop
from labkit.clients.chat import slow_sender_run
from labkit.lessons import reliability
from labkit.streaming.hub import HUB


def publish(lab, n: int, size: int) -> None:
    async def _go():
        for i in range(n):
            lab.app[HUB].publish("feed", {"i": i, "pad": "x" * size})
            if i % 20 == 19:
                await asyncio.sleep(0)  # let the sockets take what they can
    lab.call(_go(), timeout=60)


async def _stalled(url: str, n: int, start: asyncio.Event) -> list[dict]:
    """n subscribers that read nothing until `start`, then read everything until the close."""
    conns = [await connect(url, compression=None, max_queue=1, max_size=2**20,
                           ping_interval=None) for _ in range(n)]
    await start.wait()

    async def drain(conn):
        seqs = []
        try:
            while True:
                seqs.append(json.loads(await asyncio.wait_for(conn.recv(), 10))["seq"])
        except (ConnectionClosed, TimeoutError):
            pass
        await conn.close()
        return {"seqs": seqs, "code": conn.close_code, "reason": conn.close_reason}

    return await asyncio.gather(*(drain(c) for c in conns))


@pytest.mark.timeout(240)
def test_stalled_subscribers_get_the_1008_close_and_can_resume_from_it(lab):
    n = 20  # each stalled socket holds megabytes in kernel buffers: a bounded count
    loop = _loop.client_loop()
    start = asyncio.Event()
    future = asyncio.run_coroutine_threadsafe(_stalled(lab.ws_url + "/ws/feed", n, start), loop)
    deadline = time.monotonic() + 60
    while len(lab.app[HUB].topic("feed").subscribers) < n and time.monotonic() < deadline:
        time.sleep(0.01)  # a bare spin would hold the GIL the lab's thread needs
    publish(lab, 600, 64 * 1024)
    loop.call_soon_threadsafe(start.set)
    results = future.result(120)
    assert [r["code"] for r in results] == [1008] * n  # the close reached every one of them
    for r in results:  # what the reason names is what the client really got
        assert r["seqs"] == list(range(1, len(r["seqs"]) + 1))
        assert r["reason"].startswith(f"too slow: resume with since={r['seqs'][-1] if r['seqs'] else 0}&")
    assert lab.app[HUB].topic("feed").counters("ws").dropped > 0


def test_a_slow_chat_member_is_closed_with_1008_and_resumes_from_its_own_last_seq(make_lab):
    lab = make_lab(chat_rate=1e6, chat_burst=10**6)
    result = reliability.slow_consumer_run(lab, messages=3000)
    assert result["close_code"] == 1008 and result["dropped"] > result["queue_limit"] - 1
    assert result["close_reason"].startswith(f"too slow: resume with since={result['resumed_from']}&")
    if result["resume_status"] == 200:  # it fell less than the room's history behind
        assert result["complete_in_order"]
        assert result["received_before_close"] + result["received_after_resume"] == result["published"]
    else:  # further behind than the history: told exactly how many it missed, never silently
        assert result["resume_status"] == 410 and result["missed"] > 0


def test_a_sender_cut_as_a_slow_consumer_resends_unacked_without_doubling(make_lab):
    lab = make_lab(chat_rate=1e6, chat_burst=10**6)
    blind = slow_sender_run(lab, "blind", messages=4000, ids=False)
    assert blind["close_code"] == 1008 and blind["lost"] > 0  # accepted by its socket, then lost
    acked = slow_sender_run(lab, "acked", messages=4000, ids=True)
    assert acked["close_code"] == 1008 and acked["resent"] > 0
    assert acked["unacked_after_resend"] == 0
    assert acked["published"] == 4000 and acked["lost"] == 0 and acked["duplicates_published"] == 0


def test_chat_acks_ids_and_publishes_a_resent_id_once(lab):
    async def scenario():
        async with connect(lab.ws_url + "/ws/chat?name=ann", compression=None) as conn:
            await conn.recv()  # welcome
            answers = []
            for _ in range(2):
                await conn.send(json.dumps({"type": "message", "text": "hi", "id": "m-1"}))
            await conn.send(json.dumps({"type": "message", "text": "hi", "id": "bad id!"}))
            while len([a for a in answers if a["type"] in ("ack", "error")]) < 3:
                answers.append(json.loads(await asyncio.wait_for(conn.recv(), 5)))
            return answers

    answers = _loop.run(scenario(), 30)
    acks = [a for a in answers if a["type"] == "ack"]
    assert [(a["id"], a["duplicate"]) for a in acks] == [("m-1", False), ("m-1", True)]
    assert acks[0]["seq"] == acks[1]["seq"]
    assert [a["seq"] for a in answers if a["type"] == "message"] == [acks[0]["seq"]]
    assert [a["errors"][0]["field"] for a in answers if a["type"] == "error"] == ["id"]


def test_a_refused_upgrade_falls_back_to_sse(lab):
    result = reliability.fallback_run(lab, seconds=1.0, rate_hz=20)
    assert [(f["from"], f["to"]) for f in result["fallbacks"]] == [("ws", "sse")]
    assert result["settled_on"] == "sse"
    counts = result["staleness"].groupby("client").size()
    assert set(counts) == {20}  # every client, fallback included, got every event


def test_a_retried_post_creates_two_notes_without_a_key_and_one_with_it(lab):
    without = reliability.retry_post_run(lab, with_key=False)
    with_key = reliability.retry_post_run(lab, with_key=True)
    assert without["attempts"][0] == with_key["attempts"][0] == "timed out"
    assert without["notes_created"] == 2
    assert with_key["notes_created"] == 1 and with_key["attempts"][1] == "201 (replayed)"


class _ClassmateWritesMeanwhile:
    """The run's emulated link, and a classmate who posts `notes` notes while the answer is lost
    (just before the link is cleared): on a class server the notes are shared."""

    def __init__(self, net, classmate, notes: int):
        self.net, self.classmate, self.notes = net, classmate, notes

    def url(self) -> str:
        return self.net.url()

    def toxic(self, *args, **kwargs):
        return self.net.toxic(*args, **kwargs)

    def clear(self) -> None:
        for n in range(self.notes):
            assert self.classmate.post("/api/notes", json={"title": f"mine {n}", "body": ""}).status == 201
        self.notes = 0
        self.net.clear()


def test_a_retried_post_counts_only_its_own_notes_on_a_class_server(make_lab):
    """Two students of one class: notes created by a classmate during the run (and the 130 of the
    class before it, more than one page) are not counted as the run's."""
    import labkit as lk
    from labkit.course.classroom import join_url
    from labkit.net.netem import NetemProxy

    server = make_lab(student_tokens=("join-a", "join-b"), instructor_token="teacher")
    me, classmate = (lk.join(join_url("127.0.0.1", server.port, t), personal=False, sync_clock=False)
                     for t in ("join-a", "join-b"))
    other = lk.rest(classmate)
    for n in range(130):
        assert other.post("/api/notes", json={"title": f"class note {n}", "body": ""}).status == 201
    with NetemProxy.for_lab(me).start() as net:
        without = reliability.retry_post_run(me, with_key=False, net=_ClassmateWritesMeanwhile(net, other, 3))
        with_key = reliability.retry_post_run(me, with_key=True, net=_ClassmateWritesMeanwhile(net, other, 3))
    assert without["attempts"][0] == with_key["attempts"][0] == "timed out"
    assert (without["notes_created"], with_key["notes_created"]) == (2, 1)
    assert lk.rest(me).get("/api/notes").json()["total"] == 130 + 3 + 2 + 3 + 1


def test_own_lab_is_the_lesson_lab_or_a_lab_of_the_kernel_with_the_flood_limits(lab, make_lab, capsys):
    """Lesson 07's cells that restart, publish or flood: on the kernel's own lab they use it; on a
    class server, the kernel's own lab (one, whatever the number of calls) with the chat limits the
    floods need, and one printed line per call saying so."""
    import labkit as lk
    from labkit.course.classroom import join_url
    from labkit.server import runner

    assert reliability.own_lab(lab, "why") is lab and capsys.readouterr().out == ""
    if runner.current() is not None:
        pytest.skip("this process already has a kernel lab (lk.start): it must not be replaced")
    server = make_lab(student_tokens=("join-a",), instructor_token="teacher")
    joined = lk.join(join_url("127.0.0.1", server.port, "join-a"), personal=False, sync_clock=False)
    try:
        mine = reliability.own_lab(joined, "it restarts the lab")
        again = reliability.own_lab(joined, "it floods the chat room")
        assert mine is again is runner.current() and mine.running
        assert (mine.config.chat_rate, mine.config.chat_burst) == (100_000, 100_000)
        lines = capsys.readouterr().out.splitlines()
        assert lines == [f"On a class server this part runs on your own lab at {mine.url} ({why})."
                         for why in ("it restarts the lab", "it floods the chat room")]
    finally:
        runner.stop()


def test_delivery_semantics_lose_repeat_or_neither(lab):
    run = reliability.semantics_run(lab, events=200, rate_hz=100.0)
    frame = run.set_index("mode")
    # the SEQs behind the counts (exercise 07.3 counts the losses from them)
    published = set(range(run.attrs["first_seq"], run.attrs["last_seq"] + 1))
    assert len(published) == 200
    for mode, seqs in run.attrs["delivered"].items():
        assert set(seqs) <= published
        assert len(published - set(seqs)) == frame.loc[mode, "lost"]
        assert len(seqs) - len(set(seqs)) == frame.loc[mode, "duplicates_delivered"]
    assert frame.loc["at_most_once", "lost"] > 0
    assert frame.loc["at_most_once", "duplicates_delivered"] == 0
    assert frame.loc["at_least_once", "lost"] == 0
    assert frame.loc["at_least_once", "duplicates_delivered"] > 0
    assert frame.loc["effectively_once", "lost"] == 0
    assert frame.loc["effectively_once", "duplicates_delivered"] == 0
