"""The game and whiteboard families over real sockets: server order, agreeing views, bad input,
and the Origin/Host rules for pages that come through the student's own Jupyter server."""

from __future__ import annotations

import json

import aiohttp
import pytest

from labkit import _loop
from labkit.clients.game import game_delays, optimistic_race, whiteboard_together
from labkit.clients.rest import RestClient
from labkit.server.jupyter_proxy import (
    is_jupyter_page,
    jupyter_base_url,
    normal_origin,
    origins_from_environment,
)
from labkit.server.websocket import origin_allowed


def _create(lab, kind: str, name: str) -> None:
    """Games and rooms exist once created: PUT /api/games/{id} or /api/collab/{room}."""
    with RestClient(lab) as api:
        assert api.put(f"/api/{kind}/{name}").status in (200, 201)


async def _join(session, url, **query):
    ws = await session.ws_connect(f"{url}/ws/game", params=query)
    welcome = json.loads((await ws.receive()).data)
    return ws, welcome


async def _next(ws, kind, timeout=5.0):
    while True:
        msg = json.loads((await ws.receive(timeout=timeout)).data)
        if msg["type"] == kind:
            return msg


async def _after_moves(ws, moves, timeout=5.0):
    """The first state this socket receives that holds `moves` moves."""
    while True:
        msg = await _next(ws, "state", timeout)
        if msg["state"]["moves"] >= moves:
            return msg["state"]


def test_two_players_and_a_spectator_see_the_same_game_to_the_right_result(lab):
    _create(lab, "games", "full")

    async def run():
        async with aiohttp.ClientSession() as s:
            x, wx = await _join(s, lab.ws_url, game="full", seat="X", name="ann")
            o, wo = await _join(s, lab.ws_url, game="full", name="bob")
            spectator, ws_ = await _join(s, lab.ws_url, game="full", role="watch")
            assert (wx["seat"], wo["seat"], ws_["seat"]) == ("X", "O", None)
            for n, (column, player) in enumerate(zip([0, 1, 0, 1, 0, 1, 0], [x, o] * 4, strict=False)):
                await player.send_json({"type": "move", "column": column})
                final = [await _after_moves(ws, n + 1) for ws in (x, o, spectator)]
            await spectator.send_json({"type": "move", "column": 3})
            refused = await _next(spectator, "error")
            for ws in (x, o, spectator):
                await ws.close()
            return final, refused

    final, refused = _loop.run(run())
    assert final[0]["board"] == final[1]["board"] == final[2]["board"]
    assert final[0]["winner"] == "X" and final[0]["moves"] == 7 and final[0]["turn"] is None
    assert [final[0]["board"][r][0] for r in range(2, 6)] == ["X"] * 4
    assert "spectators" in refused["detail"]
    with RestClient(lab) as api:
        assert api.get("/api/games/full").json()["board"] == final[0]["board"]


def test_simultaneous_moves_are_ordered_by_the_server_and_every_view_agrees(lab):
    frame = optimistic_race(lab, trials=3)
    assert len(frame) == 6
    assert set(frame[frame.seat == "X"].outcome) == {"as shown"}
    assert set(frame[frame.seat == "O"].outcome) <= {"refused: rolled back", "landed elsewhere"}
    assert frame.boards_agree.all()


def test_bad_moves_get_an_error_and_the_game_goes_on(lab):
    _create(lab, "games", "bad")

    async def run():
        async with aiohttp.ClientSession() as s:
            x, _ = await _join(s, lab.ws_url, game="bad", seat="X")
            o, _ = await _join(s, lab.ws_url, game="bad", seat="O")
            details = []
            for raw in ("not json", json.dumps([1]), json.dumps({"type": "move", "column": 9}),
                        json.dumps({"type": "move", "column": "3"}), json.dumps({"type": "jump"})):
                await x.send_str(raw)
                details.append((await _next(x, "error"))["detail"])
            await o.send_json({"type": "move", "column": 2, "id": 7})
            early = await _next(o, "error")
            for _ in range(3):  # fill column 5: X O X O X O (no four)
                await x.send_json({"type": "move", "column": 5})
                await _after_moves(x, 2 * _ + 1)
                await _after_moves(o, 2 * _ + 1)
                await o.send_json({"type": "move", "column": 5})
                await _after_moves(x, 2 * _ + 2)
                await _after_moves(o, 2 * _ + 2)
            await x.send_json({"type": "move", "column": 5})
            full = await _next(x, "error")
            await x.send_bytes(b"\x00")
            binary = await _next(x, "error")
            await x.send_json({"type": "move", "column": 0})
            still = await _next(x, "state")
            for ws in (x, o):
                await ws.close()
            return details, early, full, binary, still

    details, early, full, binary, still = _loop.run(run())
    assert all("JSON" in d or "column" in d for d in details), details
    assert early["id"] == 7 and "not your turn" in early["detail"]
    assert "full" in full["detail"]
    assert "binary" in binary["detail"]
    assert still["move"]["column"] == 0


def test_rest_players_poll_the_same_game_and_bad_requests_are_problems(lab):
    with RestClient(lab) as api:
        assert api.put("/api/games/r1").status == 201
        x = api.post("/api/games/r1/seats", json={"name": "ann"}).json()
        o = api.post("/api/games/r1/seats", json={"name": "bob"}).json()
        third = api.post("/api/games/r1/seats", json={"name": "cy"})
        assert (x["seat"], o["seat"], third.status) == ("X", "O", 409)
        assert third.headers["Content-Type"].startswith("application/problem+json")
        moved = api.post("/api/games/r1/moves", json={"seat": "X", "token": x["token"], "column": 3})
        assert moved.status == 201 and moved.json()["board"][5][3] == "X"
        etag = moved.headers["ETag"]
        assert api.get("/api/games/r1", headers={"If-None-Match": etag}).status == 304
        cases = {
            "wrong token": ({"seat": "O", "token": x["token"], "column": 1}, 403),
            "not your turn": ({"seat": "X", "token": x["token"], "column": 1}, 409),
            "column out of range": ({"seat": "O", "token": o["token"], "column": 7}, 422),
            "bad seat": ({"seat": "Z", "token": o["token"], "column": 1}, 422),
        }
        for body, status in cases.values():
            answer = api.post("/api/games/r1/moves", json=body)
            assert answer.status == status, (body, answer.text)
            assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert api.post("/api/games/r1/moves", data=b"{", headers={"Content-Type": "application/json"}
                        ).status == 400
        assert api.get("/api/games/no%20spaces").status == 400
        assert api.get("/api/games/r1").json()["moves"] == 1


@pytest.mark.parametrize("transport,poll_ms", [("websocket", None), ("poll", 40)])
def test_game_delays_measure_every_move_for_both_transports(lab, transport, poll_ms):
    frame = game_delays(lab, transport, poll_ms=poll_ms, moves=6)
    assert list(frame.move) == [1, 2, 3, 4, 5, 6]
    assert (frame.delay_ms > 0).all() and (frame.bytes_per_s > 0).all()
    if transport == "poll":
        assert frame.requests.iloc[0] > 6  # a seat, three moves, and polls while waiting
    else:
        assert frame.requests.iloc[0] == 1  # one upgrade per player (6 moves cannot end a game)


def test_whiteboard_participants_replay_one_order_and_bad_messages_are_refused(lab):
    result = whiteboard_together(lab, participants=3, strokes=6)
    assert result["boards_identical"] and sorted(result["order_seen"]) == list(range(1, 19))
    _create(lab, "collab", "r")

    async def bad():
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"{lab.ws_url}/ws/collab", params={"room": "r", "name": "z"})
            await ws.receive()
            out = []
            for msg in ({"type": "cursor", "x": 2, "y": 0}, {"type": "stroke", "points": []},
                        {"type": "stroke", "points": [[0, 0]], "color": "red"}, {"type": "wave"}):
                await ws.send_json(msg)
                out.append(json.loads((await ws.receive(timeout=5)).data)["type"])
            await ws.send_json({"type": "stroke", "points": [[0.5, 0.5]]})
            out.append(json.loads((await ws.receive(timeout=5)).data)["type"])
            await ws.close()
            return out

    assert _loop.run(bad()) == ["error"] * 4 + ["stroke"]
    with RestClient(lab) as api:
        assert api.get("/api/collab/r").json()["last_seq"] == 1
        assert api.get("/api/collab/r?since=x").status == 400


def test_two_pages_asking_for_one_name_get_two_names_and_cursors_say_whose(lab):
    """A second tab of the same notebook asks for the same name: each cursor still says whose."""
    _create(lab, "collab", "tabs")

    async def two_tabs():
        async with aiohttp.ClientSession() as s:
            url = f"{lab.ws_url}/ws/collab"
            first = await s.ws_connect(url, params={"room": "tabs", "name": "you"})
            one = json.loads((await first.receive()).data)
            second = await s.ws_connect(url, params={"room": "tabs", "name": "you"})
            two = json.loads((await second.receive()).data)
            assert (await _next(first, "join"))["name"] == two["you"]
            await second.send_json({"type": "cursor", "x": 0.25, "y": 0.5})
            cursor = await _next(first, "cursor")
            long_name = "n" * 32
            third = await s.ws_connect(url, params={"room": "tabs", "name": long_name})
            fourth = await s.ws_connect(url, params={"room": "tabs", "name": long_name})
            three = json.loads((await third.receive()).data)
            four = json.loads((await fourth.receive()).data)
            for ws in (first, second, third, fourth):
                await ws.close()
            return one, two, cursor, three, four

    one, two, cursor, three, four = _loop.run(two_tabs())
    assert (one["you"], two["you"]) == ("you", "you 2")
    assert two["participants"] == ["you", "you 2"]
    assert (cursor["name"], cursor["x"], cursor["y"]) == ("you 2", 0.25, 0.5)
    assert three["you"] == "n" * 32 and four["you"] == "n" * 30 + " 2"  # still within 32 characters


# -- pages through the student's own Jupyter ------------------------------------------------------
def test_origin_rule_accepts_the_jupyter_page_it_was_told_about_and_nothing_else():
    hub = {"https://hub.example.org"}
    assert origin_allowed("https://hub.example.org", host="hub.example.org", jupyter_origins=hub)
    assert origin_allowed("https://HUB.example.org:443", host="hub.example.org:443", jupyter_origins=hub)
    # a foreign page shows its own origin, whatever Host it addresses
    assert not origin_allowed("https://evil.example", host="hub.example.org", jupyter_origins=hub)
    # the hub's origin, but the request did not come through the hub (sent straight to the lab)
    assert not origin_allowed("https://hub.example.org", host="127.0.0.1:8888", jupyter_origins=hub)
    # DNS rebinding: the page and the Host are the attacker's name: same-origin, but not trusted
    assert not origin_allowed("http://rebind.example:8888", host="rebind.example:8888", jupyter_origins=hub)
    assert not origin_allowed("http://hub.example.org", host="hub.example.org", jupyter_origins=hub)
    assert not is_jupyter_page(hub, "null", "hub.example.org")


def test_jupyter_origins_and_base_url_come_from_the_environment():
    env = {"JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/", "JUPYTERHUB_HOST": "",
           "JUPYTERHUB_SERVICE_PREFIX": "/user/student/"}
    assert origins_from_environment(env) == {"https://hub.example.org"}
    assert jupyter_base_url(env) == "https://hub.example.org/user/student/"
    assert jupyter_base_url({"JUPYTERHUB_SERVICE_PREFIX": "user/ann"}) == "/user/ann/"
    assert normal_origin("javascript:alert(1)") is None and normal_origin("http://[::1]:80/") == "http://[::1]"


def test_a_hub_page_is_refused_until_its_origin_is_learnt_then_accepted(lab):
    async def attempt(origin, host):
        async with aiohttp.ClientSession() as s:
            try:
                ws = await s.ws_connect(f"{lab.ws_url}/ws/echo", headers={"Origin": origin, "Host": host})
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            await ws.close()
            return 101

    page, host = "https://hub.example.org", "hub.example.org"
    before = _loop.run(attempt(page, host))
    assert lab.trust_page_origin(page + "/user/student/lab")
    after = _loop.run(attempt(page, host))
    foreign = _loop.run(attempt("https://evil.example", host))
    assert 400 <= before < 500 and after == 101 and foreign == 403  # before: Host or Origin rule
    assert not lab.trust_page_origin("not a url")


def test_browser_url_falls_back_to_the_direct_url_outside_jupyter(lab, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", "1")  # no Jupyter server has that pid
    assert lab.browser_url == lab.url + "/"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/student/")
    assert lab.browser_url == f"/user/student/proxy/{lab.port}/"


def test_link_name_and_the_lessons_sentences_come_from_the_table():
    import pandas as pd

    from labkit.clients.game import closing_points, delay_findings, link_name

    assert link_name("http://127.0.0.1:8765") == link_name("http://localhost:1") == "loopback"
    assert link_name("http://student:t@192.168.1.20:8765") == "network"
    rows = []
    for label, base in (("network", 3.0), ("wifi", 6.0), ("4g", 57.0)):
        rows += [{"label": label, "transport": "WebSocket", "median_ms": base, "requests_per_s": 1.0,
                  "bytes_per_s": 4600.0},
                 {"label": label, "transport": "poll every 250 ms", "median_ms": base + 80,
                  "requests_per_s": 6.4, "bytes_per_s": 5100.0}]
    summary = pd.DataFrame(rows)
    lines = delay_findings(summary)
    assert len(lines) == 5 and lines[0].startswith("network: WebSocket median 3.0 ms")
    assert "poll every 250 ms: median 83.0 ms" in lines[0]
    assert lines[4].startswith("4g: a pushed move took a median 57.0 ms") and "= 50 ms" in lines[4]
    cursors = pd.DataFrame({"tick_hz": [5, 30], "bytes_per_s": [1100.0, 6600.0]})
    text = closing_points(summary, "network", (50, 250), {"boards_agree": True}, cursors)
    assert "Straight to the lab (network) a move reached the other player after a median 3.0 ms" in text
    assert "83.0–83.0 ms over polling every 50–250 ms; on 4G: 57.0–137.0 ms" in text
    assert "up to 6.6 kB/s per participant at 30 Hz" in text and text.count("\n- ") == 5
