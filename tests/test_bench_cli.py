"""`labkit bench`: argument parsing and a quick run that writes CSV, JSON and an offline report."""

from __future__ import annotations

import argparse
import json
import re

import pandas as pd
import pytest

from labkit import bench
from labkit.lessons.latency import COLUMNS, TRANSPORTS


def test_parser_knows_the_options():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    bench.add_parser(sub)
    args = parser.parse_args(["bench", "--profile", "wifi", "--quick", "--out", "x"])
    assert (args.command, args.profile, args.quick, args.out) == ("bench", "wifi", True, "x")
    assert parser.parse_args(["bench"]).profile == "4g"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--profile", "moon"])


def test_quick_run_writes_csv_json_and_offline_html(tmp_path, capsys):
    assert bench.main(["--profile", "lan", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for kind in ("csv", "json", "html"):
        assert f"{kind}: " in printed
        assert (tmp_path / f"latency-lan.{kind}").is_file()

    frame = pd.read_csv(tmp_path / "latency-lan.csv")
    assert list(frame.columns) == list(COLUMNS)
    suite = bench.SUITES[True]
    assert len(frame) == 2 * len(TRANSPORTS) * len(suite["payloads"]) * suite["count"]
    assert set(frame["profile"]) == {"loopback", "lan"}

    record = json.loads((tmp_path / "latency-lan.json").read_text())
    assert {"date", "os", "cpu", "python", "versions", "settings", "summary_rtt_ms"} <= set(record)
    assert record["versions"]["aiohttp"]
    assert record["settings"]["quick"] is True
    assert len(record["summary_rtt_ms"]) == 2 * len(TRANSPORTS) * len(suite["payloads"])
    assert {"n", "median", "p90", "p99", "iqr"} <= set(record["summary_rtt_ms"][0])
    assert record["versions"]["labkit-lessons"]
    # a quick run has 8 round trips per group: too few for a p99, which is left empty, not shown
    assert all(row["n"] < 100 and row["p99"] is None for row in record["summary_rtt_ms"])

    page = (tmp_path / "latency-lan.html").read_text()
    assert len(re.findall(r'Plotly\.newPlot\(\s*"', page)) == 6  # figure calls, not plotly.js's own text
    assert not re.search(r"<script[^>]+src=", page)  # plotly is inlined: works offline
    assert "labkit bench" in page
    table = page[page.index("<table"):page.index("</table>")]
    assert "<th>p90</th>" in table and "<th>p99</th>" not in table


def test_cluster_table_shows_each_figures_cpu_per_part_escaped():
    side = {"n": 120, "median": 1.5, "p99": 3.0}
    rows = [{"figure": "Redis hop", "value": 0.7, "unit": "ms", "goal": "<= +0.5 ms", "a": side,
             "b": {**side, "p99": None}, "of": "ms", "note": "CPU ms per message: worker <1> 0.57"},
            {"figure": "front door / direct", "value": 0.92, "unit": "x", "goal": ">= 0.9",
             "a": side, "b": side, "of": "req/s"}]
    table = bench._cluster_html(rows)
    assert table.count("<tr>") == 3 and "<th>CPU per part</th>" in table
    assert "CPU ms per message: worker &lt;1&gt; 0.57" in table  # escaped, in the first row
    first, second = table.split("<tr>")[2:]
    assert "p99 3.00" in first and first.count("p99") == 1  # the side with n >= 100 only
    assert second.endswith("<td></td></tr></table>")  # a figure without CPU: an empty cell


def test_a_load_process_that_does_not_end_is_killed_and_one_that_ends_is_reaped():
    import subprocess
    import sys

    from labkit.lessons.scaling import _end_load

    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    done = subprocess.Popen([sys.executable, "-c", "print('report')"], stdout=subprocess.PIPE, text=True)
    _end_load([done, hung], timeout=2.0)
    assert done.returncode == 0 and hung.returncode is not None and hung.returncode < 0  # killed
