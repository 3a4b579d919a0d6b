"""Lesson 10's experiments: every pattern of `clients` on the same emulated links, the head-of-line
timeline, header bytes per request, and the closing table, all computed from the run.

The links: TCP patterns cross a `NetemProxy` (the TCP model; loss is the modelled stall of the
`loss` toxic: a chunk with a lost segment arrives `rto_ms` late and every later byte of that
connection waits behind it), QUIC crosses a `UdpLink` with the same profile (loss drops real
datagrams and aioquic's recovery runs). Both are seeded, so a run repeats its losses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd

from ..._loop import client_loop
from ..._loop import run as run_on_clients
from ...net import tls
from ...net.netem import NetemProxy, UdpLink
from ...net.netem import profile as netem_profile
from . import clients
from .servers import VersionServers

RTO_MS = 200
"""The TCP loss model's stall (Linux's minimum retransmission timeout)."""
TIMEOUT_S = 120.0
PROGRESS_S = 4.0


@contextmanager
def links(servers: VersionServers, profile: str, loss: float = 0.0, seed: int = 1
          ) -> Iterator[tuple[NetemProxy, UdpLink | None]]:
    """The TCP proxy and the UDP link of one profile and loss rate, both in front of `servers`."""
    net = NetemProxy("127.0.0.1", servers.tcp_port, profile, seed=seed).start()
    link = None
    try:
        if loss:
            net.toxic("loss", probability=loss, rto_ms=RTO_MS, seed=seed)
        if servers.udp_port:
            link = UdpLink("127.0.0.1", servers.udp_port, profile, loss=loss, seed=seed).start()
        yield net, link
    finally:
        net.stop()
        if link is not None:
            link.stop()


def run_pattern(pattern: str, net: NetemProxy, link: UdpLink | None, n: int,
                progress: Callable[[str], None] | None = None, **options) -> clients.Run:
    """One pattern (a key of `clients.PATTERNS` or `MORE_PATTERNS`) for n requests through the
    links. While it runs longer than PROGRESS_S, `progress` hears about it every PROGRESS_S (no
    cell stays silent)."""
    function = {**clients.PATTERNS, **clients.MORE_PATTERNS}[pattern]
    if pattern.startswith("h3"):
        if link is None:
            raise RuntimeError("no QUIC here (see servers.quic_error)")
        port = link.port
    else:
        port = net.port
    future = asyncio.run_coroutine_threadsafe(function(port, n, **options), client_loop())
    started = time.perf_counter()
    while True:
        try:
            return future.result(PROGRESS_S)
        except concurrent.futures.TimeoutError:
            waited = time.perf_counter() - started
            if waited > TIMEOUT_S:
                future.cancel()
                raise TimeoutError(f"{pattern} x {n}: no answer within {TIMEOUT_S:g} s") from None
            if progress:
                progress(f"    ... {pattern} x {n} still running ({waited:.0f} s)")


def _row(run: clients.Run, **keys) -> dict:
    latencies = [item.latency_s * 1000 for item in run.items]
    n = len(latencies)
    first_sent = min((item.sent_s for item in run.items), default=0.0)
    return {**keys, "pattern": run.pattern, "n": n, "total_ms": run.total_s * 1000,
            "after_connect_ms": (run.total_s - first_sent) * 1000,
            "median_ms": statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": (statistics.quantiles(latencies, n=100)[98] if n >= 100 else float("nan")),
            "connections": run.connections, "alpn": run.alpn}


def warm_up(servers: VersionServers) -> None:
    """Import the clients' libraries and make one exchange of each kind, so no run pays for it."""
    with links(servers, "loopback") as (net, link):
        for pattern in clients.PATTERNS:
            if pattern.startswith("h3") and link is None:
                continue
            run_pattern(pattern, net, link, 1)


def measure(servers: VersionServers, profiles=("loopback", "4g"), losses=(0.0, 0.02),
            counts=(1, 10), patterns=None, seed: int = 1,
            progress: Callable[[str], None] | None = print) -> pd.DataFrame:
    """Every pattern x profile x loss x N: one row per run (total, median and p99 when n >= 100,
    connections opened, modelled TCP stalls and dropped datagrams of that link)."""
    patterns = [p for p in (patterns or clients.PATTERNS)
                if not (p.startswith("h3") and not servers.udp_port)]
    rows = []
    started = time.perf_counter()
    for profile in profiles:
        for loss in losses:
            with links(servers, profile, loss, seed) as (net, link):
                for n in counts:
                    for pattern in patterns:
                        run = run_pattern(pattern, net, link, n, progress)
                        rows.append(_row(run, profile=profile, loss=loss, key=pattern))
                    if progress and n >= 10:
                        progress(f"  {profile}, loss {loss:.0%}, N = {n}: done "
                                 f"({time.perf_counter() - started:.1f} s so far)")
                tcp_stalls = len(net.losses)
                dropped = sum(len(v) for v in link.dropped.values()) if link else 0
            for row in rows:
                if row["profile"] == profile and row["loss"] == loss:
                    row["tcp_stalls_on_link"], row["datagrams_dropped_on_link"] = tcp_stalls, dropped
            if progress:
                progress(f"{profile:>9}, loss {loss:.0%}: {len(patterns) * len(counts)} runs done "
                         f"({time.perf_counter() - started:.1f} s so far; {tcp_stalls} modelled TCP "
                         f"stalls, {dropped} datagrams dropped)")
    return pd.DataFrame(rows)


def grid_findings(grid: pd.DataFrame, servers: VersionServers, profile: str = "4g") -> str:
    """Markdown sentences on `profile` at the grid's largest N, every number from the grid."""
    n = int(grid["n"].max())
    lost = float(grid["loss"].max())

    def total(loss: float, key: str) -> float:
        row = grid[(grid.profile == profile) & (grid.loss == loss) & (grid.key == key) & (grid.n == n)]
        return float(row["total_ms"].iloc[0]) if len(row) else float("nan")

    lines = [
        f"- On {profile} with no loss, {n} requests over **six HTTP/1.1 connections** took "
        f"**{total(0.0, 'h1 six connections'):.0f} ms**, over **one HTTP/2 connection** "
        f"**{total(0.0, 'h2 multiplexed'):.0f} ms**, and {n} **streamed WebSocket** messages "
        f"**{total(0.0, 'ws streamed'):.0f} ms** (HTTP/2 over WebSocket: "
        f"{total(0.0, 'h2 multiplexed') / total(0.0, 'ws streamed'):.2f}x).",
        f"- Lock-step WebSocket took **{total(0.0, 'ws lock-step'):.0f} ms**: a WebSocket that "
        "waits for each answer pays a round trip per message, as HTTP/1.1 does.",
        f"- With {lost:.0%} loss, HTTP/2 took **{total(lost, 'h2 multiplexed'):.0f} ms** and "
        f"streamed WebSocket **{total(lost, 'ws streamed'):.0f} ms** (both on one TCP connection).",
    ]
    if servers.udp_port:
        lines.append(f"- HTTP/3 took **{total(0.0, 'h3 multiplexed'):.0f} ms** without loss and "
                     f"**{total(lost, 'h3 multiplexed'):.0f} ms** with {lost:.0%}; QUIC's handshake "
                     "here is aioquic's, in Python: its CPU time is part of every HTTP/3 total.")
    else:
        lines.append(f"- No HTTP/3 here ({servers.quic_error}): the lesson runs its TCP parts.")
    return "\n".join(lines)


# -- head-of-line blocking ------------------------------------------------------------------------
def hol_timeline(servers: VersionServers, profile: str = "4g", loss: float = 0.05,
                 streams: int = 30, gap_s: float = 0.01, seed: int = 3,
                 path: str = "/api/echo?size=4000") -> pd.DataFrame:
    """Streams started every `gap_s` over one HTTP/2 connection and over one HTTP/3 connection, on
    the same link with loss: one row per stream (sent, done, latency, whether a later stream
    finished before it). A 4 kB answer is three packets, so each stream can lose one."""
    rows = []
    with links(servers, profile, loss, seed) as (net, link):
        runs = [("HTTP/2", run_pattern("h2 multiplexed", net, link, streams, path=path, gap_s=gap_s))]
        if link is not None:
            runs.append(("HTTP/3", run_pattern("h3 multiplexed", net, link, streams, path=path,
                                               gap_s=gap_s)))
        tcp_stalls = len(net.losses)
        dropped = sum(len(v) for v in link.dropped.values()) if link else 0
    for protocol, run in runs:
        fastest = min(item.latency_s for item in run.items)
        for item in run.items:
            overtaken = sum(1 for other in run.items
                            if other.index > item.index and other.done_s < item.done_s)
            rows.append({"protocol": protocol, "stream": item.index, "sent_ms": item.sent_s * 1000,
                         "done_ms": item.done_s * 1000, "latency_ms": item.latency_s * 1000,
                         "extra_ms": (item.latency_s - fastest) * 1000,
                         "overtaken_by": overtaken})
    frame = pd.DataFrame(rows)
    frame.attrs.update(profile=profile, loss=loss, tcp_stalls=tcp_stalls,
                       datagrams_dropped=dropped, rtt_ms=netem_profile(profile).rtt_ms)
    return frame


def hol_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per protocol: streams, streams delayed by more than one round trip over the fastest, and
    streams that a later stream overtook (never on HTTP/2: one TCP byte stream is in order)."""
    rtt = frame.attrs.get("rtt_ms", 0.0)
    out = []
    for protocol, part in frame.groupby("protocol", sort=False):
        out.append({"protocol": protocol, "streams": len(part),
                    "delayed_over_1_rtt": int((part["extra_ms"] > max(rtt, 1.0)).sum()),
                    "overtaken_streams": int((part["overtaken_by"] > 0).sum()),
                    "median_ms": part["latency_ms"].median(), "max_ms": part["latency_ms"].max()})
    return pd.DataFrame(out)


def hol_findings(frame: pd.DataFrame) -> str:
    """A sentence on who overtook whom in `hol_timeline`'s run, every number from the frame."""
    over = {p: int((part["overtaken_by"] > 0).sum()) for p, part in frame.groupby("protocol", sort=False)}
    streams = int(len(frame) // max(1, len(over)))
    text = (f"Over HTTP/2, **{over.get('HTTP/2', 0)}** of {streams} streams were overtaken by a later "
            "stream. On one TCP connection a stalled segment holds every byte written after it, "
            "whatever its stream, so a loss cannot let a later stream pass (what overtaking there is "
            "comes from the order in which the server wrote the streams).")
    if "HTTP/3" in over:
        text += (f" Over QUIC, **{over['HTTP/3']}** were: each stream is retransmitted on its own, "
                 "so a stream that lost a packet falls behind while later ones finish. (Some "
                 "overtaking happens without loss too, from scheduling: run `h.hol_timeline` with "
                 "`loss=0` to see how much.)")
    return text


# -- header bytes ---------------------------------------------------------------------------------
def response_head(servers: VersionServers, path: str = "/api/notes/1") -> bytes:
    """The real HTTP/1.1 response head the server sends for `path`."""

    async def fetch() -> bytes:
        reader, writer = await asyncio.open_connection(
            clients.HOST, servers.tcp_port, ssl=tls.client_ssl_context(),
            server_hostname=clients.HOST)
        try:
            writer.write(clients.h1_request(path, servers.tcp_port))
            head, _ = await clients.read_response(reader)
            return head
        finally:
            writer.close()

    return run_on_clients(fetch())


def header_bytes(servers: VersionServers, n: int = 10, message_bytes: int = 64) -> pd.DataFrame:
    """Header bytes of n requests for the same resource, request and response: HTTP/1.1 (the real
    heads), HTTP/2 (HPACK, with the hpack library that httpx's h2 uses), HTTP/3 (QPACK, with
    pylsqpack, the encoder aioquic uses, its decoder's acknowledgements fed back), and WebSocket
    frame headers for a `message_bytes` message each way. Frame headers of HTTP/2 (9 bytes) and
    HTTP/3 (2-3 bytes) are added; TLS records, TCP/IP and UDP/IP are not counted here."""
    import hpack
    import pylsqpack

    port = servers.tcp_port
    head = response_head(servers)
    response_fields = [(b":status", head.split(b" ")[1])]
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            name, _, value = line.partition(b":")
            response_fields.append((name.strip().lower(), value.strip()))
    request_fields = [(b":method", b"GET"), (b":scheme", b"https"),
                      (b":authority", f"{clients.HOST}:{port}".encode()), (b":path", b"/api/notes/1")]
    request_fields += [(k.encode(), v.encode()) for k, v in clients.BROWSER_HEADERS]
    h2_up, h2_down = hpack.Encoder(), hpack.Encoder()
    qpack = {}
    for side in ("up", "down"):
        encoder, decoder = pylsqpack.Encoder(), pylsqpack.Decoder(4096, 16)
        encoder.apply_settings(4096, 16)
        qpack[side] = (encoder, decoder)
    ws_frame = 2 if message_bytes <= 125 else 4

    rows = []
    for i in range(n):
        rows.append({"request": i + 1, "protocol": "HTTP/1.1",
                     "up": len(clients.h1_request("/api/notes/1", port)), "down": len(head)})
        rows.append({"request": i + 1, "protocol": "HTTP/2 (HPACK)",
                     "up": 9 + len(h2_up.encode(request_fields)),
                     "down": 9 + len(h2_down.encode(response_fields))})
        sizes = {}
        for side, fields in (("up", request_fields), ("down", response_fields)):
            encoder, decoder = qpack[side]
            stream_id = 4 * i
            control, block = encoder.encode(stream_id, fields)
            decoder.feed_encoder(control)
            acknowledgement, _ = decoder.feed_header(stream_id, block)
            encoder.feed_decoder(acknowledgement)
            sizes[side] = 2 + len(block) + len(control)
        rows.append({"request": i + 1, "protocol": "HTTP/3 (QPACK)", **sizes})
        rows.append({"request": i + 1, "protocol": "WebSocket frame",
                     "up": ws_frame + 4, "down": ws_frame})  # client frames carry a 4-byte mask
    frame = pd.DataFrame(rows)
    frame["total"] = frame["up"] + frame["down"]
    return frame


# -- the closing table ----------------------------------------------------------------------------
def closing_table(frame: pd.DataFrame, headers: pd.DataFrame) -> pd.DataFrame:
    """Per profile and loss at the largest N: each pattern's total, its ratio to streamed
    WebSocket, and the steady-state header bytes per request (from `header_bytes`)."""
    largest = frame["n"].max()
    part = frame[frame["n"] == largest]
    steady = headers[headers["request"] == headers["request"].max()].set_index("protocol")["total"]
    per_pattern = {"h1": steady.get("HTTP/1.1"), "h2": steady.get("HTTP/2 (HPACK)"),
                   "h3": steady.get("HTTP/3 (QPACK)"), "ws": steady.get("WebSocket frame")}
    rows = []
    for (profile, loss), group in part.groupby(["profile", "loss"], sort=False):
        ws = group[group["key"] == "ws streamed"]["total_ms"]
        base = float(ws.iloc[0]) if len(ws) else float("nan")
        for _, row in group.iterrows():
            rows.append({"profile": profile, "loss": loss, "pattern": row["key"], "n": int(row["n"]),
                         "total_ms": row["total_ms"], "x ws streamed": row["total_ms"] / base,
                         "header bytes/request": per_pattern[row["key"][:2]],
                         "connections": row["connections"]})
    return pd.DataFrame(rows)


def closing_findings(closing: pd.DataFrame, profile: str = "4g") -> str:
    """Where request/response closes the gap with WebSocket and where not, from `closing_table`."""
    c = closing[(closing["profile"] == profile) & (closing["loss"] == 0.0)]
    n = int(c["n"].max())
    ratio = {str(k): float(v) for k, v in zip(c["pattern"], c["x ws streamed"], strict=True)}
    header = {str(k): float(v) for k, v in zip(c["pattern"], c["header bytes/request"], strict=True)}
    best = min((k for k in ratio if not k.startswith("ws")), key=lambda k: ratio[k])
    why = (" (a WebSocket pays one more round trip before its first message: the Upgrade)"
           if ratio[best] < 1 else "")
    return "\n".join([
        f"- **Where request/response closes the gap**: a burst of {n} requests. On {profile}, HTTP/2 "
        f"took **{ratio['h2 multiplexed']:.2f}x** a streamed WebSocket's time, the best HTTP "
        f"pattern (**{best}**) **{ratio[best]:.2f}x**{why}, and HTTP/1.1 one at a time "
        f"**{ratio['h1 sequential']:.1f}x**.",
        f"- **Where it does not**: per message, HTTP/2 still sends **{header['h2 multiplexed']:.0f}** "
        f"header bytes against the WebSocket's **{header['ws streamed']:.0f}**, and only a "
        "WebSocket (or SSE, or WebTransport) lets the server speak first.",
    ])
