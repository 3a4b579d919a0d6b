"""The `labkit` command: `serve` (the lab server in the foreground), `doctor` (is this machine ready?)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys


def serve(host: str, port: int, db: str | None, allowed_hosts: tuple[str, ...] = (),
          limits: dict | None = None) -> int:
    """Run the lab app until Ctrl-C or SIGTERM; print the base URL as the first stdout line.

    Without --db the data live in a temporary folder removed at exit; folders that killed runs left
    behind are removed at the next start (`runner.clean_stale_workdirs`)."""
    import shutil

    from labkit.server.app import make_app
    from labkit.server.config import LabConfig
    from labkit.server.guard import serve_app
    from labkit.server.runner import WORKDIR_PREFIX, clean_stale_workdirs, make_workdir

    async def _main() -> None:
        clean_stale_workdirs()
        workdir = None if db else make_workdir(WORKDIR_PREFIX + "serve-")
        db_path = str(workdir / "lab.db") if workdir is not None else db or ""
        config = LabConfig(host=host, port=port, db=db_path,
                           allowed_hosts=tuple(allowed_hosts), **(limits or {}))
        try:
            served = await serve_app(make_app(config), host, port, config=config)
        except OSError as exc:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            print(f"labkit serve: cannot bind {host}:{port}: {exc.strerror or exc}. "
                  "Pick another --port (0 picks a free one).", file=sys.stderr)
            raise SystemExit(2) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL: a stop may come right after it
            loop.add_signal_handler(sig, stop.set)
        shown = f"[{host}]" if ":" in host else host
        print(f"http://{shown}:{served.port}", flush=True)
        print("labkit lab server running; Ctrl-C to stop", file=sys.stderr, flush=True)
        await stop.wait()
        await served.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    asyncio.run(_main())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the lab server in the foreground")
    p_serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p_serve.add_argument("--db", default=None, help="SQLite file to keep (default: a temporary one)")
    p_serve.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                         help="a Host name also served besides loopback ones (DNS-rebinding guard); "
                              "repeatable")
    p_serve.add_argument("--classroom", action="store_true",
                         help="a class server: tokens required, join URL and QR code printed first")
    p_serve.add_argument("--token", action="append", default=[],
                         help="(classroom) a student token; repeat for several (default: generated)")
    p_serve.add_argument("--instructor-token", default=None,
                         help="(classroom) the instructor's token; visible to other users in `ps`: "
                              "prefer --instructor-token-file")
    p_serve.add_argument("--instructor-token-file", default=None, metavar="PATH",
                         help="(classroom) read the instructor's token from PATH, or make one there "
                              "readable only by you (default: ~/.config/labkit/instructor-token)")
    p_serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                         help="(classroom) a browser Origin also accepted on WebSocket routes; repeatable")
    p_serve.add_argument("--tls", action="store_true", help="(classroom) https/wss with the kit's CA")
    p_serve.add_argument("--hub-service", action="store_true",
                         help="(classroom) run as a JupyterHub managed service: address, prefix and "
                              "users come from the hub (instructors/jupyterhub.md)")
    p_serve.add_argument("--hub-instructor-group", default="labkit-instructors", metavar="GROUP",
                         help="(with --hub-service) the hub group whose members are instructors, "
                              "besides the hub's admins (default: labkit-instructors)")
    p_serve.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                         help="a connection limit (max_connections, per_peer_share, head_timeout, "
                              "body_timeout, keepalive_timeout, write_timeout, ws_heartbeat); "
                              "repeatable")
    p_serve.add_argument("--workers", type=int, default=0, metavar="N",
                         help="run N worker processes behind one front door (lesson 06)")
    p_serve.add_argument("--backplane", default=None, metavar="redis[://HOST:PORT]",
                         help="(with --workers) share feed and chat events through Redis")
    p_serve.add_argument("--balance", default="connection", choices=("connection", "sticky"),
                         help="(with --workers) how the front door spreads connections")
    sub.add_parser("doctor", help="check versions, widget front ends and loopback")
    p_copy = sub.add_parser("student-copy", help="write what students get (no instructors/, no "
                            "solutions, no tests) to a new folder")
    p_copy.add_argument("out", metavar="OUT")
    p_clean = sub.add_parser("clean-notebook", help="strip outputs and widget state from notebooks "
                             "(no FILE: stdin to stdout, as a git clean filter)")
    p_clean.add_argument("files", nargs="*", metavar="FILE")
    from labkit.course.grade import add_parser as add_grade_parser

    add_grade_parser(sub)
    from . import bench

    bench.add_parser(sub)
    args = parser.parse_args(argv)
    limits = {}
    if args.command == "serve":
        from labkit.server.config import parse_limits

        try:
            limits = parse_limits(args.limit)
        except ValueError as exc:
            parser.error(str(exc))
    if args.command == "serve" and args.classroom and args.hub_service:
        from labkit.course.hub_service import serve_hub_service

        return serve_hub_service(args.db, instructor_token_file=args.instructor_token_file,
                                 origins=args.allow_origin, limits=limits,
                                 instructor_group=args.hub_instructor_group)
    if args.command == "serve" and args.classroom:
        from labkit.course.classroom import serve_classroom

        return serve_classroom(args.host, args.port, args.db, args.token, args.instructor_token,
                               args.allow_origin, args.tls, limits=limits,
                               instructor_token_file=args.instructor_token_file)
    if args.command == "grade":
        from labkit.course.grade import run_from_args

        return run_from_args(args)
    if args.command == "serve" and args.workers:
        from .cluster import serve as serve_cluster

        return serve_cluster(args.workers, args.backplane, args.balance, args.host, args.port,
                             args.db, limits=limits)
    if args.command == "serve":
        return serve(args.host, args.port, args.db, tuple(args.allow_host), limits)
    if args.command == "bench":
        return bench.run_from_args(args)
    if args.command == "student-copy":
        from labkit.course.student_copy import main as student_copy

        return student_copy([args.out])
    if args.command == "clean-notebook":
        from labkit.course.nbclean import main as clean_notebooks

        return clean_notebooks(args.files)
    if args.command == "doctor":
        from .doctor import run_doctor

        return run_doctor()
    return 2


if __name__ == "__main__":
    sys.exit(main())
