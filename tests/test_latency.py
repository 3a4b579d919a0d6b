"""The latency harness (shapes, counts, warm-up, bytes), its N-messages model, the lesson 03 plots
and checkers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from labkit import check
from labkit.lessons.latency import (
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


def test_compare_patterns_rows_bytes_and_messages(lab):
    from labkit.lessons.latency import PATTERNS, compare_patterns

    frame = compare_patterns(lab, messages=12, payload_bytes=64, parallel=3, profile="loopback",
                             trials=2, progress=False)
    assert list(frame["pattern"]) == list(PATTERNS) * 2
    assert list(frame["trial"]) == [0] * 5 + [1] * 5
    assert dict(zip(frame["pattern"], frame["connections"], strict=False)) == {
        "websocket lock-step": 1, "websocket streamed": 1, "rest keep-alive": 1,
        "rest pipelined": 1, "rest parallel": 3}
    # pipelining: 12 numbered requests in one write, 12 answers, every one in request order
    pipelined = frame[frame["pattern"] == "rest pipelined"]
    assert list(pipelined["answers_in_order"]) == [12, 12]
    assert frame.loc[frame["pattern"] != "rest pipelined", "answers_in_order"].isna().all()
    assert (frame["messages"] == 12).all() and (frame["total_ms"] > 0).all()
    assert (frame["setup_ms"] > 0).all()
    # the same 12 echoes cross the link whichever way they are sent: WebSocket patterns carry
    # the same bytes, each REST request carries its payload plus a full HTTP head
    by = frame[frame.trial == 0].set_index("pattern")
    assert by.loc["websocket lock-step", "bytes_up"] == by.loc["websocket streamed", "bytes_up"]
    assert by.loc["websocket streamed", "bytes_down"] >= 12 * (64 + 2)
    assert by.loc["rest keep-alive", "bytes_up"] > 12 * (64 + 100)
    assert by.loc["rest pipelined", "bytes_up"] > 12 * (64 + 60)    # 12 request heads and bodies
    assert by.loc["rest pipelined", "bytes_down"] > 12 * (64 + 100)  # 12 answers, each with a head
    assert math.isnan(frame["round_trips"].iloc[0])   # loopback: no configured round trip


def test_compare_patterns_refuses_bad_arguments(lab):
    from labkit.lessons.latency import compare_patterns

    with pytest.raises(ValueError):
        compare_patterns(lab, patterns=["pipelining"])
    with pytest.raises(ValueError):
        compare_patterns(lab, messages=0)


def test_extrapolate_scales_the_median_difference_and_brackets_it():
    from labkit.lessons.latency import extrapolate

    frame = _synthetic()
    gap = extrapolate(frame, "rest-keepalive", "websocket", messages=10_000, resamples=500)
    per_message = (frame[frame.transport == "rest-keepalive"].rtt_ms.median()
                   - frame[frame.transport == "websocket"].rtt_ms.median())
    assert gap["difference_ms"] == pytest.approx(10_000 * per_message)
    assert gap["low_ms"] <= gap["difference_ms"] <= gap["high_ms"]
    assert gap["n_slower"] == len(frame[(frame.transport == "rest-keepalive")
                                        & (frame.payload_bytes == frame.payload_bytes.min())])
    with pytest.raises(ValueError):
        extrapolate(frame, "rest-keepalive", "carrier pigeon")


def test_extrapolate_interval_widens_with_noise():
    from labkit.lessons.latency import extrapolate

    def frame(spread):
        rows = [{"transport": t, "payload_bytes": 64, "rtt_ms": base + spread * ((i * 7) % 11 - 5)}
                for t, base in (("a", 51.0), ("b", 50.0)) for i in range(30)]
        return pd.DataFrame(rows)

    quiet, noisy = (extrapolate(frame(s), "a", "b", resamples=400) for s in (0.1, 5.0))
    assert (noisy["high_ms"] - noisy["low_ms"]) > (quiet["high_ms"] - quiet["low_ms"])
    assert noisy["low_ms"] < 0 < noisy["high_ms"]   # 1 ms in a 50 ms spread: cannot tell


def test_tcp_ip_bytes_model_counts_packets():
    from labkit.lessons.latency import CONNECTION_PACKETS, MSS_BYTES, TCP_IP_HEADER_BYTES, tcp_ip_bytes

    frame = pd.DataFrame({"transport": ["websocket", "rest-new", "rest-keepalive"],
                          "bytes_up": [70, 200, 3000], "bytes_down": [66, 150, 200],
                          "new_connection": [False, True, False]})
    out = tcp_ip_bytes(frame)
    # 3000 B: 3 segments up, 1 down, the answer's pure ACK and one delayed ACK for the long request
    assert list(out["packets"]) == [3, 3 + CONNECTION_PACKETS, 3 + 1 + 1 + 1]
    assert MSS_BYTES * 2 < 3000 <= MSS_BYTES * 3
    assert list(out["tcp_ip_bytes"]) == [p * TCP_IP_HEADER_BYTES for p in out["packets"]]
    assert list(out["wire_bytes"]) == [136 + 156, 350 + 520, 3200 + 312]
    assert "packets" not in frame   # a copy: the run itself is untouched


def test_summary_leaves_p99_out_below_100_observations():
    from labkit.lessons.latency import summary

    few = _synthetic()
    assert "p99" not in summary(few) and {"p90", "max"} <= set(summary(few))
    many = pd.DataFrame({"transport": ["websocket"] * 100, "rtt_ms": range(100)})
    assert "p99" in summary(many)


def test_tls_lab_is_a_second_lab_and_is_reused(lab):
    from labkit.lessons.latency import tls_lab

    secure = tls_lab()
    assert secure.url.startswith("https://") and secure is tls_lab()
    assert lab.running and lab.url.startswith("http://") and secure.port != lab.port


def test_pattern_and_tcp_plots_have_title_units_and_legend():
    frame = pd.DataFrame({"pattern": ["websocket lock-step", "rest parallel"],
                          "connections": [1, 6], "messages": [10, 10], "total_ms": [500.0, 100.0],
                          "round_trips": [10.0, 2.0]})
    for fig in (charts.patterns(frame), charts.tcp_ip_bytes(_synthetic())):
        assert fig.layout.title.text and fig.layout.showlegend is True
        assert "(s," in fig.layout.xaxis.title.text or "(B)" in fig.layout.yaxis.title.text
        assert all(trace.name for trace in fig.data)


def test_slow_start_restarts_after_a_silence_only(lab):
    """RFC 5681 4.1 in the emulator: a keep-alive connection whose answers grew the window falls
    back to the initial window after a silence longer than the retransmission timeout (round trip
    + 200 ms), not between answers sent back to back. Counted by the emulator, not timed."""
    import time

    from labkit.clients.rest import RestClient
    from labkit.net.netem import NetemProxy
    from labkit.net.netem.link import restart_after_idle

    size = 100_000   # several windows on 4G: the downstream window grows past the initial one
    with NetemProxy.for_lab(lab, "4g") as net, RestClient(net.url(), timeout=30) as api:
        for _ in range(2):
            assert len(api.get(f"/api/echo?size={size}").body) == size
        back_to_back = net.slow_start_restarts
        time.sleep(restart_after_idle(net.profile.rtt_ms / 1000) + 0.2)
        assert len(api.get(f"/api/echo?size={size}").body) == size
        after_silence = net.slow_start_restarts
        assert len(net.connections) == 1   # one kept-alive connection all along
    assert back_to_back == 0
    assert after_silence == 1              # the downstream direction, once


def test_pipelined_answers_come_back_in_request_order(lab):
    """The raw pipelining client sends bodies that start with their number; the lab answers them
    one after another, in the order they were written (RFC 9112 9.3.2)."""
    from labkit import _loop
    from labkit.lessons.latency import _Endpoint, _numbered, _Pipeline

    bodies = _numbered(bytes(64), 30)
    assert len({b[:8] for b in bodies}) == 30 and all(len(b) == 64 for b in bodies)

    async def run():
        pipe = _Pipeline(_Endpoint(lab.host, lab.port, False))
        try:
            await pipe.open()
            return await pipe.exchange(bodies), await pipe.exchange(bodies[:3])
        finally:
            await pipe.close()

    assert _loop.run(run(), timeout=30) == (30, 3)


def test_findings_follow_the_numbers_they_are_given():
    from labkit.lessons.latency import (
        loss_findings,
        pattern_findings,
        payload_findings,
        slow_start_off_findings,
    )

    rows = [{"transport": t, "payload_bytes": size, "rtt_ms": base + (grow if size > 64 else 0)}
            for t, base, grow in (("rest-new", 100, 130), ("rest-keepalive", 50, 80),
                                  ("websocket", 50, 80)) for size in (64, 16384) for _ in range(3)]
    sweep = pd.DataFrame(rows)
    found = payload_findings(sweep, "4g")
    assert (found["small"], found["big"], found["extra_new_ms"]) == (64, 16384, 50)
    assert found["expected_round_trips"] == 1 and "**+50 ms**" in found["text"]
    off = pd.DataFrame({"payload_bytes": [64, 16384], "rtt_ms": [100, 180]})
    assert slow_start_off_findings(off, found)["slow_start_shows"]          # +0 against +50
    same = pd.DataFrame({"payload_bytes": [64, 16384], "rtt_ms": [100, 230]})
    assert not slow_start_off_findings(same, found)["slow_start_shows"]     # +50 both ways

    ways = pd.DataFrame({"pattern": ["websocket lock-step", "websocket streamed", "rest keep-alive",
                                     "rest pipelined", "rest parallel"],
                         "messages": 20, "total_ms": [1000, 50, 1100, 75, 200],
                         "answers_in_order": [None, None, None, 20, None]})
    ways.attrs["rtt_configured_ms"] = 50.0
    patterns = pattern_findings(ways)
    assert patterns["in_order"] == 20 and "20 of 20 answers" in patterns["text"]
    assert "**0.075 s** (1.5 round trips)" in patterns["text"]

    clean = pd.DataFrame({"pattern": ["websocket streamed"], "total_ms": [80.0]})
    lossy = pd.DataFrame({"pattern": "websocket streamed", "messages": 100, "loss": 0.02,
                          "total_ms": [80.0, 280.0], "losses": [0, 1]})
    hol = loss_findings(clean, lossy)
    assert hol["lost"] == 1 and "+200 ms" in hol["text"] and "1 modelled loss in 2 runs" in hol["text"]
    none = loss_findings(clean, lossy.assign(losses=0, total_ms=80.0))
    assert none["lost"] == 0 and "No segment was lost" in none["text"]


# -- on a class server: the hand-made requests carry the student's token --------------------------
@pytest.fixture
def joined(make_lab):
    """A class server (tokens on) and a student's handle on it, as `lk.join` gives one."""
    import labkit as lk
    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    return lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                   personal=False)


def test_every_client_of_the_harness_reaches_a_class_server_with_its_token(joined, lab):
    """REST (new, kept), WebSocket, pipelined, parallel and streamed clients all send the token;
    the REST requests are longer by exactly the Authorization header the own lab does not need."""
    from labkit.lessons.latency import compare_patterns

    there = compare_transports(joined, profile="loopback", count=3, warmup=1)
    here = compare_transports(lab, profile="loopback", count=3, warmup=1)
    assert len(there) == 9 and set(there["transport"]) == set(TRANSPORTS)
    header = len("Authorization: Bearer student-token\r\n")
    up = {t: (there[there.transport == t].bytes_up.median(), here[here.transport == t].bytes_up.median())
          for t in TRANSPORTS}
    assert up["rest-keepalive"][0] - up["rest-keepalive"][1] == header
    assert up["rest-new"][0] - up["rest-new"][1] == header
    assert up["websocket"][0] == up["websocket"][1]      # frames carry no token: the handshake did
    ways = compare_patterns(joined, messages=5, profile=None, progress=False)
    assert len(ways) == 5 and ways.set_index("pattern").loc["rest pipelined", "answers_in_order"] == 5
    measured = measure_exchange(joined, messages=[2], profile=None, progress=None)
    assert list(measured["messages"]) == [2, 2, 2]


def test_a_refused_token_fails_at_once_with_its_status(make_lab):
    from labkit.course.classroom import ClassroomLab, join_url
    from labkit.net.wire import count_packets

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    wrong = ClassroomLab(join_url("127.0.0.1", room.port, "not-the-token"), sync_clock=False,
                         personal=False)
    with pytest.raises(RuntimeError, match="HTTP 401"):
        compare_transports(wrong, transports=["rest-keepalive"], profile=None, count=1, warmup=0)
    with pytest.raises(ConnectionError, match="401"):
        count_packets(wrong, exchanges=1, timeout=5)


def test_the_endpoint_keeps_a_class_servers_path_prefix_and_token():
    from labkit.lessons.latency import _Endpoint

    hub = "http://student:t%2Fok@127.0.0.1:8000/services/labkit"
    endpoint = _Endpoint("127.0.0.1", 9, False, hub)
    assert endpoint.url("ws", "/ws/echo") == "ws://127.0.0.1:9/services/labkit/ws/echo"
    assert endpoint.headers == {"Authorization": "Bearer t/ok"}
    own = _Endpoint("127.0.0.1", 9, False, "http://127.0.0.1:8000")
    assert own.url("http", "/api/echo") == "http://127.0.0.1:9/api/echo" and own.headers == {}


def test_across_the_network_measures_only_a_class_server(joined, lab):
    from labkit.lessons.latency import across_the_network

    own = across_the_network(lab, lab, count=2, warmup=1)
    assert own["frame"] is None and "this machine's loopback" in own["text"]
    far = across_the_network(joined, lab, count=2, warmup=1)
    assert len(far["frame"]) == 12 and far["frame"].groupby("where").size().to_dict() == {
        "class server": 6, "own lab": 6}
    assert set(far["medians"]["class server"]) == set(TRANSPORTS) == set(far["medians"]["own lab"])
    assert "on this same machine" in far["text"]          # the test's class server is on loopback
    for transport, median_ms in far["medians"]["class server"].items():
        mine = far["medians"]["own lab"][transport]
        assert f"{transport} **{median_ms:.2f} ms** (your own lab {mine:.2f} ms)" in far["text"]
