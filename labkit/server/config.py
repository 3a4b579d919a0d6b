"""The lab server's options, in one immutable value (two equal configs mean "same server")."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_BODY_BYTES = 1024 * 1024
"""Largest HTTP request body and `?size=` answer the lab accepts (1 MiB); larger gets 413."""

MAX_WS_MESSAGE_BYTES = 1024 * 1024
"""Largest WebSocket message the lab accepts (1 MiB); larger closes with 1009."""


@dataclass(frozen=True)
class LabConfig:
    """Everything that shapes one lab server.

    host: interface to bind; loopback unless you ask for another one.
    port: 0 lets the OS pick a free port.
    db: SQLite file for the REST resources; None means a temporary file owned by this run.
    tls: serve https/wss with a locally generated certificate authority.
    allowed_origins: browser Origins accepted on WebSocket routes besides loopback ones.
    max_body: largest HTTP body in bytes. max_ws_message: largest WebSocket message in bytes.
    """

    host: str = "127.0.0.1"
    port: int = 0
    db: str | None = None
    tls: bool = False
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    max_body: int = MAX_BODY_BYTES
    max_ws_message: int = MAX_WS_MESSAGE_BYTES
