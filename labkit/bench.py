"""`labkit bench`: the standard latency suite, written as a CSV, a JSON of the machine and an offline
HTML report.

    labkit bench                    # loopback and 4G, full counts (a few minutes)
    labkit bench --profile wifi --quick --out results/

It starts its own lab server on 127.0.0.1, measures REST (new connection, keep-alive) and WebSocket
round trips on loopback and on the chosen emulated network for a few payload sizes, and writes:

- `latency-<profile>.csv`: the tidy frame of `labkit.lessons.latency.compare_transports`, one row per round
  trip (both profiles);
- `latency-<profile>.json`: machine, versions, date, settings and the summary (n, median, p90, p99,
  IQR) per profile, transport and payload;
- `latency-<profile>.html`: the figures and the summary table in one file with plotly inlined, so
  it opens offline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import TypedDict


class Suite(TypedDict):
    payloads: tuple[int, ...]
    count: int
    warmup: int
    messages: tuple[int, ...]


SUITES: dict[bool, Suite] = {
    # quick: a smoke run (CI, a first look); full: enough round trips for stable tails
    True: {"payloads": (64, 4096), "count": 8, "warmup": 2, "messages": (1, 5)},
    False: {"payloads": (16, 1024, 16384, 65536), "count": 100, "warmup": 5, "messages": (1, 10, 50)},
}

PACKAGES = ("labkit-lessons", "aiohttp", "websockets", "pandas", "plotly", "trustme")
"""Distributions whose versions a report records (labkit's distribution is labkit-lessons)."""


def machine_info() -> dict:
    """Where and with what a run was made: date, OS, CPU, Python and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "os": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }


def _summary_records(frame) -> list[dict]:
    """Per group: n, median, p90, p99 (null below 100 round trips: too few to carry one), IQR."""
    from labkit.lessons.latency import MIN_N_FOR_P99

    from .measure import summary

    table = summary(frame, "rtt_ms", ["profile", "transport", "payload_bytes"])
    table.loc[table["n"] < MIN_N_FOR_P99, "p99"] = float("nan")
    return json.loads(table.to_json(orient="records"))


def _report_html(frame, totals, info: dict, settings: dict) -> str:
    from labkit.lessons.latency import summary

    from .plots import latency as charts

    figures = [
        charts.ecdf(frame, log_x=True),
        charts.by_profile(frame),
        charts.rtt_vs_payload(frame[frame["profile"] == settings["profile"]],
                              title=f"Round trip against message size on {settings['profile']}"),
        charts.waterfall(frame[(frame["profile"] == settings["profile"])
                               & (frame["payload_bytes"] == frame["payload_bytes"].min())],
                         title=f"Where a request's time goes on {settings['profile']}"),
        charts.bytes_per_message(frame[frame["profile"] == settings["profile"]]),
        charts.exchange_curve(totals, title=f"Time to exchange N messages on "
                                            f"{settings['profile']} (lines: model)"),
    ]
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_width="100%")
             for i, fig in enumerate(figures)]
    table = summary(frame, "rtt_ms", ("profile", "transport", "payload_bytes")).round(3)
    meta = html.escape(json.dumps({**info, "settings": settings}, indent=2))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>labkit bench: {html.escape(settings['profile'])}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "</style></head><body>"
        f"<h1>labkit bench: loopback and {html.escape(settings['profile'])}</h1>"
        "<p>Round trips of REST with a new connection per request, REST with keep-alive and "
        "WebSocket, through labkit's network emulator. Times in ms; n, median, p90 and the "
        "interquartile range (IQR) per group, and p99 where every group has at least 100 round "
        "trips (fewer cannot carry a 99th percentile: read p90 and the max).</p>"
        + table.to_html(index=False, border=0)
        + "".join(f"<div>{p}</div>" for p in parts)
        + f"<h2>Machine and settings</h2><pre>{meta}</pre></body></html>"
    )


def run_bench(profile: str = "4g", quick: bool = False, out: str | Path = ".",
              *, progress: bool | None = None) -> dict[str, Path]:
    """Run the suite (loopback + `profile`), write CSV, JSON and HTML into `out`; return paths."""
    import pandas as pd

    from labkit.lessons.latency import compare_transports, exchange_totals, measure_exchange
    from labkit.net.netem import profile as resolve_profile
    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer

    chosen = resolve_profile(profile)
    suite = SUITES[bool(quick)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    profiles = list(dict.fromkeys(["loopback", chosen.name]))
    settings = {"profile": chosen.name, "profile_details": chosen.describe(),
                "profile_source": chosen.source, "profiles": profiles, "quick": bool(quick),
                **{k: list(v) if isinstance(v, tuple) else v for k, v in suite.items()}}
    with LabServer(LabConfig()) as lab:
        frames = [
            compare_transports(lab, profile=name, payloads=suite["payloads"],
                               count=suite["count"], warmup=suite["warmup"], progress=progress)
            for name in profiles
        ]
        frame = pd.concat(frames, ignore_index=True)
        frame.attrs = {}
        chosen_frame = frames[-1]
        totals = pd.concat([
            exchange_totals(chosen_frame),
            measure_exchange(lab, messages=suite["messages"], profile=chosen.name),
        ], ignore_index=True)
    info = machine_info()
    stem = f"latency-{chosen.name}"
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "html": out / f"{stem}.html"}
    frame.to_csv(paths["csv"], index=False)
    record = {**info, "settings": settings,
              "warmup_dropped_per_group": suite["warmup"],
              "setup_ms": chosen_frame.attrs.get("setup_ms", {}),
              "summary_rtt_ms": _summary_records(frame),
              "exchange_totals": json.loads(totals.to_json(orient="records"))}
    paths["json"].write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    paths["html"].write_text(_report_html(frame, totals, info, settings), encoding="utf-8")
    return paths


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `bench` sub-command to an argparse sub-parsers object."""
    from labkit.net.netem import PROFILES

    parser = subparsers.add_parser(
        "bench", help="measure REST vs WebSocket round trips; write CSV, JSON and an HTML report",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--profile", default="4g", choices=[p for p in PROFILES if p != "loopback"]
                        + ["loopback"], help="emulated network besides loopback (default 4g)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--out", default=".", help="folder for the files (default: here)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run `labkit bench` from parsed arguments; prints the files written; exit code."""
    paths = run_bench(args.profile, args.quick, args.out)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m labkit.bench [--profile P] [--quick] [--out DIR]` (same as `labkit bench`)."""
    parser = argparse.ArgumentParser(prog="labkit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
