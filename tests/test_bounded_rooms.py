"""Every store of the game and whiteboard families is bounded, and the bound is stated.

Each test is one finding of the issue, attacked through real sockets, then the fixed behaviour:

- a whiteboard room kept every stroke as Python lists (2,000 strokes x 500 points: about 165 MB a
  room) and sent all of them in one welcome (15.7 MB: a client with aiohttp's default 4 MiB limit
  could not join). Now a room keeps at most `ROOM_MAX_BYTES` of stroke JSON, all rooms together
  `ALL_ROOMS_MAX_BYTES`, the welcome at most `WELCOME_MAX_BYTES` of strokes, and the rest is paged
  with `GET /api/collab/{room}?since=`;
- reading a game or room that did not exist created it (1,000 GETs of new ids evicted a game two
  players were in). Now reading or joining one that does not exist is 404 and creates nothing;
  only PUT/POST create, and a game or room with people in it is never evicted by anyone else's
  traffic (503 + Retry-After when everything is in use).
"""

from __future__ import annotations

import json
import random

import aiohttp
import pytest

from labkit import _loop
from labkit.clients.rest import RestClient
from labkit.routes import collab, game

POINTS = 500


def _stroke(rng: random.Random) -> str:
    """A stroke of the largest allowed size, full-precision coordinates (about 20 KB of JSON)."""
    return json.dumps({"type": "stroke", "points": [[rng.random(), rng.random()] for _ in range(POINTS)]})


async def _feed(session: aiohttp.ClientSession, lab, room: str, strokes: int, seed: int = 0) -> int:
    """One member draws `strokes` big strokes into `room`, reading its own echoes (so it is never
    a slow consumer); returns the bytes it sent."""
    rng = random.Random(seed)
    ws = await session.ws_connect(f"{lab.ws_url}/ws/collab", params={"room": room, "name": f"feeder{seed}"},
                                  max_msg_size=0)
    assert json.loads((await ws.receive(timeout=30)).data)["type"] == "welcome"
    sent = 0
    for _ in range(strokes):
        text = _stroke(rng)
        sent += len(text)
        await ws.send_str(text)
        while json.loads((await ws.receive(timeout=30)).data)["type"] != "stroke":
            pass
    await ws.close()
    return sent


def _room(api: RestClient, room: str) -> dict:
    rooms = api.get("/api/collab").json()
    return next(r for r in rooms["rooms"] if r["room"] == room)


def test_a_room_fed_past_its_byte_bound_stays_under_it_and_a_late_joiner_gets_a_bounded_welcome(lab):
    strokes = 160  # about 3.3 MB of stroke JSON: past the 2 MiB a room keeps
    with RestClient(lab) as api:
        assert api.put("/api/collab/big").status == 201

    async def run() -> tuple[int, str]:
        async with aiohttp.ClientSession() as s:
            sent = await _feed(s, lab, "big", strokes)
            # a late joiner with aiohttp's default message limit (4 MiB) can join
            late = await s.ws_connect(f"{lab.ws_url}/ws/collab", params={"room": "big", "name": "late"})
            message = await late.receive(timeout=30)
            await late.close()
            assert message.type is aiohttp.WSMsgType.TEXT, message
            return sent, message.data

    sent, welcome_text = _loop.run(run(), timeout=300)
    assert sent > 1.5 * collab.ROOM_MAX_BYTES  # the attack really went past the bound

    with RestClient(lab) as api:
        kept = _room(api, "big")
        listing = api.get("/api/collab").json()
        assert kept["bytes"] <= collab.ROOM_MAX_BYTES
        assert listing["bytes"] <= collab.ALL_ROOMS_MAX_BYTES
        assert listing["room_max_bytes"] == collab.ROOM_MAX_BYTES
        assert kept["last_seq"] == strokes and kept["first_kept"] > 1  # the oldest were dropped
        assert kept["strokes_kept"] == strokes - kept["first_kept"] + 1

        # the welcome, as it came off the wire (no compression: these bytes are the frame's payload)
        welcome_bytes = len(welcome_text.encode())
        welcome = json.loads(welcome_text)
        print(f"fed {sent} B; the room keeps {kept['bytes']} B ({kept['strokes_kept']} strokes); "
              f"welcome {welcome_bytes} B with {len(welcome['strokes'])} strokes")
        assert welcome_bytes <= collab.WELCOME_MAX_BYTES
        assert welcome["type"] == "welcome" and welcome["last_seq"] == strokes
        assert welcome["first_kept"] == kept["first_kept"]
        seqs = [s["seq"] for s in welcome["strokes"]]
        assert seqs == list(range(seqs[0], strokes + 1))  # the newest ones, in order
        assert welcome["older"] == seqs[0] - welcome["first_kept"] > 0

        # the older kept strokes, paged from first_kept: each page bounded, together all of them
        since, paged, pages = welcome["first_kept"] - 1, [], 0
        while True:
            reply = api.get(f"/api/collab/big?since={since}")
            assert reply.status == 200 and len(reply.body) <= collab.PAGE_MAX_BYTES
            page = reply.json()
            paged += [s["seq"] for s in page["strokes"]]
            pages += 1
            if not page["more"]:
                assert "Link" not in reply.headers
                break
            assert 'rel="next"' in reply.headers["Link"]
            since = page["next_since"]
        assert paged == list(range(kept["first_kept"], strokes + 1)) and pages > 1
        assert api.get("/api/collab/big?limit=3").json()["next_since"] == kept["first_kept"] + 2

        # what is no longer kept is said so, with where to resume
        gone = api.get("/api/collab/big?since=0")
        assert gone.status == 410 and gone.json()["first_kept"] == kept["first_kept"]
        assert api.get("/api/collab/big?limit=0").status == 400


def test_all_rooms_together_stay_under_their_bound_and_empty_rooms_go_first(lab, monkeypatch):
    """ALL_ROOMS_MAX_BYTES lowered to 3 MiB for the test (32 MiB would need 1,600 big strokes)."""
    monkeypatch.setattr(collab, "ALL_ROOMS_MAX_BYTES", 3 * 1024 * 1024)
    with RestClient(lab) as api:
        for room in ("left", "a", "b"):
            assert api.put(f"/api/collab/{room}").status == 201

    async def run() -> None:
        async with aiohttp.ClientSession() as s:
            await _feed(s, lab, "left", 40, seed=1)  # about 0.8 MB, then its member leaves
            stay = await s.ws_connect(f"{lab.ws_url}/ws/collab", params={"room": "a", "name": "stays"},
                                      max_msg_size=0)
            await stay.receive(timeout=30)
            await _feed(s, lab, "a", 70, seed=2)  # about 1.4 MB
            await _feed(s, lab, "b", 70, seed=3)  # past 3 MiB together
            await stay.close()

    _loop.run(run(), timeout=300)
    with RestClient(lab) as api:
        listing = api.get("/api/collab").json()
        names = {r["room"] for r in listing["rooms"]}
        assert listing["bytes"] <= collab.ALL_ROOMS_MAX_BYTES
        assert sum(r["bytes"] for r in listing["rooms"]) == listing["bytes"]
        assert "left" not in names and {"a", "b"} <= names  # the empty room was forgotten first
        assert api.get("/api/collab/left").status == 404


def test_reading_or_joining_what_does_not_exist_is_404_and_creates_nothing(lab):
    """Before: GET /api/games/ID (or a WebSocket join, or a seat) made the game; now only PUT and
    POST do, and everything else answers 404 problem+json, before any upgrade."""

    async def join(path: str, **params) -> int:
        async with aiohttp.ClientSession() as s:
            try:
                ws = await s.ws_connect(f"{lab.ws_url}{path}", params=params)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            await ws.close()
            return 101

    with RestClient(lab) as api:
        for path in ("/api/games/nope", "/api/collab/nope"):
            reply = api.get(path)
            assert reply.status == 404, path
            assert reply.headers["Content-Type"].startswith("application/problem+json")
            assert "PUT" in reply.json()["detail"]  # says how to create it
        assert api.post("/api/games/nope/seats", json={"name": "x"}).status == 404
        assert api.post("/api/games/nope/moves", json={"seat": "X", "token": "t", "column": 0}).status == 404
        assert _loop.run(join("/ws/game", game="nope", name="x")) == 404
        assert _loop.run(join("/ws/game", game="nope", role="watch")) == 404
        assert _loop.run(join("/ws/collab", room="nope", name="x")) == 404
        assert api.get("/api/games").json()["count"] == 0
        assert api.get("/api/collab").json()["count"] == 0

        # an explicit create makes one: PUT (idempotent: 201, then 200 unchanged) or POST
        first = api.put("/api/games/g1")
        assert first.status == 201 and first.headers["Location"] == "/api/games/g1"
        assert api.put("/api/games/g1").status == 200
        made = api.post("/api/games")
        assert made.status == 201 and api.get(made.headers["Location"]).status == 200
        assert api.put("/api/collab/r1").status == 201 and api.put("/api/collab/r1").status == 200
        room = api.post("/api/collab")
        assert room.status == 201 and api.get(room.headers["Location"]).status == 200
        assert api.get("/api/games").json()["count"] == 2 and api.get("/api/collab").json()["count"] == 2
        assert _loop.run(join("/ws/game", game="g1", name="x")) == 101
        assert _loop.run(join("/ws/collab", room="r1", name="x")) == 101
        assert api.put("/api/games/no%20spaces").status == 400


def test_a_thousand_other_games_do_not_evict_a_game_two_players_are_in(lab):
    """Before: the 1,000th new id evicted the oldest game, whoever was playing it."""
    with RestClient(lab) as api:
        assert api.put("/api/games/match").status == 201
        x = api.post("/api/games/match/seats", json={"name": "ann"}).json()
        o = api.post("/api/games/match/seats", json={"name": "bob"}).json()

        def move(player: dict, column: int):
            return api.post("/api/games/match/moves",
                            json={"seat": player["seat"], "token": player["token"], "column": column})

        assert move(x, 3).status == 201
        for i in range(game.MAX_GAMES):
            assert api.get(f"/api/games/other-{i}").status == 404  # reading creates nothing
        for i in range(game.MAX_GAMES):
            assert api.put(f"/api/games/other-{i}").status == 201  # creating evicts only idle, empty games
        listing = api.get("/api/games").json()
        assert listing["count"] == game.MAX_GAMES and listing["in_use"] >= 1
        # the two players go on over REST, where they were
        moved = move(o, 3)
        assert moved.status == 201 and moved.json()["moves"] == 2
        assert move(x, 4).status == 201


def test_when_every_game_is_in_use_creating_one_more_is_503_with_retry_after(lab, monkeypatch):
    monkeypatch.setattr(game, "MAX_GAMES", 4)
    with RestClient(lab) as api:
        assert api.put("/api/games/empty").status == 201
        for i in range(3):
            assert api.put(f"/api/games/busy-{i}").status == 201
            assert api.post(f"/api/games/busy-{i}/seats", json={"name": "p"}).status == 201
        assert api.put("/api/games/new-0").status == 201  # the empty one made room
        assert api.get("/api/games/empty").status == 404
        assert api.post("/api/games/new-0/seats", json={"name": "p"}).status == 201
        full = api.put("/api/games/new-1")
        assert full.status == 503 and full.headers["Retry-After"] == str(game.RETRY_AFTER_S)
        assert full.headers["Content-Type"].startswith("application/problem+json")
        assert api.post("/api/games").status == 503
        assert all(api.get(f"/api/games/busy-{i}").status == 200 for i in range(3))


@pytest.mark.parametrize("family", ["collab", "game"])
def test_a_room_or_game_with_a_socket_in_it_is_never_evicted(lab, monkeypatch, family):
    """Sockets count as people: MAX lowered to 3, one member stays connected while 20 others are
    created; it can still draw (or move) afterwards, and with every one in use creating is 503."""
    if family == "collab":
        kind, path = "collab", "/ws/collab"
        monkeypatch.setattr(collab, "MAX_ROOMS", 3)
    else:
        kind, path = "games", "/ws/game"
        monkeypatch.setattr(game, "MAX_GAMES", 3)
    key = "room" if family == "collab" else "game"

    async def run() -> tuple[set[int], int, str | None, dict]:
        async with aiohttp.ClientSession() as s:
            async def put(name: str) -> aiohttp.ClientResponse:
                async with s.put(f"{lab.url}/api/{kind}/{name}") as reply:
                    await reply.read()
                    return reply

            assert (await put("kept")).status == 201
            member = await s.ws_connect(f"{lab.ws_url}{path}", params={key: "kept", "name": "m"})
            assert json.loads((await member.receive(timeout=10)).data)["type"] == "welcome"
            statuses = {(await put(f"other-{i}")).status for i in range(20)}
            others = [await s.ws_connect(f"{lab.ws_url}{path}", params={key: f"other-{19 - i}", "name": "n"})
                      for i in range(2)]  # now all three are in use
            full = await put("one-more")
            if family == "collab":
                await member.send_json({"type": "stroke", "points": [[0.5, 0.5]]})
            else:
                await member.send_json({"type": "move", "column": 0})
            while True:
                answer = json.loads((await member.receive(timeout=10)).data)
                if answer["type"] == "stroke" or (answer["type"] == "state" and answer["move"]):
                    break
            for ws in (member, *others):
                await ws.close()
            return statuses, full.status, full.headers.get("Retry-After"), answer

    statuses, full, retry, answer = _loop.run(run(), timeout=60)
    assert statuses == {201} and full == 503 and retry is not None
    assert answer["type"] == "stroke" or answer["move"]["column"] == 0


def test_an_id_with_a_trailing_newline_is_refused_and_creates_nothing(lab):
    """`^...$` lets "abc\\n" through (`$` matches before a final newline): a game made under that id
    once broke its own Location header (an empty reply instead of problem+json)."""
    with RestClient(lab) as api:
        for path in ("/api/games/abc%0A", "/api/collab/abc%0A"):
            reply = api.put(path)
            assert reply.status == 400, path
            assert reply.headers["Content-Type"].startswith("application/problem+json")
        assert api.get("/api/games").json()["count"] == 0
        assert api.get("/api/collab").json()["count"] == 0
        assert api.get("/api/feed?since=1&wait=1&epoch=abc%0A").status == 422  # the epoch pattern too


def test_one_student_cannot_take_every_game_or_room(make_lab):
    """On a class server one token could hold every game (a REST seat keeps a game in use for 15
    minutes) and every room. A student identity may have made MAX_IN_USE_PER_IDENTITY games still
    in use and MAX_ROOMS_PER_IDENTITY rooms; one more is 429 + Retry-After, and another student and
    the instructor still create."""
    lab = make_lab(student_tokens=("tok-a", "tok-b"), instructor_token="tok-i")

    def client(token: str) -> RestClient:
        return RestClient(lab, headers={"Authorization": f"Bearer {token}"})

    with client("tok-a") as a, client("tok-b") as b, client("tok-i") as teacher:
        for n in range(game.MAX_IN_USE_PER_IDENTITY):
            assert a.put(f"/api/games/a{n}").status == 201
            assert a.post(f"/api/games/a{n}/seats", json={"name": "a"}).status == 201  # in use
        one_more = a.put("/api/games/a-extra")
        assert one_more.status == 429 and one_more.headers["Retry-After"]
        assert one_more.headers["Content-Type"].startswith("application/problem+json")
        assert a.get("/api/games/a-extra").status == 404  # nothing was made
        assert b.put("/api/games/b0").status == 201 and teacher.put("/api/games/t0").status == 201

        for n in range(collab.MAX_ROOMS_PER_IDENTITY):
            assert a.put(f"/api/collab/r{n}").status == 201
        assert a.post("/api/collab").status == 429
        assert b.post("/api/collab").status == 201 and teacher.put("/api/collab/t0").status == 201
        assert a.put("/api/collab/r0").status == 200  # its own rooms stay its to use
