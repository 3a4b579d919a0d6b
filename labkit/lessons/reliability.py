"""Lesson 07's experiments: each fault of a real network next to its remedy, measured.

Every function runs against a lab (`lk.start()`), on 127.0.0.1 only, is bounded in clients and
time, stops by itself and returns plain numbers or a tidy frame:

- `detection_run`: a blackholed connection (netem "timeout" toxic), found by which heartbeat, when;
- `idle_timeout_run`: a load balancer's idle timeout, with and without heartbeats;
- `herd_run`: N WebSocket clients after a server restart: connection attempts per 100 ms;
- `epoch_run`: resuming across a lab restart on each transport (the reset, the re-sync);
- `retry_post_run`: a POST whose answer is lost, retried, with and without an Idempotency-Key;
- `fallback_run`: WebSocket refused by a plain-HTTP proxy: the fallback and its staleness;
- `slow_consumer_run`: a WebSocket that stops reading: bounded memory, the 1008 close, the resume;
- `semantics_run`: at-most-once, at-least-once and effectively-once under the same cuts;
- `chaos_run`: many subscribers, restarts and random resets; per subscriber: delivered = published?

Interrupted (the kernel's stop button raises KeyboardInterrupt in the cell), every run stops the
clients it started in a `finally` (`reconnect.stop_all`) and starts the lab again if it was down:
the clients live on labkit's client loop, which the interrupt does not reach.

Size: longer than 500 lines because lesson 07's experiments share one set of helpers (waiting,
the emulated link, restarts, stopping every client on an interrupt); one module per experiment
would repeat them or import each other's private helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import time
from typing import TYPE_CHECKING, Any

from labkit import _loop
from labkit.clients.feed import hub_stats, set_source
from labkit.clients.reconnect import Subscriber, stop_all

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def progress(desc: str, expected_s: float):
    """A progress bar of elapsed seconds (about `expected_s` in all) while the block runs, for the
    lesson's cells that take a few seconds."""
    import threading

    from tqdm.auto import tqdm

    total = round(expected_s, 1)
    bar = tqdm(total=total, desc=desc, unit="s", leave=False,
               bar_format="{desc}: {bar} {n:.0f}/{total:.0f} s")
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(0.2):
            bar.n = min(round(time.monotonic() - started, 1), total)
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield bar
    finally:
        done.set()
        ticker.join(1)
        bar.close()


SETTLE_S = 0.3
"""Pause that lets clients connect (or a toxic reach open connections) before a step (s)."""


def _source(lab) -> dict:
    from labkit.clients.feed import _http_json

    return _loop.run(_http_json(lab, "GET", "/api/feed/source"))


def _wait(predicate, limit_s: float, step_s: float = 0.05) -> bool:
    """Wait until `predicate()` is true, at most `limit_s` seconds; returns whether it became true."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def _publish(lab, events: int, rate_hz: float, seed: int = 1, limit_s: float | None = None) -> dict:
    """Publish `events` feed events at `rate_hz` and wait until the ticker is done; returns the
    source state (epoch, last_seq)."""
    set_source(lab, rate_hz, ticks=events, seed=seed)
    _wait(lambda: not _source(lab)["running"], limit_s or (events / rate_hz * 3 + 5), 0.1)
    return _source(lab)


@contextlib.contextmanager
def _netem(lab, net=None):
    """`net` with every toxic cleared afterwards, or a new proxy in front of `lab` (stopped after)."""
    if net is not None:
        try:
            yield net
        finally:
            net.clear()
        return
    from labkit.net.netem import NetemProxy

    with NetemProxy.for_lab(lab).start() as fresh:
        yield fresh


FLOOD_LIMITS: dict[str, Any] = {"chat_rate": 100_000, "chat_burst": 100_000}
"""The chat limits of lesson 07's lab: its floods (the slow consumer, the slow senders) must not be
refused by the room's rate limit first (that limit is lesson 08's subject)."""


def own_lab(lab, why: str):
    """The lab a cell of lesson 07 may restart, cut, publish on or flood: `lk.own_lab` with the
    lesson's `FLOOD_LIMITS` (on a class server, this kernel's own lab, started once and said so)."""
    from labkit.course.classroom import own_lab as _own_lab

    return _own_lab(lab, why, **FLOOD_LIMITS)


def restart_with_downtime(lab, down_s: float) -> None:
    """Stop the lab, keep its port and data, wait `down_s` seconds, start it again."""
    port = lab.port
    lab.stop(keep_data=True)
    lab.config = dataclasses.replace(lab.config, port=port)
    time.sleep(down_s)
    lab.start()


def _ensure_running(lab) -> None:
    """Start `lab` again on its port if an interrupted restart left it stopped."""
    if not lab.running and lab.port is not None:
        lab.config = dataclasses.replace(lab.config, port=lab.port)
        lab.start()


def cuts_and_restart(lab, subs, view=None, *, events: int = 40, rate_hz: float = 50.0) -> None:
    """Lesson 07's opening: publish `events`, cut every subscriber's connection, publish again,
    restart the lab (its history is lost), publish a third time; then stop the subscribers and
    the `view`. Interrupted, it stops them all the same (no connection stays open)."""
    try:
        for step in range(3):
            set_source(lab, rate_hz, ticks=events, seed=step + 1)
            time.sleep(events / rate_hz + 0.3 + 0.2 * (step == 2))
            if step == 0:
                for sub in subs:
                    sub.cut()  # as if the network reset each connection
            elif step == 1:
                lab.restart()  # a new incarnation: the feed's history is gone
    finally:
        stop_all(subs)
        if view is not None:
            view.stop()
        _ensure_running(lab)


# -- heartbeats ------------------------------------------------------------------------------------
def detection_run(lab, transport: str = "ws", heartbeat_s: float | None = 0.5,
                  limit_s: float = 5.0, wait_s: float = 1.0, net=None) -> dict:
    """Blackhole a live connection and see whether (and how) the client finds out.

    Returns transport, heartbeat_s, detected, mechanism, detect_s (from the blackhole to the
    detection, or None), and budget_s, the most it should take: a WebSocket ping interval +
    ping timeout + close timeout (3 x heartbeat_s, capped close), SSE's read timeout (heartbeat_s),
    a long poll's `wait_s` + heartbeat_s. `net`: a running NetemProxy to use (else a new one)."""
    with _netem(lab, net) as net:
        sub = Subscriber(net.url(), transport, heartbeat_s=heartbeat_s, base_s=0.05, cap_s=0.5,
                         seed=1, name=transport, wait_s=wait_s).start(limit_s + 5)
        try:
            _wait(lambda: sub.connects >= 1, 5.0)
            time.sleep(SETTLE_S)
            cut_at = time.time()
            net.toxic("timeout")
            _wait(lambda: bool(sub.detections), limit_s)
        finally:
            sub.stop()
    found = sub.detections[0] if sub.detections else None
    budget = None if heartbeat_s is None else {
        "ws": 2 * heartbeat_s + min(1.0, heartbeat_s), "sse": heartbeat_s,
        "long_poll": wait_s + heartbeat_s}[transport]
    return {"transport": transport, "heartbeat_s": heartbeat_s, "detected": found is not None,
            "mechanism": found["mechanism"] if found else None,
            "detect_s": found["at"] - cut_at if found else None, "budget_s": budget,
            "watched_s": limit_s}


def idle_timeout_run(lab, idle_s: float = 1.0, heartbeat_s: float | None = 0.3,
                     seconds: float = 3.0, net=None) -> dict:
    """A WebSocket on a quiet feed behind a proxy that closes connections idle for `idle_s`:
    with heartbeats every `heartbeat_s` (< idle_s) the connection lives; without, it is cut
    and the client must reconnect. Returns connects (1 = never cut) and cuts."""
    with _netem(lab, net) as net:
        net.toxic("idle_timeout", seconds=idle_s)
        sub = Subscriber(net.url(), "ws", heartbeat_s=heartbeat_s, base_s=0.05, cap_s=0.5,
                         seed=2).start(seconds + 5)
        try:
            time.sleep(seconds)
        finally:
            sub.stop()
    return {"idle_timeout_s": idle_s, "heartbeat_s": heartbeat_s, "seconds": seconds,
            "connects": sub.connects, "cuts": max(0, sub.connects - 1)}


# -- reconnect storms --------------------------------------------------------------------------------
def herd_run(lab, clients: int = 300, *, jitter: str = "full", down_s: float = 1.0,
             base_s: float = 0.5, cap_s: float = 4.0, after_s: float = 4.0, seed: int = 1):
    """`clients` WebSocket subscribers; the lab stops for `down_s` and comes back on the same port.

    Returns a frame with one row per connection attempt after the stop: t_s (since the stop),
    client, jitter, and `what`: "started" (the client's backoff delay ran out and it began the
    attempt: what jitter spreads) or "finished" (it connected or was refused; one client loop
    drives every client here, so finishing lags starting when hundreds start at once). Without
    jitter every client starts its attempts at the same instants (waves); with full jitter they
    spread out. `frame.attrs`: clients, reconnected.

    Interrupted, every subscriber is stopped and the lab is left running."""
    import pandas as pd

    rng = random.Random(seed)
    subs = [Subscriber(lab, "ws", heartbeat_s=None, base_s=base_s, cap_s=cap_s, jitter=jitter,
                       seed=rng.randrange(2**32), name=f"c{i}") for i in range(clients)]
    try:
        for sub in subs:
            sub.start(down_s + after_s + 30)
        _wait(lambda: all(s.connects >= 1 for s in subs), 30.0)
        stopped = time.time()
        restart_with_downtime(lab, down_s)
        _wait(lambda: all(s.connects >= 2 for s in subs), after_s)
    finally:
        stop_all(subs)
        _ensure_running(lab)  # interrupted while the lab was down: start it again
    rows = [{"t_s": t - stopped, "client": s.name, "jitter": jitter, "what": what}
            for s in subs for what, times in (("started", s.attempt_starts),
                                              ("finished", s.attempts))
            for t in times if t >= stopped]
    frame = pd.DataFrame(rows, columns=["t_s", "client", "jitter", "what"])
    frame.attrs["reconnected"] = sum(s.connects >= 2 for s in subs)
    frame.attrs["clients"] = clients
    return frame


def attempts_per_bin(frame, bin_s: float = 0.1, what: str = "started"):
    """Connection attempts per `bin_s` window, per jitter setting (a tidy frame for a plot), from
    the attempts that `what` ("started" or "finished") in each window."""
    import pandas as pd

    if "what" in frame:
        frame = frame[frame["what"] == what]
    out = frame.assign(bin_s=(frame["t_s"] // bin_s) * bin_s)
    counts = out.groupby(["jitter", "bin_s"]).size().rename("attempts").reset_index()
    return pd.DataFrame(counts)


def herd_summary(storms, bin_s: float = 0.1):
    """One row per (run, jitter) of `herd_runs`' frame: attempts started in all, the busiest
    `bin_s` window of attempts started and of attempts finished."""
    import pandas as pd

    rows = []
    group_keys = ["run", "jitter"] if "run" in storms else ["jitter"]
    for key, part in storms.groupby(group_keys, sort=False):
        run, jitter = key if len(group_keys) == 2 else (0, key[0])
        started = part[part["what"] == "started"]
        finished = part[part["what"] == "finished"]
        rows.append({"run": run, "jitter": jitter, "clients": part["client"].nunique(),
                     "attempts": len(started),
                     "peak_started": _peak(started["t_s"], bin_s),
                     "peak_finished": _peak(finished["t_s"], bin_s)})
    return pd.DataFrame(rows)


def _peak(times, bin_s: float) -> int:
    """Most of `times` (s) in one `bin_s` window (0 for none)."""
    return int((times // bin_s).value_counts().max()) if len(times) else 0


def herd_runs(lab, clients: int = 300, *, runs: int = 1, down_s: float = 1.0,
              after_s: float = 4.0, jitters=("none", "full"), progress=None):
    """`runs` pairs of storms (each jitter setting in turn, same clients and seeds per run), one
    frame with a `run` column. `progress`: a tqdm bar to advance after each storm."""
    import pandas as pd

    frames = []
    for run in range(runs):
        for jitter in jitters:
            frame = herd_run(lab, clients, jitter=jitter, down_s=down_s, after_s=after_s,
                             seed=1 + run)
            frames.append(frame.assign(run=run))
            if progress is not None:
                progress.update(1)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["clients"] = clients
    return out


def herd_text(summary, clients: int, bin_s: float = 0.1) -> str:
    """What the storms showed, in words computed from `herd_summary` (peaks and totals)."""
    by = summary.pivot(index="run", columns="jitter")
    ratio = by["peak_started"]["none"] / by["peak_started"]["full"].clip(lower=1)
    more = by["attempts"]["full"] / by["attempts"]["none"].clip(lower=1) - 1
    ratio_done = by["peak_finished"]["none"] / by["peak_finished"]["full"].clip(lower=1)
    runs = len(by)

    def span(values, fmt: str) -> str:
        lo, hi = values.min(), values.max()
        return format(lo, fmt) if runs == 1 or format(lo, fmt) == format(hi, fmt) else \
            f"{format(lo, fmt)} to {format(hi, fmt)}"

    window = f"{bin_s * 1000:.0f} ms"
    more_text = (f"{span(more * 100, '.0f')} % more attempts in all" if more.min() >= 0 else
                 f"{span(more * 100, '+.0f')} % attempts in all")
    return (f"{clients} clients, {runs} run(s) of each storm. Busiest {window} of attempts "
            f"started: {span(by['peak_started']['none'], '.0f')} without jitter, "
            f"{span(by['peak_started']['full'], '.0f')} with full jitter (peak without ÷ peak with: "
            f"{span(ratio, '.1f')}×). Full jitter made {more_text} "
            f"({span(by['attempts']['none'], '.0f')} vs {span(by['attempts']['full'], '.0f')}): "
            "its delays are on average half as long, so clients try more often while the server "
            "is down, but not at the same instants. Counted when the attempts finished (connected "
            f"or refused) instead of started, the peak ratio is {span(ratio_done, '.1f')}×.")


# -- epochs, idempotency, fallback ----------------------------------------------------------------
def epoch_run(lab, transport: str = "ws", events: int = 20, rate_hz: float = 100.0) -> dict:
    """A subscriber reads `events`, the lab restarts (its history is gone), `events` more are
    published. Returns the resyncs, and whether every delivered event belongs to the epoch it was
    read in, in order, with no old event, gap or duplicate: the `events` published after it
    connected in the old history, SEQs 1..events in the new one."""
    sub = Subscriber(lab, transport, heartbeat_s=1.0, base_s=0.05, cap_s=0.5, seed=3,
                     name=transport).start(60)
    try:
        _wait(lambda: sub.connects >= 1, 10.0)
        time.sleep(SETTLE_S)
        start = _source(lab)["last_seq"]  # this history may hold events of earlier runs
        before = _publish(lab, events, rate_hz)
        _wait(lambda: sub.last_seq == before["last_seq"], 10.0)
        lab.restart()
        after = _publish(lab, events, rate_hz)
        _wait(lambda: sub.epoch == after["epoch"] and sub.last_seq == after["last_seq"], 10.0)
    finally:
        sub.stop()
    by_epoch: dict[str, list[int]] = {}
    for epoch, seq, *_ in sub.delivered:
        by_epoch.setdefault(epoch, []).append(seq)
    expected = list(range(1, events + 1))
    return {"transport": transport, "epochs": list(by_epoch), "resyncs": sub.resyncs,
            "old_epoch_ok": by_epoch.get(before["epoch"]) == [start + n for n in expected],
            "new_epoch_ok": by_epoch.get(after["epoch"]) == expected,
            "duplicates_delivered": sub.duplicates_delivered, "gaps": sub.gaps}


def retry_post_run(lab, with_key: bool, timeout_s: float = 0.5, net=None) -> dict:
    """A client POSTs a note; the answer is lost on the way back (a blackhole downstream), so it
    times out and retries on a new connection. Returns notes created and the answers seen.

    The notes are counted by a mark of this run in their body, so classmates' notes on a class
    server (where the notes are shared) are not counted."""
    import uuid

    import requests

    before = requests.get(lab.url + "/api/notes", timeout=10).json()["total"]
    headers = {"Idempotency-Key": f'"{uuid.uuid4()}"'} if with_key else {}
    mark = uuid.uuid4().hex[:12]
    body = {"title": "pay the rent", "body": f"sent once, retried after a timeout ({mark})"}
    outcomes = []
    with _netem(lab, net) as net:
        net.toxic("timeout", direction="down")
        try:
            requests.post(net.url() + "/api/notes", json=body, headers=headers, timeout=timeout_s)
            outcomes.append("answered")
        except requests.RequestException:
            outcomes.append("timed out")
        net.clear()
        retry = requests.post(net.url() + "/api/notes", json=body, headers=headers, timeout=10)
        replayed = " (replayed)" if "Idempotent-Replayed" in retry.headers else ""
        outcomes.append(f"{retry.status_code}{replayed}")
    return {"idempotency_key": with_key, "attempts": outcomes,
            "notes_created": _notes_marked(lab, mark, max(0, before - NOTES_PAGE))}


NOTES_PAGE = 100
"""Notes per page when counting a run's notes (the API's largest page)."""


def _notes_marked(lab, mark: str, offset: int) -> int:
    """Notes from about `offset` on (notes are listed by id; a page of slack before it, in case
    others' notes were deleted meanwhile) whose body holds `mark`."""
    import requests

    page, count = offset // NOTES_PAGE + 1, 0
    while True:
        reply = requests.get(lab.url + "/api/notes", params={"page": page, "per_page": NOTES_PAGE},
                             timeout=10).json()
        count += sum(mark in (note.get("body") or "") for note in reply["items"])
        if page >= reply["pages"]:
            return count
        page += 1


def fallback_run(lab, seconds: float = 3.0, rate_hz: float = 20.0, net=None) -> dict:
    """Behind a proxy that refuses WebSocket upgrades, an "auto" client falls back to SSE; a long
    poller and a direct WebSocket read the same events. Returns the fallback steps and a frame
    of staleness per path (ms, received minus published, same machine clock)."""
    import pandas as pd

    with _netem(lab, net) as net:
        net.toxic("refuse_upgrade")
        subs = [Subscriber(net.url(), "auto", name="auto (behind the proxy)"),
                Subscriber(net.url(), "long_poll", name="long poll (behind the proxy)"),
                Subscriber(lab, "ws", name="WebSocket (direct)")]
        try:
            for sub in subs:
                sub.start(seconds + 10)
            _wait(lambda: all(s.connects >= 1 for s in subs), 10.0)
            time.sleep(SETTLE_S)
            _publish(lab, max(1, round(seconds * rate_hz)), rate_hz)
            time.sleep(SETTLE_S)
        finally:
            stop_all(subs)
    rows = [{"client": s.name, "transport": via, "staleness_ms": (recv - ts) * 1000.0}
            for s in subs for _, _, ts, recv, via in s.delivered]
    return {"fallbacks": subs[0].fallbacks, "settled_on": subs[0].used,
            "staleness": pd.DataFrame(rows, columns=["client", "transport", "staleness_ms"])}


# -- slow consumers ----------------------------------------------------------------------------------
RECEIVE_BUFFER = 4096
"""SO_RCVBUF (bytes) of the stalling reader's socket: a small receive window, as on a thin link, so
that the lab's small feed events back up at the server instead of in this machine's kernel."""


async def _stall_then_read(url: str, stall_s: float) -> dict:
    import socket
    from urllib.parse import urlsplit

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    seqs = []
    async with connect(url, sock=sock, compression=None, max_queue=1, max_size=2**20,
                       ping_interval=None) as conn:
        await asyncio.sleep(stall_s)  # stops reading: the server's queue for it fills
        try:
            while True:
                message = json.loads(await asyncio.wait_for(conn.recv(), 5))
                if "seq" in message:
                    seqs.append(message["seq"])
        except (ConnectionClosed, TimeoutError):
            pass
    return {"seqs": seqs, "close_code": conn.close_code, "close_reason": conn.close_reason}


def slow_consumer_run(lab, messages: int = 3000, size: int = 450) -> dict:
    """A WebSocket member of the chat room posts `messages` texts of `size` characters as fast as
    it can and reads nothing meanwhile, so it is a slow consumer of the room's echo (the lab's
    rate limit must allow the burst: lk.start(chat_rate=..., chat_burst=...)). When it falls
    `queue_limit` messages behind, the room drops its queue (memory stays bounded) and closes it
    with 1008 naming the SEQ to resume from. It reads what had reached it before the close, then
    resumes with one REST poll after the last SEQ it really got (and the epoch): it gets the rest,
    or, if it fell further behind than the room's history, a 410 that says what it missed.

    Returns what it got, the close, the room's counters and the resume."""
    import uuid
    from urllib.parse import urlencode

    from labkit.clients.chat import _flood, run_or_cancel
    from labkit.clients.feed import target_url

    url = target_url(lab, "ws") + "/ws/chat?" + urlencode({"name": f"slow-{uuid.uuid4().hex[:6]}"})
    room = hub_stats(lab)["topics"].get("chat", {})
    start = room.get("last_seq", 0)
    dropped_before = room.get("counters", {}).get("ws", {}).get("dropped", 0)
    texts = [f"{n:05d} " + "x" * max(0, size - 6) for n in range(messages)]
    first = run_or_cancel(_flood(url, texts, None, 3.0), 90)
    room = hub_stats(lab)["topics"]["chat"]
    got = [seq for seq in first["seqs"] if seq > start]
    last_got = got[-1] if got else start
    status, body = _loop.run(_get(lab, f"/api/chat/messages?since={last_got}&epoch={room['epoch']}"),
                             30)
    after = [e["seq"] for e in body] if status == 200 else []
    return {"sent": first["sent"], "published": room["last_seq"] - start,
            "received_before_close": len(got), "close_code": first["close_code"],
            "close_reason": first["close_reason"], "queue_limit": room["queue_limit"],
            "dropped": room["counters"]["ws"]["dropped"] - dropped_before,
            "resumed_from": last_got, "resume_status": status,
            "received_after_resume": len(after), "missed": body.get("missed") if status == 410 else 0,
            "complete_in_order": got + after == list(range(start + 1, room["last_seq"] + 1))}


async def _get(lab, path: str) -> tuple[int, object]:
    from labkit.clients.feed import http_session, target_url

    base = target_url(lab)
    async with http_session(base) as session, session.get(base + path) as resp:
        return resp.status, await resp.json(content_type=None)


# -- delivery semantics and chaos -------------------------------------------------------------------
def _cut_randomly(subs, seconds: float, every_s: float, share: float, rng: random.Random) -> int:
    """Every `every_s` seconds cut the connections of a random `share` of `subs`; returns cuts."""
    cuts = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(every_s)
        for sub in rng.sample(subs, max(1, round(share * len(subs)))):
            sub.cut()
            cuts += 1
    return cuts


def semantics_run(lab, events: int = 300, rate_hz: float = 100.0, cut_every_s: float = 0.4,
                  seed: int = 4):
    """Three readers of the same feed, one per delivery semantics, cut at the same moments.
    One row per mode: published, delivered to the app, lost, duplicates delivered. `frame.attrs`:
    first_seq and last_seq (the SEQs the run published) and delivered (mode -> the SEQs that
    reader handed to its app, in order), to count losses and repeats from."""
    import pandas as pd

    modes = ("at_most_once", "at_least_once", "effectively_once")
    subs = [Subscriber(lab, "ws", mode=m, heartbeat_s=None, base_s=0.02, cap_s=0.2,
                       checkpoint_every=10, seed=seed, name=m) for m in modes]
    try:
        for sub in subs:
            sub.start(events / rate_hz + 30)
        _wait(lambda: all(s.connects >= 1 for s in subs), 10.0)
        time.sleep(SETTLE_S)
        first = _source(lab)["last_seq"] + 1
        set_source(lab, rate_hz, ticks=events, seed=seed)
        cuts = _cut_randomly(subs, events / rate_hz, cut_every_s, 1.0, random.Random(seed))
        last = _wait_source_done(lab)
        _wait(lambda: all(s.last_seq == last for s in subs[1:]), 10.0)
        time.sleep(SETTLE_S)
    finally:
        stop_all(subs)
    rows = []
    for sub in subs:
        seqs = [seq for _, seq, *_ in sub.delivered if seq >= first]
        unique = set(seqs)
        rows.append({"mode": sub.mode, "published": last - first + 1, "delivered": len(seqs),
                     "unique": len(unique), "lost": (last - first + 1) - len(unique),
                     "duplicates_delivered": len(seqs) - len(unique), "cuts": cuts // len(subs)})
    frame = pd.DataFrame(rows)
    frame.attrs.update(first_seq=first, last_seq=last,
                       delivered={sub.mode: [seq for _, seq, *_ in sub.delivered if seq >= first]
                                  for sub in subs})
    return frame


def _wait_source_done(lab, limit_s: float = 60.0) -> int:
    _wait(lambda: not _source(lab)["running"], limit_s, 0.1)
    return _source(lab)["last_seq"]


@dataclasses.dataclass
class ChaosResult:
    """Per-subscriber outcome of `chaos_run` (`frame`) and what was done to them."""

    frame: pd.DataFrame
    published: dict
    restarts: int
    cuts: int
    subscribers: list[Subscriber] = dataclasses.field(default_factory=list, repr=False, compare=False)
    """The readers themselves (their counters and what each one delivered)."""

    @property
    def all_ok(self) -> bool:
        return bool(self.frame["ok"].all())


def chaos_run(lab, subscribers: int = 200, restarts: int = 3, seconds: float = 20.0,
              rate_hz: float = 40.0, transports=("ws", "sse", "long_poll"), dedup: bool = True,
              cut_every_s: float = 0.25, cut_share: float = 0.05, seed: int = 7,
              progress: bool = False) -> ChaosResult:
    """`subscribers` readers (transports in turn) while the lab restarts `restarts` times and random
    connections are cut, for about `seconds`. Each phase between restarts publishes its events;
    before a restart the readers get a few seconds to catch up (history is lost in a restart).

    Per subscriber: for every epoch, were the SEQs delivered to the app exactly 1..published, in
    order, with no duplicate? `dedup=False` switches the readers' de-duplication off (they resume
    from a checkpoint every 10 events, so the wire does repeat events)."""
    import pandas as pd

    rng = random.Random(seed)
    subs = [Subscriber(lab, transports[i % len(transports)], heartbeat_s=2.0, base_s=0.05,
                       cap_s=1.0, seed=rng.randrange(2**32), dedup=dedup, name=f"s{i}")
            for i in range(subscribers)]
    phases = restarts + 1
    bar = _bar(phases, "chaos phases") if progress else None
    try:
        published, cuts, first_seq = _chaos_phases(lab, subs, phases, seconds, rate_hz,
                                                   cut_every_s, cut_share, seed, rng, bar)
    finally:  # also when interrupted (the kernel's stop button): no subscriber stays connected
        stop_all(subs)
        if bar is not None:
            bar.close()
        _ensure_running(lab)
    rows = []
    for sub in subs:
        by_epoch: dict[str, list[int]] = {}
        for epoch, seq, *_ in sub.delivered:
            by_epoch.setdefault(epoch, []).append(seq)
        delivered = sum(len(v) for v in by_epoch.values())
        exact = all(by_epoch.get(e) == list(range(first_seq.get(e, 1), n + 1))
                    for e, n in published.items())
        rows.append({"subscriber": sub.name, "transport": sub.transport,
                     "published": sum(n - first_seq.get(e, 1) + 1 for e, n in published.items()),
                     "delivered": delivered,
                     "in_order": all(v == sorted(v) for v in by_epoch.values()),
                     "duplicates_delivered": sub.duplicates_delivered,
                     "duplicates_dropped": sub.duplicates_seen - sub.duplicates_delivered,
                     "resyncs": sub.resyncs, "gaps": sub.gaps, "connects": sub.connects,
                     "ok": exact and sub.duplicates_delivered == 0})
    return ChaosResult(pd.DataFrame(rows), published, restarts, cuts, subscribers=subs)


def _chaos_phases(lab, subs, phases: int, seconds: float, rate_hz: float, cut_every_s: float,
                  cut_share: float, seed: int, rng: random.Random, bar):
    """Start `subs`, then each phase: publish, cut at random, let the readers catch up, restart
    the lab (not after the last). Returns (published per epoch, cuts, first SEQ per epoch)."""
    for sub in subs:
        sub.start(seconds * 3 + 60)
    _wait(lambda: all(s.connects >= 1 for s in subs), 30.0)
    time.sleep(SETTLE_S)
    before = _source(lab)  # events of this epoch published before the run are not expected
    first_seq = {before["epoch"]: before["last_seq"] + 1}
    per_phase = max(1, round(seconds / phases * rate_hz))
    published: dict[str, int] = {}
    cuts = 0
    for phase in range(phases):
        set_source(lab, rate_hz, ticks=per_phase, seed=seed + phase)
        cuts += _cut_randomly(subs, per_phase / rate_hz, cut_every_s, cut_share, rng)
        _wait(lambda: not _source(lab)["running"], 30.0, 0.1)
        state = _source(lab)
        published[state["epoch"]] = state["last_seq"]
        _wait(lambda st=state: all(s.epoch == st["epoch"] and s.last_seq == st["last_seq"]
                                   for s in subs), 15.0, 0.1)
        if phase < phases - 1:
            lab.restart()
        if bar is not None:
            bar.update(1)
    return published, cuts, first_seq


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
