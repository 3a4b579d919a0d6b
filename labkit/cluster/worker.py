"""One worker process of a cluster: `python -m labkit.cluster.worker --id N --db FILE ...`.

It runs the same `make_app` as `lk.start()` on its own loopback port (printed as the first line of
stdout, so the parent learns it), tagged as worker N, optionally bridged to Redis. It stops on
SIGTERM / SIGINT and when its stdin reaches EOF: the parent holds the other end of that pipe, and
the operating system closes it when the parent ends for any reason (even SIGKILL), so a worker
never outlives the kernel that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux only: have the kernel send SIGTERM to this process when its parent thread ends
    (`prctl(PR_SET_PDEATHSIG)`); elsewhere nothing (the stdin pipe still stops workers)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


WORKER_MAX_CONNECTIONS = 16384
"""A worker's connection cap before the open-file limit lowers it: above the lab's 4,096, so lesson
06 can hold thousands of idle sockets on one worker (its only peer is the front door, whose own
cap and per-peer share guard the cluster from outside)."""


def shared_topics() -> dict[str, dict]:
    """The topics a cluster shares through Redis: the feed and the chat room, each with its own
    history limit (the route families decide; the backplane only carries what it is given)."""
    from labkit.routes.chat import HISTORY_LIMIT as CHAT_HISTORY
    from labkit.routes.chat import TOPIC as CHAT
    from labkit.routes.feed import TOPIC as FEED

    return {FEED: {}, CHAT: {"history_limit": CHAT_HISTORY}}


async def serve(args: argparse.Namespace) -> None:
    from labkit.routes import workers
    from labkit.server.app import make_app
    from labkit.server.config import LabConfig, parse_limits
    from labkit.server.guard import serve_app
    from labkit.streaming import backplane

    limits = {"max_connections": WORKER_MAX_CONNECTIONS, **parse_limits(args.limit),
              "per_peer_share": 1.0}
    config = LabConfig(host=args.host, port=0, db=args.db, **limits)
    app = make_app(config)
    workers.configure(app, args.id, args.cluster_file, args.backplane, args.balance)
    if args.backplane:
        backplane.use_redis(app, args.backplane, shared_topics())
    served = await serve_app(app, args.host, 0, config=config)
    print(served.port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stdin = sys.stdin.fileno()

    def parent_gone() -> None:
        try:
            data = os.read(stdin, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(stdin)
            stop.set()

    loop.add_reader(stdin, parent_gone)
    await stop.wait()
    await served.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.cluster.worker")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cluster-file", default=None)
    parser.add_argument("--backplane", default=None)
    parser.add_argument("--balance", default=None)
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="a connection limit, as `labkit serve --limit` (the per-peer share "
                             "stays off: a worker's only peer is the front door)")
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
