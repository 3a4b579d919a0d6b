"""A class on one server, bounded: N simulated students in other processes join one classroom server's
chat room over WebSocket; students take turns to send M messages; every student must receive every
message. Prints delivery delay (send -> each receiver) p50/p90/p99/max over all deliveries, and errors.

    .venv/bin/python benchmarks/classroom_load.py                 # 200 students in 4 processes
    .venv/bin/python benchmarks/classroom_load.py --students 60 --processes 2 --messages 20

The server is `labkit serve --classroom` in its own process on 127.0.0.1; nothing leaves loopback.
Every process uses this machine's clock, so delays need no clock correction. Counts and time are
bounded (a deadline per phase); tests/test_classroom_load.py runs the same code with a smaller class.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

TOKEN, INSTRUCTOR = "load-student-token", "load-instructor-token"
GAP_S = 0.05
"""Time between two messages of the room (20 messages per second in all, each from another student)."""
JOIN_TIMEOUT_S = 60.0
TAIL_S = 10.0
"""How long receivers wait for the last message after it was sent."""


def start_server() -> tuple[subprocess.Popen, str]:
    """`labkit serve --classroom` on 127.0.0.1, port 0; returns the process and its ws:// base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit.cli", "serve", "--classroom", "--host", "127.0.0.1",
         "--token", TOKEN, "--instructor-token", INSTRUCTOR],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("the classroom server did not start")
    return proc, "ws" + url.split("/?")[0][4:]


async def _students(base: str, names: list[str], senders: dict[int, str], messages: int, conn) -> dict:
    from websockets.asyncio.client import connect

    errors: list[str] = []
    delays: list[float] = []
    received = {name: set() for name in names}
    sockets = {}
    import aiohttp

    http_base = "http" + base[2:]
    async with aiohttp.ClientSession() as http:
        personal = {}
        for name in names:  # each student's kernel exchanges the join code for its own identity
            try:
                async with http.post(f"{http_base}/api/classroom/join",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as reply:
                    personal[name] = (await reply.json())["token"]
            except Exception as exc:  # noqa: BLE001 - counted, reported
                errors.append(f"join code {name}: {type(exc).__name__}: {exc}")
    for name in names:
        if name not in personal:
            continue
        try:
            sockets[name] = await connect(f"{base}/ws/chat?name={name}", compression=None,
                                          additional_headers={"Authorization":
                                                              f"Bearer {personal[name]}"},
                                          open_timeout=JOIN_TIMEOUT_S)
            await sockets[name].recv()  # welcome
        except Exception as exc:  # noqa: BLE001 - counted, reported
            errors.append(f"join {name}: {type(exc).__name__}: {exc}")
    conn.send(("ready", len(sockets)))
    start = conn.recv()
    deadline = start + messages * GAP_S + TAIL_S

    async def read(name, ws):
        try:
            while len(received[name]) < messages:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.time()))
                now = time.time()
                msg = json.loads(raw)
                if msg.get("type") != "message":
                    if msg.get("type") == "error":
                        errors.append(f"{name}: {msg.get('detail')}")
                    continue
                number, sent = msg["data"]["text"].split("|")
                received[name].add(int(number))
                delays.append((now - float(sent)) * 1000.0)
        except Exception as exc:  # noqa: BLE001 - a receiver that misses messages is an error
            errors.append(f"{name} got {len(received[name])}/{messages}: {type(exc).__name__}")

    async def send():
        for number in sorted(senders):
            await asyncio.sleep(max(0.0, start + number * GAP_S - time.time()))
            ws = sockets.get(senders[number])
            if ws is not None:
                await ws.send(json.dumps({"type": "message", "text": f"{number}|{time.time():.6f}"}))

    await asyncio.gather(send(), *(read(n, ws) for n, ws in sockets.items()))
    for ws in sockets.values():
        await ws.close()
    missing = sum(messages - len(got) for got in received.values())
    return {"delays": delays, "errors": errors, "missing": missing, "joined": len(sockets)}


def _process(base, names, senders, messages, conn) -> None:
    result = asyncio.run(_students(base, names, senders, messages, conn))
    conn.send(("done", result))
    conn.close()


def run_load(students: int = 200, processes: int = 4, messages: int = 40) -> dict:
    """Run the class once; returns deliveries, delay percentiles (ms), missing and errors."""
    from labkit.measure import summarize

    server, base = start_server()
    ctx = multiprocessing.get_context("spawn")
    names = [f"student-{i:03d}" for i in range(students)]
    groups = [names[p::processes] for p in range(processes)]
    owner = {number: names[(number * 7) % students] for number in range(messages)}
    workers, pipes = [], []
    try:
        for group in groups:
            parent, child = ctx.Pipe()
            mine = {n: who for n, who in owner.items() if who in group}
            proc = ctx.Process(target=_process, args=(base, group, mine, messages, child), daemon=True)
            proc.start()
            workers.append(proc)
            pipes.append(parent)
        joined = 0
        for pipe in pipes:
            if not pipe.poll(JOIN_TIMEOUT_S + 30):
                raise RuntimeError("students did not join in time")
            joined += pipe.recv()[1]
        start = time.time() + 0.5
        for pipe in pipes:
            pipe.send(start)
        results = []
        for pipe in pipes:
            if not pipe.poll(messages * GAP_S + TAIL_S + 30):
                raise RuntimeError("students did not finish in time")
            results.append(pipe.recv()[1])
    finally:
        for proc in workers:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    delays = [d for r in results for d in r["delays"]]
    return {"students": students, "processes": processes, "messages": messages, "joined": joined,
            "deliveries": len(delays), "expected_deliveries": students * messages,
            "missing": sum(r["missing"] for r in results),
            "errors": [e for r in results for e in r["errors"]], "delay_ms": summarize(delays)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args()
    report = run_load(args.students, args.processes, args.messages)
    d = report["delay_ms"]
    print(f"{report['students']} students in {report['processes']} processes, {report['messages']} "
          f"messages, {os.cpu_count()} cores: {report['deliveries']}/{report['expected_deliveries']} "
          f"deliveries, missing {report['missing']}, errors {len(report['errors'])}")
    print(f"delivery delay ms: p50 {d['median']:.2f}  p90 {d['p90']:.2f}  p99 {d['p99']:.2f}  "
          f"max {d['max']:.2f}  (n={d['n']})")
    for error in report["errors"][:10]:
        print("error:", error)


if __name__ == "__main__":
    main()
