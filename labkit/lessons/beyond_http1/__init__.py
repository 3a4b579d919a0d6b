"""Lesson 10, beyond HTTP/1.1: HTTP/1.1 (one at a time, six connections, pipelined), HTTP/2
(multiplexed streams over one TLS connection), HTTP/3 (streams over QUIC) and WebSocket (lock-step
and streamed), measured side by side on the same emulated links, with and without loss.

One module per concept: `servers` (hypercorn on the kit's serving path, TLS from the kit's CA,
ALPN), `clients` (one client per pattern, and why aioquic's own client for HTTP/3), `experiments`
(the grid of runs, the head-of-line timeline, header bytes, the closing table). The links are
`labkit.net.netem.NetemProxy` for TCP and `labkit.net.netem.UdpLink` for QUIC.

    from labkit.lessons import beyond_http1 as h
    servers = h.start()                 # one set per kernel: starting again stops the last one
    grid = h.measure(servers, profiles=("loopback", "4g"), losses=(0, 0.02), counts=(1, 10, 100))
"""

from __future__ import annotations

from .clients import BROWSER_HEADERS, MORE_PATTERNS, PATTERNS
from .experiments import (
    closing_findings,
    closing_table,
    grid_findings,
    header_bytes,
    hol_findings,
    hol_summary,
    hol_timeline,
    links,
    measure,
    run_pattern,
    warm_up,
)
from .servers import VersionServers

_current: list[VersionServers] = []


def start(*, quic: bool = True, warm: bool = True) -> VersionServers:
    """Start the lesson's servers (stopping any this kernel started before) and, with `warm`, make
    one exchange of every kind so that no measurement pays for first imports."""
    while _current:
        _current.pop().stop()
    servers = VersionServers(quic=quic).start()
    _current.append(servers)
    if warm:
        warm_up(servers)
    return servers


def describe(servers: VersionServers) -> str:
    """What is served where, and which protocols ALPN agreed on so far."""
    quic = (f"HTTP/3 over QUIC on udp 127.0.0.1:{servers.udp_port} (ALPN h3)" if servers.udp_port
            else f"no HTTP/3 here: {servers.quic_error}")
    seen = ", ".join(f"{alpn} x {count}" for alpn, count in servers.counters.alpn.items()) or "none yet"
    return (f"TLS over TCP on 127.0.0.1:{servers.tcp_port} (ALPN offers h2, http/1.1; agreed so far: "
            f"{seen}); {quic}")


__all__ = ["BROWSER_HEADERS", "MORE_PATTERNS", "PATTERNS", "VersionServers", "closing_findings",
           "closing_table", "describe", "grid_findings", "header_bytes", "hol_findings", "hol_summary",
           "hol_timeline", "links", "measure", "run_pattern", "start", "warm_up"]
