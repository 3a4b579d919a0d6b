"""NetemProxy: an emulated network link between a client and the lab server, with switchable faults.

Put it between a client and the lab server and every byte pays what the link's model says:

    with NetemProxy.for_lab(lab, "4g") as net:
        lk.rest(net.url()).get("/healthz")      # ~2 round trips of a 4G network

Faults ("toxics", named after toxiproxy's where they match) can be switched on and off while
connections are open, e.g. to cut a live WebSocket while a widget watches:

    net = NetemProxy.for_lab(lab, "4g").start()
    ws = lk.websocket(net.url("ws"), "/ws/echo")
    net.toxic("timeout")                          # blackhole: nothing passes, nothing is closed
    net.clear("timeout")                          # the link works again
    net.toxic("reset_peer", after_ms=500)         # RST to both peers 0.5 s from now
    net.toxic("idle_timeout", seconds=2)          # a load balancer closing idle connections
    net.toxic("refuse_upgrade")                   # a plain-HTTP proxy: WebSocket upgrades get 403
    net.toxic("loss", probability=0.05, rto_ms=200, seed=1)   # modelled retransmission stalls
    net.active_toxics                             # {"idle_timeout": {...}, ...}
    net.clear()                                   # every toxic off
    net.stop()

What it models, per direction (upstream: client -> server, downstream: server -> client):

- `latency` (ms): a fixed one-way delay (toxiproxy "latency"); `jitter` (ms): an extra delay per
  burst of chunks, uniform in [-jitter, +jitter], drawn from a seeded generator so a run repeats.
  Delays pipeline: a chunk read at time t leaves at t + delay without holding up the chunks after
  it, and a chunk never overtakes the one before it in its direction.
- `rate` (KB/s, 1 KB = 1000 bytes): the bandwidth of the LINK. All connections of one proxy share
  each direction's rate and one first-in-first-out queue in front of it, as flows share a real
  bottleneck: four parallel downloads together get the rate, not four times it (first come,
  first served: equal shares are not promised). The queue holds at most
  max(64 KiB, bandwidth-delay product) of link time; when it is full the proxy stops reading and
  TCP flow control holds the senders back.
- The TCP handshake: the kernel completes it with the proxy's listening socket before the proxy's
  code sees the connection, and user space cannot delay a SYN/ACK. So the proxy adds it back: a
  new connection waits one configured round trip before its first byte is forwarded
  (`handshake_ms` records the wait per connection). TLS needs no model: its handshake is ordinary
  bytes and pays its own round trips.
- TCP slow start (a model, like the handshake): a new connection may send an initial window of
  INITIAL_WINDOW = 10 segments of MSS = 1448 bytes (RFC 6928; 1,448 is what a 1500-byte MTU carries
  with the timestamps option Linux sends, the MSS option itself says 1,460) per direction. A round
  ends when its first bytes are acknowledged: one way back after they reached the far end, and at
  least one configured round trip after the round began. A round that filled the window doubles it;
  when the window covers the bandwidth-delay product (rate x round trip) slow start is over and only
  the link limits the connection (with no rate the window keeps doubling). So a 256 kB answer on a
  new intercontinental connection takes five rounds (14.5 + 29 + 57.9 + 115.8 kB, then the rest),
  not one: `slow_start_rounds(size, bdp=...)` does the arithmetic. Bytes the window does not allow
  yet stay unread in the sender's socket, as in a real sender's buffer. After a silence longer than
  the retransmission timeout (round trip + RTO_MIN = 200 ms), a direction whose window grew starts
  again from the initial window (RFC 5681 4.1; Linux's net.ipv4.tcp_slow_start_after_idle = 1, the
  default): a keep-alive connection idle between two large answers pays slow start again.
  `slow_start_restarts` counts these restarts.

What it does not model: packet loss and retransmission (except as the `loss` toxic's stall),
reordering, duplication, congestion control after slow start (a loss never halves a window;
after idle the window returns to the initial one at once, where Linux halves it per timeout
down to that), the receiver's window, Nagle's algorithm and delayed ACKs,
queueing delay in the slow-start rounds beyond the first bytes of a round, per-packet header
bytes (the counters count the bytes the end points wrote), and any head-of-line blocking unless
the loss toxic is on. The model is good for the lessons' questions (how many round trips, how
many bytes, who waits for whom); it is not a packet-level simulator.

Faults (`net.toxic(kind, **params)` on, `net.clear(kind=None)` off; they apply to connections
already open and to new ones, from the moment they are switched on):

- `"timeout"` (toxiproxy "timeout" with timeout=0), `direction="both"`: a blackhole. Bytes read
  are dropped, nothing is closed, and an end point that closes or resets is not passed on while
  the toxic is on: a half-open connection where neither side knows. `clear` lets later bytes and
  held ends through (the dropped bytes stay lost). The kernel still accepts new connections.
- `"reset_peer"`: `after_ms=` (default 0: at once) or `after_bytes=` (bytes forwarded in
  `direction`, default both ways counted together, since the toxic reached the connection): close
  both sockets with SO_LINGER 0, so both peers get an RST. With after_bytes exactly that many bytes
  go through before the reset. A connection opened while the toxic is on gets the same treatment.
- `"idle_timeout"`: `seconds=`: close (FIN to both sides) a connection that carried no byte in
  either direction for that long, like nginx's proxy_read_timeout or an AWS ALB's idle timeout
  (both default to 60 s). Any byte, a ping frame too, restarts the clock.
- `"refuse_upgrade"`: `status=403`: a proxy that speaks only plain HTTP. A request carrying
  `Upgrade: websocket` is not forwarded; the client gets a plain HTTP `status` answer one
  downstream delay later and the connection is closed. Connections already upgraded stay up.
- `"loss"`: `probability=`, `rto_ms=200`, `seed=0`, `direction="both"`. A user-space proxy sees a
  byte stream, not segments, so it cannot drop one; it models what a lost segment costs the
  application: each chunk counts as ceil(bytes / MSS) segments, each lost with `probability`
  (seeded per connection and direction), and a chunk with a lost segment arrives `rto_ms` late,
  with every later byte of that connection and direction waiting behind it (head-of-line
  blocking). Other connections are not held up. 200 ms is Linux's minimum retransmission timeout;
  fast retransmit and tail-loss probes often recover in one or two round trips instead, so the
  stall is at the slow end of what TCP does. `losses` lists every modelled loss.

The proxy runs in its own process (started by `start()`, controlled over a pipe), so its timers
do not wait for the kernel's GIL while a cell, the lab server or a client computes. The process
ends with `stop()`, when the NetemProxy is garbage collected, at interpreter exit, and by itself
when the pipe closes (the kernel died). `process=False` runs it on a thread of this process
instead (the way it ran before; benchmarks/netem_fidelity.py compares the two). `lateness_ms`
shows the link's own timing error: how late it wrote each chunk after its due time. The process
raises its soft open-file limit as the lab does, and its event loop uses epoll (kqueue on macOS),
so one link carries thousands of connections (select() stopped at 1,024 descriptors, ~500
connections), with timers still kept to the microsecond (see `NetemEngine.new_loop`).

The package, in the order a chunk meets it: `link` (profiles, the link and slow-start model, the
lanes a chunk waits in), `faults` (the toxics' parameters), `engine` (NetemEngine, the asyncio
proxy that applies both), `backends` (the process or thread it runs in, and the JSON control
channel; `python -S -m labkit.net.netem` is the process), `api` (NetemProxy); `udp` (UdpLink: the same link
model for datagrams, so QUIC crosses it with real drops). Every public name is importable from
`labkit.net.netem`.
"""

from __future__ import annotations

from .api import NetemProxy
from .backends import START_TIMEOUT as START_TIMEOUT  # the other names, importable as before the split
from .engine import NetemEngine
from .faults import TOXIC_KINDS
from .faults import check_toxic as check_toxic
from .link import BURST_GAP as BURST_GAP
from .link import INITIAL_WINDOW, KB, MSS, PROFILES, Profile, Toxics, profile, slow_start_rounds
from .link import MAX_AIM_EARLY as MAX_AIM_EARLY
from .link import MAX_QUEUED_SLICES as MAX_QUEUED_SLICES
from .link import MIN_QUEUE_BYTES as MIN_QUEUE_BYTES
from .link import SLICE_SECONDS as SLICE_SECONDS
from .udp import UdpLink

__all__ = ["INITIAL_WINDOW", "KB", "MSS", "PROFILES", "TOXIC_KINDS", "NetemEngine", "NetemProxy",
           "Profile", "Toxics", "UdpLink", "profile", "slow_start_rounds"]
