"""Python players and measurements for the lab's Connect Four game and shared whiteboard.

    frame = lk.game_delays(lab, "websocket", moves=20)          # one row per move seen
    frame = lk.game_delays(net.url(), "poll", poll_ms=250)        # REST pollers through the emulator

A game or a whiteboard room exists once it is created (`PUT /api/games/{id}`,
`PUT /api/collab/{room}`: idempotent, so every participant may PUT the name they agreed on):
`create_game` and `create_room` do that, and every function here creates the games and rooms it
plays in. Joining one that does not exist is a 404.

The delay of a move is the time from the moment one player sends it to the moment the *other*
player has the new board (a pushed message over WebSocket; the first poll answer that holds it over
REST). Both players run in this process, on labkit's client loop, each through its own counting
TCP proxy, so the bytes per second per player are what crossed the wire (HTTP heads, bodies, frame
headers, the handshake), measured, not estimated.

Size: longer than 500 lines because lesson 08's experiments (move delays over both transports,
the optimistic race, cursor bandwidth, the shared whiteboard) share one pair of players and the
counting proxies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import threading
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.net.proxy import TcpProxy

from ._target import base_url, through

COLUMNS = 7
TRANSPORTS = ("websocket", "poll")


def run_interruptible(coro, timeout: float, *, progress=None, every: float = 2.0):
    """Run `coro` on labkit's client loop and return its result. `progress()` (a callable) is
    called every `every` seconds while it runs, so a long cell is never silent. Interrupting the
    kernel (KeyboardInterrupt) cancels the run and waits (up to 10 s) until its `finally` blocks
    have closed every connection it opened, then re-raises: nothing is left connected."""
    finished = threading.Event()

    async def guarded():
        try:
            return await coro
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(guarded(), _loop.client_loop())
    started = last = time.monotonic()
    try:
        while True:
            try:
                return future.result(0.2)
            except concurrent.futures.TimeoutError:
                now = time.monotonic()
                if now - started > timeout:
                    raise TimeoutError(f"no answer within {timeout:.0f} s") from None
                if progress is not None and now - last >= every:
                    last = now
                    progress()
    except BaseException:
        future.cancel()
        finished.wait(10)
        raise


class _Counted:
    """A TCP proxy in front of the target that counts one player's bytes (both directions)."""

    def __init__(self, target):
        parts = urlsplit(base_url(target))
        self.proxy = TcpProxy(parts.hostname, parts.port).start()
        self._userinfo, self._prefix = through(target)  # a class server: the same identity

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self._userinfo}{self.proxy.host}:{self.proxy.port}{self._prefix}"

    @property
    def bytes(self) -> int:
        return self.proxy.bytes_up + self.proxy.bytes_down

    def stop(self) -> None:
        self.proxy.stop()


def _ws_base(target) -> str:
    """The WebSocket base URL of a lab or of an http(s) URL (e.g. the emulator's)."""
    url = base_url(target, "ws")
    return "ws" + url[4:] if url.startswith("http") else url


def _http_base(target) -> str:
    """The HTTP base URL of a lab or of a URL (a ws(s):// one becomes its http(s):// twin)."""
    url = base_url(target)
    return "http" + url[2:] if url.startswith("ws") else url


async def _create(target, kind: str, name: str) -> str:
    """PUT /api/{kind}/{name}: the game ("games") or room ("collab") exists afterwards (created, or
    already there). Raises with the server's problem detail otherwise (e.g. 503: all in use)."""
    url = f"{_http_base(target)}/api/{kind}/{name}"
    async with aiohttp.ClientSession() as session, session.put(url) as reply:
        if reply.status not in (200, 201):
            detail = (await reply.text())[:300]
            raise RuntimeError(f"PUT {url} answered {reply.status}: {detail}")
    return name


def create_game(target, game: str | None = None) -> str:
    """Create the game `game` (a fresh name if None) with PUT /api/games/{game}; returns its id.
    Idempotent: an existing game is left as it is."""
    return _loop.run(_create(target, "games", game or new_game_id()), timeout=30)


def create_room(target, room: str | None = None) -> str:
    """Create the whiteboard room `room` (a fresh name if None) with PUT /api/collab/{room};
    returns its name. Idempotent: an existing room is left as it is."""
    return _loop.run(_create(target, "collab", room or new_game_id("room")), timeout=30)


def _legal_columns(state: dict) -> list[int]:
    return [c for c in range(COLUMNS) if not state["board"][0][c]]


class _Player:
    """What both kinds of player keep: the newest state of the game (None until it has joined)."""

    state: dict | None

    @property
    def shown(self) -> dict:
        """The newest state, which every player has once open() has returned."""
        if self.state is None:
            raise RuntimeError("this player has not joined a game: open() it first")
        return self.state


class _WsPlayer(_Player):
    """One player over WebSocket: a reader task keeps the newest state and when each version came."""

    def __init__(self, url: str):
        self.url = url
        self.state: dict | None = None
        self.seen_ns: dict[int, int] = {}
        self.errors: list[dict] = []
        self.changed = asyncio.Event()
        self.requests = 0

    async def open(self, game: str, seat: str) -> None:
        self.conn = await connect(f"{self.url}/ws/game?game={game}&seat={seat}&name=py-{seat}",
                                  compression=None, open_timeout=15)
        self.requests += 1
        self.reader = asyncio.create_task(self._read())
        while self.state is None:
            await self._wait_change(15)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.conn:
                now = time.perf_counter_ns()
                msg = json.loads(raw)
                if msg["type"] in ("welcome", "state"):
                    state = msg["state"]
                    if self.state is None or state["version"] > self.state["version"]:
                        self.state = state
                        self.seen_ns.setdefault(state["version"], now)
                elif msg["type"] == "error":
                    self.errors.append(msg)
                self.changed.set()

    async def _wait_change(self, timeout: float) -> None:
        self.changed.clear()
        await asyncio.wait_for(self.changed.wait(), timeout)

    async def move(self, column: int) -> None:
        await self.conn.send(json.dumps({"type": "move", "column": column}))

    async def until_version(self, version: int, timeout: float = 20.0) -> int:
        """Wait until this player has seen `version`; returns when (perf_counter_ns)."""
        deadline = time.monotonic() + timeout
        while self.state is None or self.state["version"] < version:
            await self._wait_change(max(0.01, deadline - time.monotonic()))
        return min(t for v, t in self.seen_ns.items() if v >= version)

    async def close(self) -> None:
        """Close the connection (harmless when it never opened)."""
        conn, reader = getattr(self, "conn", None), getattr(self, "reader", None)
        if conn is not None:
            await conn.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class _PollPlayer(_Player):
    """One player over REST: polls GET /api/games/G every `poll_ms` (If-None-Match: 304 while
    nothing changed) and POSTs its moves."""

    def __init__(self, url: str, poll_ms: float):
        self.url, self.poll_s = url, poll_ms / 1000
        self.state: dict | None = None
        self.seen_ns: dict[int, int] = {}
        self.errors: list[dict] = []
        self.requests = 0
        self.changed = asyncio.Event()

    async def open(self, game: str, seat: str) -> None:
        self.game = game
        self.session = aiohttp.ClientSession()
        async with self.session.post(f"{self.url}/api/games/{game}/seats", json={"name": f"py-{seat}"}) as r:
            body = await r.json()
        self.requests += 1
        self.seat, self.token = body["seat"], body["token"]
        self._take(body["state"], time.perf_counter_ns())
        self.poller = asyncio.create_task(self._poll())

    def _take(self, state: dict, now: int) -> None:
        if self.state is None or state["version"] > self.state["version"]:
            self.state = state
            self.seen_ns.setdefault(state["version"], now)
            self.changed.set()

    async def _poll(self) -> None:
        etag: str | None = None
        while True:
            started = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError):
                headers: dict[str, str] = {"If-None-Match": etag} if etag else {}
                async with self.session.get(f"{self.url}/api/games/{self.game}", headers=headers) as r:
                    self.requests += 1
                    if r.status == 200:
                        etag = r.headers.get("ETag")
                        self._take(await r.json(), time.perf_counter_ns())
            await asyncio.sleep(max(0.0, self.poll_s - (time.monotonic() - started)))

    async def move(self, column: int) -> None:
        body = {"seat": self.seat, "token": self.token, "column": column}
        async with self.session.post(f"{self.url}/api/games/{self.game}/moves", json=body) as r:
            self.requests += 1
            answer = await r.json()
        if r.status == 201:
            self._take(answer, time.perf_counter_ns())
        else:
            self.errors.append(answer)

    async def until_version(self, version: int, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.state is None or self.state["version"] < version:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
        return min(t for v, t in self.seen_ns.items() if v >= version)

    async def close(self) -> None:
        """Stop polling and close the session (harmless when it never opened)."""
        poller, session = getattr(self, "poller", None), getattr(self, "session", None)
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if session is not None:
            await session.close()


async def _play(target, transport: str, poll_ms: float | None, moves: int, seed: int,
                think_ms: float, rows: list[dict] | None = None) -> tuple[list, dict]:
    rng = random.Random(seed)
    counters = [_Counted(target), _Counted(target)]
    rows = [] if rows is None else rows  # a caller's list shows the progress while it runs
    requests = [0, 0]
    started = time.perf_counter_ns()
    try:
        while len(rows) < moves:
            game = await _create(target, "games", f"bench-{uuid.uuid4().hex[:12]}")  # not counted
            players: list[_WsPlayer | _PollPlayer]
            if transport == "websocket":
                players = [_WsPlayer(c.url("ws")) for c in counters]
            else:
                assert poll_ms is not None, "game_delays() asks for poll_ms when polling"
                players = [_PollPlayer(c.url(), poll_ms) for c in counters]
            try:
                for player, seat in zip(players, "XO", strict=True):
                    await player.open(game, seat)
                await players[0].until_version(2)
                turn = 0
                while len(rows) < moves:
                    mover, other = players[turn], players[1 - turn]
                    state = mover.shown
                    if state["winner"] or not _legal_columns(state):
                        break
                    await asyncio.sleep(rng.uniform(0, think_ms / 1000))  # the player thinks
                    version = state["version"] + 1
                    sent = time.perf_counter_ns()
                    await mover.move(rng.choice(_legal_columns(state)))
                    seen = await other.until_version(version)
                    await mover.until_version(version)
                    rows.append({"move": len(rows) + 1, "delay_ms": (seen - sent) / 1e6})
                    turn = 1 - turn
            finally:
                for i, player in enumerate(players):
                    requests[i] += player.requests
                    await player.close()
    finally:
        seconds = (time.perf_counter_ns() - started) / 1e9
        await asyncio.sleep(0.05)  # let the proxies count the closing bytes
        per_player = sum(c.bytes for c in counters) / 2
        traffic = {"seconds": seconds, "requests": sum(requests) / 2,
                   "requests_per_s": sum(requests) / 2 / seconds,
                   "bytes_per_s": per_player / seconds, "bytes_per_move": per_player / max(1, len(rows))}
        for counter in counters:
            counter.stop()
    return rows, traffic


def game_delays(target, transport: str = "websocket", *, poll_ms: float | None = None, moves: int = 20,
                seed: int = 0, label: str = "", think_ms: float | None = None):
    """Two Python players play `moves` moves over `transport` ("websocket" or "poll" every
    `poll_ms`); one row per move: how long until the other player had the new board. Before each
    move the player thinks a random 0 to `think_ms` ms (default: `poll_ms`, or 300 ms for
    WebSocket). A think time of a whole poll interval or more puts each move at a uniformly random
    point of the other player's interval (a shorter one would bias the delays); the same think time
    for every transport gives the same pace, so the per-second costs compare.

    Columns: transport, poll_ms, label, move, delay_ms, and per player for the whole run: requests
    and requests_per_s (HTTP requests; a WebSocket player makes one per game, its upgrade), bytes_per_s
    and bytes_per_move (both directions, on the wire, handshakes included). A finished game is
    followed by a new one until `moves` moves.
    """

    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}")
    if transport == "poll" and not poll_ms:
        raise ValueError("polling needs poll_ms= (how often each player asks)")
    think_ms = think_ms if think_ms is not None else (poll_ms or 300)
    rows, traffic = run_interruptible(_play(target, transport, poll_ms, moves, seed, think_ms),
                                      60 + moves * (2 + (poll_ms or 0) / 500 + think_ms / 1000))
    return _delay_frame(rows, traffic, transport, poll_ms, label)


def _delay_frame(rows: list[dict], traffic: dict, transport: str, poll_ms: float | None, label: str):
    import pandas as pd

    name = "WebSocket" if transport == "websocket" else f"poll every {poll_ms:g} ms"
    return pd.DataFrame([{"transport": name, "poll_ms": poll_ms, "label": label, **row,
                          "requests": traffic["requests"], "requests_per_s": traffic["requests_per_s"],
                          "bytes_per_s": traffic["bytes_per_s"],
                          "bytes_per_move": traffic["bytes_per_move"]} for row in rows],
                        columns=["transport", "poll_ms", "label", "move", "delay_ms", "requests",
                                 "requests_per_s", "bytes_per_s", "bytes_per_move"])


def compare_game_transports(target, poll_ms=(50, 250, 1000), *, moves: int = 20, label: str = "",
                            seed: int = 0, think_ms: float | None = None, progress=None):
    """`game_delays` for WebSocket and for polling at each interval in `poll_ms`, in one frame, all
    at the same pace: `think_ms` defaults to the longest interval (see `game_delays`). The runs
    play at the same time (see `compare_links`)."""
    return compare_links({label: target}, poll_ms, moves=moves, seed=seed, think_ms=think_ms,
                         progress=progress)


def link_name(target) -> str:
    """What a lab's direct link is, for labels and sentences: "loopback" when the lab listens on
    this machine's loopback (`lk.start()`, or a class server on the same machine), else "network"
    (a class server joined across the network: its delays include that network)."""
    import ipaddress

    host = urlsplit(base_url(target)).hostname or ""
    try:
        near = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        near = host.endswith(".localhost")
    return "loopback" if near else "network"


def compare_links(targets: dict, poll_ms=(50, 250, 1000), *, moves: int = 20, seed: int = 0,
                  think_ms: float | None = None, progress=None):
    """`game_delays` for every link in `targets` ({label: lab or URL, e.g. an emulator's
    `net.url()`}) × every transport (WebSocket, polling every `poll_ms`), all played AT THE SAME TIME,
    each pair of players in its own game through its own counting proxies. The delays are waits on
    the network and the poll timers, not on the CPU (a few messages a second per pair), so the runs
    do not disturb each other, and the whole comparison takes as long as its slowest run instead of
    their sum. `progress` (e.g. `print`) gets a line every 2 s: moves played so far per run.
    Interrupting stops every run and closes its connections."""
    import pandas as pd

    think_ms = think_ms if think_ms is not None else max(poll_ms)
    runs = [(label, target, transport, ms) for label, target in targets.items()
            for transport, ms in [("websocket", None)] + [("poll", ms) for ms in poll_ms]]
    played: list[list[dict]] = [[] for _ in runs]

    async def all_runs():
        return await asyncio.gather(*(_play(target, transport, ms, moves, seed, think_ms, rows)
                                      for (_, target, transport, ms), rows in zip(runs, played,
                                                                                   strict=True)))

    def report() -> None:
        if progress is not None:
            done = sum(min(len(rows), moves) for rows in played)
            progress(f"{done} of {moves * len(runs)} moves played ({len(runs)} games at once: "
                     f"{len(targets)} link(s) × {1 + len(poll_ms)} transports)")

    longest = 60 + moves * (2 + max(poll_ms) / 500 + think_ms / 1000)
    results = run_interruptible(all_runs(), longest, progress=report)
    report()
    return pd.concat([_delay_frame(rows, traffic, transport, ms, label)
                      for (label, _, transport, ms), (rows, traffic) in zip(runs, results, strict=True)],
                     ignore_index=True)


def push_delay_model(profile) -> dict:
    """What a pushed move's delay is made of when both players are on `profile` (a name such as
    "4g", or a netem Profile): the mover's message travels one way UP to the server, the server's
    new state one way DOWN to the other player, so the floor is two one-way trips (up + down = the
    link's round trip), not one. Returns up_ms, down_ms and floor_ms."""
    from labkit.net.netem.link import profile as find

    link = find(profile)
    return {"up_ms": link.upstream.latency, "down_ms": link.downstream.latency,
            "floor_ms": link.upstream.latency + link.downstream.latency}


def summarize_delays(frame):
    """Per label and transport: moves seen, median and max delay (ms), and per player: requests,
    requests/s, bytes/s and bytes per move."""
    grouped = frame.groupby(["label", "transport"], sort=False)
    out = grouped.agg(moves=("delay_ms", "size"), median_ms=("delay_ms", "median"),
                      max_ms=("delay_ms", "max"), requests=("requests", "first"),
                      requests_per_s=("requests_per_s", "first"), bytes_per_s=("bytes_per_s", "first"),
                      bytes_per_move=("bytes_per_move", "first"))
    return out.round(1).reset_index()


def delay_findings(summary, emulated=("wifi", "4g")) -> list[str]:
    """Sentences on `summarize_delays`' table: per link, the WebSocket's median, requests/s and
    kB/s per player beside the slowest poller's; per emulated link, the pushed move's median beside
    the floor of two one-way trips (`push_delay_model`)."""
    lines = []
    for label, part in summary.groupby("label", sort=False):
        ws, slowest = part[part.transport == "WebSocket"].iloc[0], part.iloc[-1]
        lines.append(f"{label}: WebSocket median {ws.median_ms} ms, {ws.requests_per_s} requests/s and "
                     f"{ws.bytes_per_s / 1000:.1f} kB/s per player; {slowest.transport}: median "
                     f"{slowest.median_ms} ms, {slowest.requests_per_s} requests/s and "
                     f"{slowest.bytes_per_s / 1000:.1f} kB/s per player")
    for label in emulated:
        model = push_delay_model(label)
        pushed = summary[(summary.label == label) & (summary.transport == "WebSocket")].median_ms.iloc[0]
        lines.append(f"{label}: a pushed move took a median {pushed} ms; the link's floor is two one-way "
                     f"trips, {model['up_ms']:g} ms up from the mover to the server + {model['down_ms']:g}"
                     f" ms down to the other player = {model['floor_ms']:g} ms (the rest: jitter, the "
                     "link's rate, the lab)")
    return lines


def closing_points(summary, near: str, polls_ms, bots: dict, cursors) -> str:
    """Lesson 08's summary as Markdown bullets, every number from the run: `summary` of the move
    delays (`near` is the label of the direct link), the bots' game, the cursor table."""
    loop = summary[summary.label == near]
    ws, polls = loop[loop.transport == "WebSocket"].iloc[0], loop[loop.transport != "WebSocket"]
    far = summary[summary.label == "4g"]
    far_ws = far[far.transport == "WebSocket"].median_ms.iloc[0]
    return "\n".join([
        f"- The server held the only board: two Python players and a spectator ended with the same "
        f"board ({bots['boards_agree']}).",
        f"- Straight to the lab ({near}) a move reached the other player after a median {ws.median_ms}"
        f" ms over WebSocket and {polls.median_ms.min()}–{polls.median_ms.max()} ms over polling every "
        f"{min(polls_ms)}–{max(polls_ms)} ms; on 4G: {far.median_ms.min()}–{far.median_ms.max()} ms.",
        f"- A pushed move crosses the link twice (mover → server → other player): on 4G {far_ws} ms, "
        f"against a floor of {push_delay_model('4g')['floor_ms']:g} ms for the two one-way trips.",
        f"- Polling players made up to {summary.requests_per_s.max()} requests/s each; WebSocket "
        "players one upgrade per game, then only frames that carry news.",
        f"- Cursor bandwidth grows with tick rate × participants: up to "
        f"{cursors.bytes_per_s.max() / 1000:.1f} kB/s per participant at {cursors.tick_hz.max():g} Hz.",
        "- Optimistic updates hide the round trip and risk showing a move the server never accepted.",
    ])


def new_game_id(prefix: str = "game") -> str:
    """A fresh game name (so a cell run twice starts a new game with free seats). Only a name: the
    game exists once created (`create_game`, or the browser widgets, which PUT it themselves)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _bots(target, game: str, seed: int) -> dict:
    rng = random.Random(seed)
    url = _ws_base(target)
    await _create(target, "games", game)
    players = [_WsPlayer(url) for _ in range(2)]
    for player, seat in zip(players, "XO", strict=True):
        await player.open(game, seat)
    watcher = await connect(f"{url}/ws/game?game={game}&role=watch&name=spectator", compression=None)
    seen = []

    async def watch() -> None:
        with contextlib.suppress(Exception):
            async for raw in watcher:
                msg = json.loads(raw)
                seen.append(msg["state"])

    watching = asyncio.create_task(watch())
    await players[0].until_version(players[1].shown["version"])
    turn = 0
    while not players[turn].shown["winner"]:
        version = players[turn].shown["version"] + 1
        await players[turn].move(rng.choice(_legal_columns(players[turn].shown)))
        for player in players:
            await player.until_version(version)
        turn = 1 - turn
    final = players[0].shown
    deadline = time.monotonic() + 5
    while (not seen or seen[-1]["version"] < final["version"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await watcher.close()
    watching.cancel()
    for player in players:
        await player.close()
    boards = [players[0].shown["board"], players[1].shown["board"], seen[-1]["board"]]
    return {"game": game, "winner": final["winner"], "moves": final["moves"],
            "boards_agree": boards[0] == boards[1] == boards[2], "spectator_updates": len(seen)}


def play_bots(target, game: str | None = None, *, seed: int = 0) -> dict:
    """Two Python players (random legal moves) play one whole game over WebSocket while a spectator
    watches, in `game` (created if it does not exist; a new one if None); returns the winner, the
    number of moves, whether all three boards agree at the end, and how many state updates the
    spectator received."""
    return _loop.run(_bots(target, game or new_game_id("bots"), seed), timeout=60)


# -- optimistic updates -------------------------------------------------------------------------
def _drop_row(board: list[list[str]], column: int) -> int | None:
    return next((r for r in range(len(board) - 1, -1, -1) if not board[r][column]), None)


async def _race(target, trials: int, column: int) -> list[dict]:
    rows = []
    for trial in range(trials):
        players = [_WsPlayer(_ws_base(target)) for _ in range(2)]
        game = await _create(target, "games", f"race-{uuid.uuid4().hex[:12]}")
        for player, seat in zip(players, "XO", strict=True):
            await player.open(game, seat)
        await players[0].until_version(2)
        version = players[0].shown["version"]
        guesses = [_drop_row(p.shown["board"], column) for p in players]  # what each shows at once
        sent = time.perf_counter_ns()
        await asyncio.gather(*(p.move(column) for p in players))  # both click the same column at once
        answered = [await players[0].until_version(version + 1)]
        deadline = time.monotonic() + 10  # O hears either a refusal or the state holding its disc
        while not players[1].errors and players[1].shown["version"] < version + 2:
            await players[1]._wait_change(max(0.01, deadline - time.monotonic()))
        answered.append(time.perf_counter_ns())
        await players[0].until_version(players[1].shown["version"])
        final = players[0].shown["board"]
        for seat, player, guess, end in zip("XO", players, guesses, answered, strict=True):
            right = final[guess][column] == seat
            outcome = ("as shown" if right else "refused: rolled back" if player.errors
                       else "landed elsewhere")
            rows.append({"trial": trial + 1, "seat": seat, "shown_after_ms": 0.0,
                         "server_answer_ms": (end - sent) / 1e6, "outcome": outcome,
                         "boards_agree": player.shown["board"] == final})
        for player in players:
            await player.close()
    return rows


def optimistic_race(target, trials: int = 5, column: int = 3):
    """Both players drop a disc in the same column at the same moment while it is X's turn, each
    drawing it at once on its own board (an optimistic local update). The server orders the two
    moves: X's always stands; O's is refused (it arrived first: not its turn) or lands one row
    higher than O drew it (it arrived second). One row per trial and seat: the outcome for what
    the player had drawn, and when the server's answer arrived (ms after the click).
    """
    import pandas as pd

    return pd.DataFrame(_loop.run(_race(target, trials, column), timeout=30 + trials * 10))


# -- the shared whiteboard -------------------------------------------------------------------------
async def _cursors(target, tick_hz: float, participants: int, seconds: float) -> dict:
    counters = [_Counted(target) for _ in range(participants)]
    room = await _create(target, "collab", f"room-{uuid.uuid4().hex[:12]}")
    received = [0] * participants
    conns = []
    try:
        for i, counter in enumerate(counters):
            conns.append(await connect(f"{counter.url('ws')}/ws/collab?room={room}&name=p{i}",
                                       compression=None))
        for conn in conns:
            await conn.recv()  # the welcome
        await asyncio.sleep(0.1)
        base = [c.bytes for c in counters]

        async def mover(i: int, conn) -> None:
            rng = random.Random(i)
            ticks = int(tick_hz * seconds)
            start = time.monotonic()
            for k in range(ticks):
                await conn.send(json.dumps({"type": "cursor", "x": round(rng.random(), 4),
                                            "y": round(rng.random(), 4)}))
                await asyncio.sleep(max(0.0, start + (k + 1) / tick_hz - time.monotonic()))

        async def reader(i: int, conn) -> None:
            with contextlib.suppress(Exception):
                async for raw in conn:
                    if json.loads(raw)["type"] == "cursor":
                        received[i] += 1

        readers = [asyncio.create_task(reader(i, c)) for i, c in enumerate(conns)]
        started = time.monotonic()
        await asyncio.gather(*(mover(i, c) for i, c in enumerate(conns)))
        window = time.monotonic() - started  # the sending window: every rate is per second of it
        await asyncio.sleep(0.2)  # the last relayed cursors arrive (counted: they were sent in it)
        used = [c.bytes - b for c, b in zip(counters, base, strict=True)]
        for task in readers:
            task.cancel()
        return {"tick_hz": tick_hz, "participants": participants,
                "messages_nominal_per_s": (participants - 1) * tick_hz,
                "messages_in_per_s": sum(received) / participants / window,
                "bytes_per_s": sum(used) / participants / window}
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
        for counter in counters:
            counter.stop()


def cursor_bandwidth(target, ticks_hz=(5, 10, 30, 60), *, participants: int = 3, seconds: float = 1.0,
                     progress=None):
    """Every participant of a whiteboard room moves its cursor `tick_hz` times a second for
    `seconds`; one row per tick rate: the cursor messages each one should receive per second
    (messages_nominal_per_s: the others' rate), those it did receive (messages_in_per_s, over the
    sending window) and its bytes per second on the wire (both directions, measured by a counting
    proxy per participant)."""
    import pandas as pd

    rows = []
    for hz in ticks_hz:
        rows.append(run_interruptible(_cursors(target, hz, participants, seconds), 30 + seconds * 2))
        if progress is not None:
            row = rows[-1]
            progress(f"{hz:g} updates/s: each participant received {row['messages_in_per_s']:.1f} "
                     f"cursor messages/s (nominal {row['messages_nominal_per_s']:g})")
    return pd.DataFrame(rows)


async def _draw(target, participants: int, strokes: int) -> dict:
    room = await _create(target, "collab", f"board-{uuid.uuid4().hex[:12]}")
    url = _ws_base(target)
    conns = [await connect(f"{url}/ws/collab?room={room}&name=artist{i}", compression=None)
             for i in range(participants)]
    boards: list[list[int]] = [[] for _ in conns]
    for conn in conns:
        await conn.recv()

    async def artist(i: int, conn) -> None:
        rng = random.Random(i)
        for _ in range(strokes):
            points = [[round(rng.random(), 3), round(rng.random(), 3)] for _ in range(5)]
            await conn.send(json.dumps({"type": "stroke", "points": points}))

    async def viewer(i: int, conn) -> None:
        while len(boards[i]) < participants * strokes:
            msg = json.loads(await conn.recv())
            if msg["type"] == "stroke":
                boards[i].append(msg["seq"])

    await asyncio.gather(*(artist(i, c) for i, c in enumerate(conns)),
                         *(viewer(i, c) for i, c in enumerate(conns)))
    for conn in conns:
        await conn.close()
    return {"room": room, "participants": participants, "strokes_each": strokes,
            "boards_identical": all(b == boards[0] for b in boards), "order_seen": boards[0]}


def whiteboard_together(target, participants: int = 3, strokes: int = 10) -> dict:
    """`participants` Python artists draw `strokes` strokes each, all at once; returns whether every
    board replayed the same order of strokes (the server's numbering) and that order."""
    return _loop.run(_draw(target, participants, strokes), timeout=60)
