"""The `labkit` command: `serve` (the lab server in the foreground), `doctor` (is this machine ready?)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path


def serve(host: str, port: int, db: str | None) -> int:
    """Run the lab app until Ctrl-C or SIGTERM; print the base URL as the first stdout line."""
    from aiohttp import web

    from .server.app import make_app
    from .server.config import LabConfig
    from .server.runner import STOP_TIMEOUT

    async def _main() -> None:
        workdir = None if db else tempfile.TemporaryDirectory(prefix="labkit-serve-")
        config = LabConfig(host=host, port=port, db=db or str(Path(workdir.name) / "lab.db"))
        runner = web.AppRunner(make_app(config), access_log=None, shutdown_timeout=STOP_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            if workdir is not None:
                workdir.cleanup()
            print(f"labkit serve: cannot bind {host}:{port}: {exc.strerror or exc}. "
                  "Pick another --port (0 picks a free one).", file=sys.stderr)
            raise SystemExit(2) from None
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"http://{shown}:{bound[1]}", flush=True)
        print("labkit lab server running; Ctrl-C to stop", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
        if workdir is not None:
            workdir.cleanup()

    asyncio.run(_main())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the lab server in the foreground")
    p_serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p_serve.add_argument("--db", default=None, help="SQLite file to keep (default: a temporary one)")
    sub.add_parser("doctor", help="check versions, widget front ends and loopback")
    from . import bench

    bench.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.host, args.port, args.db)
    if args.command == "bench":
        return bench.run_from_args(args)
    if args.command == "doctor":
        from .doctor import run_doctor

        return run_doctor()
    return 2


if __name__ == "__main__":
    sys.exit(main())
