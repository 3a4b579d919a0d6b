"""Simulated IoT devices for lesson 09: telemetry up three ways, commands down two ways.

- `telemetry(lab, mode, devices, readings)`: every device sends `readings` values as one POST per
  reading ("rest"), one POST per batch ("batch") or over its own WebSocket ("ws"), through a wire
  tap, so the row says what it cost: requests, TCP connections, bytes per reading on the wire (HTTP /
  WebSocket bytes, not TCP/IP headers) and the server thread's CPU per reading.
- `command_latency(lab, mode, devices, commands, poll_s)`: an operator sends commands; devices
  learn them by polling every `poll_s` ("poll") or because the server pushes them ("ws"). One row
  per command and device: the delay from the operator's POST to the device's hands.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp
from websockets.asyncio.client import connect

from ._target import base_url
from .game import run_interruptible

MODES = ("rest", "batch", "ws")
MAX_DEVICES = 500
BATCH = 50


async def _stats(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/api/iot/stats") as reply:
        return await reply.json()


async def _device_rest(session, url, device, values, mode, sent: list[int]):
    if mode == "rest":
        for value in values:
            async with session.post(f"{url}/api/iot/readings", json={"device": device, "value": value}) as r:
                r.raise_for_status()
            sent[0] += 1
    else:
        for i in range(0, len(values), BATCH):
            async with session.post(f"{url}/api/iot/readings/batch",
                                    json={"device": device, "values": values[i:i + BATCH]}) as r:
                r.raise_for_status()
            sent[0] += len(values[i:i + BATCH])


async def _device_ws(ws_url, device, values, sent: list[int]):
    async with connect(f"{ws_url}/ws/iot?device={device}", compression=None) as ws:
        json.loads(await ws.recv())
        for value in values:
            await ws.send(json.dumps({"value": value}))
            sent[0] += 1


def exchanges(tap):
    """The tap's traffic as exchanges for a TCP/IP packet model: one row per HTTP request with its
    answer (bytes_up, bytes_down) and per WebSocket frame (one direction), `new_connection` on each
    connection's first exchange (the columns `labkit.lessons.latency.tcp_ip_bytes` reads)."""
    import pandas as pd

    from labkit.net.proxy import UP

    rows: list[dict] = []
    http = tap.http_messages().sort_values(["conn", "t_ns"])
    for conn, messages in http.groupby("conn", sort=False):
        pending: dict | None = None
        for direction, t_ns, size in zip(messages["direction"], messages["t_ns"], messages["wire_bytes"],
                                         strict=True):
            if direction == UP:
                if pending is not None:  # a request with no answer recorded
                    rows.append(pending)
                pending = {"conn": conn, "t_ns": t_ns, "bytes_up": int(size), "bytes_down": 0}
            else:
                row = pending or {"conn": conn, "t_ns": t_ns, "bytes_up": 0, "bytes_down": 0}
                rows.append({**row, "bytes_down": int(size)})
                pending = None
        if pending is not None:
            rows.append(pending)
    frames = tap.frames()
    for conn, direction, t_ns, size in zip(frames["conn"], frames["direction"], frames["t_ns"],
                                           frames["wire_bytes"], strict=True):
        up = direction == UP
        rows.append({"conn": conn, "t_ns": t_ns, "bytes_up": int(size) if up else 0,
                     "bytes_down": 0 if up else int(size)})
    frame = pd.DataFrame(rows, columns=["conn", "t_ns", "bytes_up", "bytes_down"])
    frame = frame.sort_values(["conn", "t_ns"], kind="stable").reset_index(drop=True)
    frame["new_connection"] = ~frame["conn"].duplicated()
    return frame


def telemetry(lab, mode: str, devices: int = 20, readings: int = 20, *, packet_model=None,
              progress=None) -> dict:
    """Run `devices` devices sending `readings` readings each in `mode`; one summary row.

    `packet_model`: a function that adds a `tcp_ip_bytes` column to `exchanges(tap)` (lesson 03's
    `labkit.lessons.latency.tcp_ip_bytes`); with it the row also holds tcp_ip_bytes_per_reading
    (the model's packet headers, ACKs and connection set-up and teardown) and
    bytes_with_tcp_ip_per_reading (the measured bytes plus those). `progress` (e.g. `print`) gets
    a line every 2 s while it runs."""
    from labkit.net.wire import tap as wire_tap

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    devices = max(1, min(devices, MAX_DEVICES))
    direct = base_url(lab)
    tap = wire_tap(lab)
    url, ws_url = base_url(tap.url()), base_url(tap.url("ws"))
    sent_so_far = [0]

    def report() -> None:
        if progress is not None:
            progress(f"{mode}: {sent_so_far[0]} of {devices * readings} readings sent")

    async def _run():
        async with aiohttp.ClientSession() as control:
            before = await _stats(control, direct)
            limit = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=limit) as session:
                values = [[20.0 + (d + i) % 7 * 0.5 for i in range(readings)] for d in range(devices)]
                jobs = [_device_ws(ws_url, f"dev{d}", values[d], sent_so_far) if mode == "ws"
                        else _device_rest(session, url, f"dev{d}", values[d], mode, sent_so_far)
                        for d in range(devices)]
                await asyncio.gather(*jobs)
            expected = before["readings"][mode] + devices * readings
            deadline = time.monotonic() + 10
            after = await _stats(control, direct)
            while after["readings"][mode] < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # WebSocket readings are fire and forget: wait for them
                after = await _stats(control, direct)
        return before, after

    try:
        before, after = run_interruptible(_run(), 120, progress=report)
        tap.settle()
        totals = tap.totals()
        packets = packet_model(exchanges(tap)) if packet_model is not None else None
    finally:
        tap.stop()
    sent = devices * readings
    received = after["readings"][mode] - before["readings"][mode]
    cpu_s = after["server_thread_cpu_s"] - before["server_thread_cpu_s"]
    row = {"mode": mode, "devices": devices, "readings_sent": sent, "readings_stored": received,
           "requests": after["requests"][mode] - before["requests"][mode],
           "connections": totals["connections"],
           "bytes_per_reading": (totals["bytes_up"] + totals["bytes_down"]) / sent,
           "bytes_up_per_reading": totals["bytes_up"] / sent,
           "server_cpu_us_per_reading": cpu_s * 1e6 / sent}
    if packets is not None:
        tcp_ip = float(packets["tcp_ip_bytes"].sum())
        row["tcp_ip_bytes_per_reading"] = tcp_ip / sent
        row["bytes_with_tcp_ip_per_reading"] = row["bytes_per_reading"] + tcp_ip / sent
    return row


def command_latency(lab, mode: str, devices: int = 10, commands: int = 5, poll_s: float = 0.5,
                    seed: int = 1, progress=None):
    """Send `commands` commands to each of `devices` devices that poll every `poll_s` or hold a
    WebSocket; one row per (device, command): delay_ms from the operator's POST to the device.
    Commands leave at random moments (seeded), so they fall anywhere in a poll interval.
    `progress` (e.g. `print`) gets a line every 2 s while it runs."""
    import pandas as pd

    if mode not in ("poll", "ws"):
        raise ValueError("mode must be 'poll' or 'ws'")
    url, ws_url = base_url(lab), base_url(lab, "ws")
    tag = f"{int(time.time() * 1000) % 10**8}"
    names = [f"cmd{tag}-{d}" for d in range(min(devices, MAX_DEVICES))]

    async def _poller(session, device, start_seq, got, stop):
        since = start_seq
        while not stop.is_set():
            async with session.get(f"{url}/api/iot/devices/{device}/commands?since={since}") as r:
                for event in await r.json():
                    got.append((device, event["data"]["command"], time.time()))
                    since = event["seq"]
            await asyncio.sleep(poll_s)

    async def _listener(device, got, ready, stop):
        async with connect(f"{ws_url}/ws/iot?device={device}", compression=None) as ws:
            json.loads(await ws.recv())
            ready.release()
            while not stop.is_set():
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                if "data" in msg:
                    got.append((device, msg["data"]["command"], time.time()))

    state: dict = {"got": [], "sent": {}}

    async def _run():
        got, sent, stop, rng = state["got"], state["sent"], asyncio.Event(), random.Random(seed)
        tasks: list[asyncio.Task] = []
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                return await _commands(session, got, sent, stop, rng, tasks)
        finally:  # also when interrupted: every device's socket closes
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _commands(session, got, sent, stop, rng, tasks):
        if mode == "poll":
            starts = []
            for device in names:
                async with session.get(f"{url}/api/iot/devices/{device}/commands") as r:
                    events = await r.json()
                    starts.append(events[-1]["seq"] if events else 0)
            tasks += [asyncio.create_task(_poller(session, d, s, got, stop))
                      for d, s in zip(names, starts, strict=True)]
        else:
            ready = asyncio.Semaphore(0)
            tasks += [asyncio.create_task(_listener(d, got, ready, stop)) for d in names]
            for _ in names:
                await ready.acquire()
        for c in range(commands):
            for device in names:
                command = f"set-{c}"
                sent[(device, command)] = time.time()
                async with session.post(f"{url}/api/iot/devices/{device}/commands",
                                        json={"command": command}) as r:
                    r.raise_for_status()
            await asyncio.sleep(rng.uniform(0.05, 0.05 + poll_s))
        deadline = time.monotonic() + poll_s + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [{"mode": mode, "device": d, "command": c, "delay_ms": (t - sent[(d, c)]) * 1000}
                for d, c, t in got if (d, c) in sent]

    def report() -> None:
        if progress is not None:
            progress(f"{mode}: {len(state['got'])} of {len(state['sent']) or '…'} commands delivered")

    rows = run_interruptible(_run(), commands * (poll_s + 1) + poll_s + 30, progress=report)
    return pd.DataFrame(rows, columns=["mode", "device", "command", "delay_ms"])
