"""The lab server's options, in one immutable value (two equal configs mean "same server")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 1024 * 1024
"""Largest HTTP request body and `?size=` answer the lab accepts (1 MiB); larger gets 413."""

MAX_WS_MESSAGE_BYTES = 1024 * 1024
"""Largest WebSocket message the lab accepts (1 MiB); larger closes with 1009."""

MAX_CONNECTIONS = 4096
"""Most connections served at once; the lab lowers it further to stay clear of the open-file limit
(see `listen.connection_cap`). One more gets 503 problem+json and is closed."""
PER_PEER_SHARE = 0.5
"""Largest share of the connection cap one peer address may hold; one more from it gets 503."""
WS_HEARTBEAT_S = 30.0
"""Seconds between the pings every WebSocket gets unless its route asks for ?heartbeat=; a peer that
does not answer within half of it is closed (the heartbeat of `websocket.MaskCheck`), so idle sockets
whose client is gone do not hold slots."""
HEAD_TIMEOUT_S = 10.0
"""Seconds a request head may take, from the connection's start or from its first byte on a kept-alive
connection; then 408 and closed."""
BODY_TIMEOUT_S = 30.0
"""Seconds a request body (at most 1 MiB) has to arrive once its head did; then 408 and closed."""
KEEPALIVE_TIMEOUT_S = 30.0
"""Seconds an idle keep-alive connection is kept (longer than the HTTP clients' own pools keep one:
aiohttp 15 s, httpx 5 s, so a client never sends on a connection the lab is closing)."""
WRITE_TIMEOUT_S = 30.0
"""Seconds the lab waits for a peer that reads nothing while an answer is waiting; then closed."""
MAX_NOTE_BYTES = 128 * 1024
"""Largest note, as the JSON the API sends (128 KiB); larger gets 413. A page of notes is therefore
at most per_page x 128 KiB (12.5 MiB for per_page=100)."""
MAX_STORE_BYTES = 64 * 1024 * 1024
"""Most bytes all notes may take together (64 MiB of note JSON); a write beyond it gets 507."""
MAX_STREAMS_PER_IDENTITY = 32
"""Most streams (WebSockets, SSE, long polls) one class member may hold open at once on a class
server; one more gets 429 problem+json with Retry-After (a WebSocket handshake is refused so). The
instructor is exempt. Without it one student could take every connection slot of a class server
behind a proxy (a JupyterHub service), where every peer has the proxy's address."""
CHAT_RATE_PER_S = 5.0
"""Chat messages a member may send per second, on average; faster gets 429 (or an error message)."""
CHAT_BURST = 20
"""Chat messages a member may send at once before the rate applies."""


@dataclass(frozen=True)
class LabConfig:
    """Everything that shapes one lab server.

    host: interface to bind; loopback unless you ask for another one.
    port: 0 lets the OS pick a free port.
    db: SQLite file for the REST resources; None means a temporary file owned by this run.
    tls: serve https/wss with a locally generated certificate authority.
    allowed_origins: browser Origins accepted on WebSocket routes besides loopback ones.
    max_body: largest HTTP body in bytes. max_ws_message: largest WebSocket message in bytes.
    allowed_hosts: Host names accepted besides loopback ones (DNS-rebinding guard, hostcheck.py);
    "*" accepts any. The bound `host` itself is always accepted.
    max_connections, per_peer_share, head_timeout, body_timeout, keepalive_timeout, write_timeout,
    ws_heartbeat: connection limits (listen.py, guard.py; the constants above say what each does).
    max_streams_per_identity: open streams per class member (auth.py; the instructor is exempt).
    max_note_bytes, max_store_bytes: bounds of the notes store. chat_rate, chat_burst: each chat
    member's message rate (a token bucket).
    student_tokens, instructor_token: classroom mode (labkit/server/auth.py) when instructor_token is
    set: every route but / and /healthz then needs one of these tokens.
    """

    host: str = "127.0.0.1"
    port: int = 0
    db: str | None = None
    tls: bool = False
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    max_body: int = MAX_BODY_BYTES
    max_ws_message: int = MAX_WS_MESSAGE_BYTES
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    max_connections: int = MAX_CONNECTIONS
    head_timeout: float = HEAD_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_S
    write_timeout: float = WRITE_TIMEOUT_S
    per_peer_share: float = PER_PEER_SHARE
    ws_heartbeat: float = WS_HEARTBEAT_S
    max_streams_per_identity: int = MAX_STREAMS_PER_IDENTITY
    max_note_bytes: int = MAX_NOTE_BYTES
    max_store_bytes: int = MAX_STORE_BYTES
    chat_rate: float = CHAT_RATE_PER_S
    chat_burst: int = CHAT_BURST
    student_tokens: tuple[str, ...] = field(default_factory=tuple, repr=False)
    instructor_token: str | None = field(default=None, repr=False)


LIMIT_FIELDS = ("max_connections", "per_peer_share", "head_timeout", "body_timeout",
                "keepalive_timeout", "write_timeout", "ws_heartbeat", "max_streams_per_identity")
"""The connection limits every entry point takes the same way (`labkit serve --limit NAME=VALUE`,
`Cluster(limits=...)`, `LabConfig(**limits)`)."""


INT_LIMITS = frozenset({"max_connections", "max_streams_per_identity"})


def parse_limits(pairs) -> dict[str, Any]:
    """["head_timeout=5", "max_connections=200"] -> {"head_timeout": 5.0, "max_connections": 200};
    ValueError with what is wrong for an unknown name or a value that is not a positive number."""
    limits: dict[str, float | int] = {}
    for pair in pairs:
        name, sep, raw = str(pair).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in LIMIT_FIELDS:
            raise ValueError(f"--limit takes NAME=VALUE with NAME one of {', '.join(LIMIT_FIELDS)}; "
                             f"got {pair!r}")
        try:
            value: float | int = int(raw) if name in INT_LIMITS else float(raw)
        except ValueError:
            raise ValueError(f"--limit {name} needs a number, not {raw!r}") from None
        if not value > 0 or (name == "per_peer_share" and value > 1):
            raise ValueError(f"--limit {name} must be above 0" + (" and at most 1" if name ==
                                                                  "per_peer_share" else ""))
        limits[name] = value
    return limits
