"""The latency harness (shapes, counts, warm-up, bytes), its N-messages model, the lesson 03 plots
and checkers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from labkit import check
from labkit.latency import (
    COLUMNS,
    TRANSPORTS,
    compare_transports,
    exchange_totals,
    measure_exchange,
    round_trips_per_connection,
)
from labkit.plots import latency as charts


def test_frame_shape_counts_and_warmup(lab):
    frame = compare_transports(lab, payloads=[0, 1000], count=4, warmup=2)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(frame) == len(TRANSPORTS) * 2 * 4
    for (_, _), group in frame.groupby(["transport", "payload_bytes"]):
        assert list(group["trial"]) == [0, 1, 2, 3]
    assert frame.attrs["warmup_dropped"] == {f"{t} {p} B": 2 for t in TRANSPORTS for p in (0, 1000)}
    assert set(frame["profile"]) == {"loopback"}
    assert (frame["rtt_ms"] > 0).all()
    setup = frame.attrs["setup_ms"]
    assert {k: sorted(v) for k, v in setup.items()} == {"rest-keepalive": [0, 1000],
                                                        "websocket": [0, 1000]}
    assert all(len(v) == 1 for per_size in setup.values() for v in per_size.values())
    # the keep-alive connection was opened during the dropped warm-up: every kept row reuses it
    assert frame[frame.transport == "rest-new"]["new_connection"].all()
    assert not frame[frame.transport == "rest-keepalive"]["new_connection"].any()
    assert frame[frame.transport == "websocket"][["tcp_ms", "wait_ms"]].isna().all().all()


def test_bytes_on_the_wire_match_the_protocols(lab):
    frame = compare_transports(lab, payloads=[0, 1000], count=2, warmup=1)
    ws = frame[frame.transport == "websocket"].groupby("payload_bytes")
    # client frames: 2-byte header (+2 for length 126..65535) + 4-byte mask; server frames unmasked
    assert ws["bytes_up"].unique().to_dict() == {0: [6], 1000: [1008]}
    assert ws["bytes_down"].unique().to_dict() == {0: [2], 1000: [1004]}
    rest = frame[frame.transport == "rest-keepalive"]
    big = rest[rest.payload_bytes == 1000]
    small = rest[rest.payload_bytes == 0]
    assert (big["bytes_up"].to_numpy() - small["bytes_up"].to_numpy() >= 1000).all()
    assert (small["bytes_up"] > 100).all()  # request line and headers


def test_keepalive_first_request_opens_the_connection_when_not_dropped(lab):
    frame = compare_transports(lab, transports=["rest-keepalive"], count=3, warmup=0,
                               profile=None)
    assert list(frame["new_connection"]) == [True, False, False]
    assert frame["bytes_up"].isna().all()  # no proxy, nothing counted
    assert set(frame["profile"]) == {"direct"}


def test_bad_arguments_fail_before_anything_runs(lab):
    with pytest.raises(ValueError, match="unknown transport"):
        compare_transports(lab, transports=["carrier-pigeon"])
    with pytest.raises(ValueError, match="unknown network profile"):
        compare_transports(lab, profile="moon")
    with pytest.raises(ValueError):
        compare_transports(lab, count=0)


def _synthetic():
    rows = []
    for transport, rtt, up, down, tcp in (("rest-new", 100, 278, 235, 50),
                                          ("rest-keepalive", 50, 259, 216, 0),
                                          ("websocket", 50, 70, 66, math.nan)):
        for trial in range(5):
            rows.append({"transport": transport, "profile": "4g", "payload_bytes": 64,
                         "trial": trial, "rtt_ms": rtt + trial - 2, "bytes_up": up,
                         "bytes_down": down, "new_connection": transport == "rest-new",
                         "tcp_ms": tcp, "tls_ms": 0.0 if tcp == tcp else math.nan,
                         "send_ms": 0.1, "wait_ms": 50.0, "receive_ms": 0.1, "tls": False})
    frame = pd.DataFrame(rows)
    frame.attrs["setup_ms"] = {"rest-keepalive": {64: [100.0], 4096: [300.0]},
                               "websocket": {64: [100.0]}}
    return frame


def test_exchange_model_adds_setup_once():
    totals = exchange_totals(_synthetic(), messages=[1, 10])
    got = totals.set_index(["transport", "messages"])["total_ms"].to_dict()
    assert got == {("rest-new", 1): 100, ("rest-new", 10): 1000,
                   ("rest-keepalive", 1): 100, ("rest-keepalive", 10): 550,
                   ("websocket", 1): 150, ("websocket", 10): 600}
    assert set(totals["source"]) == {"model"}
    assert round_trips_per_connection(_synthetic()) == 2


def test_measured_exchange_counts_rows(lab):
    measured = measure_exchange(lab, messages=[1, 3], transports=["websocket", "rest-new"])
    assert list(measured["messages"]) == [1, 3, 1, 3]
    assert set(measured["source"]) == {"measured"}
    assert (measured["total_ms"] > 0).all()


@pytest.mark.parametrize("make", [
    lambda f: charts.ecdf(f),
    lambda f: charts.ecdf(pd.concat([f, f.assign(profile="loopback")])),
    lambda f: charts.by_profile(f),
    lambda f: charts.by_profile(f, kind="violin"),
    lambda f: charts.rtt_vs_payload(f),
    lambda f: charts.waterfall(f),
    lambda f: charts.bytes_per_message(f),
    lambda f: charts.exchange_curve(exchange_totals(f)),
], ids=["ecdf", "ecdf-profiles", "box", "violin", "payload", "waterfall", "bytes", "exchange"])
def test_plots_have_title_units_and_legend(make):
    fig = make(_synthetic())
    layout = fig.layout
    assert layout.title.text
    x, y = layout.xaxis.title.text, layout.yaxis.title.text
    assert x and y
    assert any(unit in x + y for unit in ("(ms", "(B)", "(s,", "(bytes", "(0-1)"))
    assert layout.showlegend is True
    assert fig.data and all(trace.name for trace in fig.data)


def test_waterfall_stacks_phases_in_order():
    fig = charts.waterfall(_synthetic())
    names = [t.name for t in fig.data]
    assert names[0] == "TCP handshake" and names[-1] == "response body"
    tcp, wait = fig.data[0], fig.data[3]
    assert list(tcp.y) == ["REST, new connection", "REST, keep-alive"]
    assert list(tcp.x) == [50, 0]
    assert list(wait.base) == [50 + 0 + 0.1, 0.1]


def test_checker_new_connection_round_trips():
    frame = _synthetic()
    assert check.new_connection_round_trips(2, frame)
    assert check.new_connection_round_trips(2.05, frame)
    assert not check.new_connection_round_trips(1, frame)
    assert not check.new_connection_round_trips("two", frame)
    assert not check.new_connection_round_trips(2, None)  # no data: "not yet", never an error


def test_checker_websocket_break_even():
    frame = _synthetic()  # ws: 100 + 50 N, rest-new: 100 N -> ws faster from N = 3
    assert check.websocket_break_even(3, frame)
    assert not check.websocket_break_even(10, frame)
    assert not check.websocket_break_even(0, frame)
    assert not check.websocket_break_even(None, frame)


def test_checker_header_bytes_saved():
    frame = _synthetic()  # (259 + 216) - (70 + 66) = 339
    assert check.header_bytes_saved(339, frame)
    assert not check.header_bytes_saved(100, frame)
    assert not check.header_bytes_saved(None, frame)
    assert not check.header_bytes_saved(339, frame.drop(columns=["transport"]))
