"""Lesson 09's bank, measured side by side in one run (numbers for this machine; nothing here is a test).

    python benchmarks/bank.py [--n 200]

Printed, as p50 and p99 over n samples each:
  - POST /api/payments answered, and payment to settled balance pushed over the account's WebSocket
    (the provider's decision time is set to 0 ms, so what remains is the bank, the provider's REST
    call, the signed webhook and the push);
  - the cost of an Idempotency-Key on POST /api/payments: with a new key each time vs without;
  - one notes read: REST keep-alive GET vs the same read as a message over /ws/rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aiohttp
from websockets.asyncio.client import connect

import labkit as lk
from labkit.clients import bank
from labkit.measure import percentile


def _row(name: str, values: list[float]) -> None:
    print(f"{name:<52} n={len(values):>5}  p50 {percentile(values, 50):8.3f} ms"
          f"  p99 {percentile(values, 99):8.3f} ms")


async def _payments(lab, account: str, n: int, keyed: bool) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            headers = {"Idempotency-Key": f'"{uuid.uuid4()}"'} if keyed else {}
            started = time.perf_counter_ns()
            async with session.post(f"{lab.url}/api/payments", headers=headers,
                                    json={"account": account, "payee": "bench", "amount": 1}) as r:
                await r.read()
                assert r.status == 201, r.status
            out.append((time.perf_counter_ns() - started) / 1e6)
    return out


async def _reads(lab, n: int) -> tuple[list[float], list[float]]:
    rest, over_ws = [], []
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{lab.url}/api/notes", json={"title": "bench", "body": "x" * 200}) as r:
            nid = (await r.json())["id"]
        async with connect(f"{lab.ws_url}/ws/rest", compression=None) as ws:
            for i in range(n):
                started = time.perf_counter_ns()
                async with session.get(f"{lab.url}/api/notes/{nid}") as r:
                    await r.read()
                rest.append((time.perf_counter_ns() - started) / 1e6)
                started = time.perf_counter_ns()
                await ws.send(json.dumps({"id": i, "method": "GET", "path": f"/api/notes/{nid}"}))
                await ws.recv()
                over_ws.append((time.perf_counter_ns() - started) / 1e6)
    return rest, over_ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="samples per measurement (>= 100 for p99)")
    args = parser.parse_args()
    lab = lk.start()
    bank.configure_provider(lab, decision_ms=0)
    account = bank.open_account(lab, "bench", 100_000_000)["id"]
    bank.pay_and_watch(lab, account, count=20, amount=1)  # warm-up
    frame = bank.pay_and_watch(lab, account, count=args.n, amount=1)
    print(f"lab {lab.url}; {args.n} samples each\n")
    _row("POST /api/payments answered (pending)", frame["rest_ms"].tolist())
    _row("payment to settled balance pushed over WebSocket", frame["screen_ms"].tolist())
    without = asyncio.run(_payments(lab, account, args.n, keyed=False))
    keyed = asyncio.run(_payments(lab, account, args.n, keyed=True))
    _row("POST /api/payments without Idempotency-Key", without)
    _row("POST /api/payments with a new Idempotency-Key", keyed)
    print(f"{'':<52} key / no key at p50: {percentile(keyed, 50) / percentile(without, 50):.2f}×")
    rest, over_ws = asyncio.run(_reads(lab, args.n))
    _row("notes read: REST keep-alive GET", rest)
    _row("notes read: message over /ws/rest", over_ws)
    print(f"{'':<52} WS / REST at p50: {percentile(over_ws, 50) / percentile(rest, 50):.2f}×")
    lab.stop()


if __name__ == "__main__":
    main()
