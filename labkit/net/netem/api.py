"""NetemProxy: the public face of the emulated link (see the package docstring for what it models).

It holds the configuration, starts the engine in a backend (backends.py), forwards toxics and
reads what happened (connections, delays, losses, lateness) over the control channel; after
`stop()` the last answers stay readable. Nothing here touches a socket of the link itself.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict
from typing import Any

from ...clients._target import through
from ..proxy import DOWN, UP, Connection
from .backends import _end_process, _ProcessBackend, _ThreadBackend
from .faults import TOXIC_KINDS, check_toxic
from .link import Profile, Toxics
from .link import profile as _resolve_profile


class NetemProxy:
    """An emulated link in front of `target_host:target_port`, as `profile` says.

    profile: a name from PROFILES, a Profile, or None for no emulation.
    seed: seeds the jitter, so the same seed and the same traffic give the same delays.
    model_handshake: make each new connection wait one round trip (see the module docstring).
    slow_start: make new connections ramp up as TCP slow start does (see the module docstring).
    process: run the link in its own process (default) or, with False, on a thread of this one.
    """

    def __init__(self, target_host: str, target_port: int, profile: str | Profile | None = None,
                 *, seed: int = 0, model_handshake: bool = True, slow_start: bool = True,
                 host: str = "127.0.0.1", port: int = 0, history: int = 10_000,
                 process: bool = True, limits: dict | None = None):
        self.target = (target_host, target_port)
        self._userinfo, self._prefix = "", ""
        self.host, self.port = host, port
        self.profile = _resolve_profile(profile)
        self.seed = seed
        self.model_handshake, self.slow_start, self.process = model_handshake, slow_start, process
        self._config = {"target": [target_host, target_port], "profile": asdict(self.profile),
                        "seed": seed, "model_handshake": model_handshake, "slow_start": slow_start,
                        "host": host, "port": port, "history": history,
                        "limits": dict(limits or {})}
        self._backend: _ProcessBackend | _ThreadBackend | None = None
        self._finalizer: weakref.finalize | None = None
        self._pending_toxics: dict[str, dict] = {}
        self._last: dict[str, Any] = {"connections": [], "handshake_ms": {}, "losses": [], "toxics": {},
                      "slow_start_restarts": 0, "delays": {UP: [], DOWN: []}}

    @classmethod
    def for_lab(cls, lab, profile: str | Profile | None = None, **options) -> NetemProxy:
        """A proxy in front of a running LabServer (not started: use `with` or `.start()`)."""
        proxy = cls(lab.host, lab.port, profile, **options)
        proxy._userinfo, proxy._prefix = through(lab)  # a class server: same identity through it
        return proxy

    def url(self, scheme: str = "http", path: str = "") -> str:
        """The URL through the emulated network, e.g. net.url("ws", "/ws/echo"); for a class
        server's proxy it carries the lab's token and path prefix, as `lab.url` does."""
        return f"{scheme}://{self._userinfo}{self.host}:{self.port}{self._prefix}{path}"

    def toxics(self, direction: str) -> Toxics:
        """The profile's delay and rate knobs for `direction` ("up" or "down")."""
        return self.profile.upstream if direction == UP else self.profile.downstream

    def __repr__(self) -> str:
        state = f"listening on {self.url()}" if self._backend else "not started"
        toxics = ", ".join(self.active_toxics) or "none"
        return (f"<NetemProxy {self.profile.name} -> {self.target[0]}:{self.target[1]}, {state}, "
                f"toxics: {toxics}>")

    # -- faults ----------------------------------------------------------------------------------
    def toxic(self, kind: str, **params) -> NetemProxy:
        """Switch a fault on now (see the module docstring); again with new params replaces it."""
        checked = check_toxic(kind, params)
        if self._backend is None:
            self._pending_toxics[kind] = checked
        else:
            self._last["toxics"] = self._backend.call("toxic", kind=kind, params=checked)
        return self

    def clear(self, kind: str | None = None) -> NetemProxy:
        """Switch one fault off, or every fault with kind=None."""
        if kind is not None and kind not in TOXIC_KINDS:
            raise ValueError(f"unknown toxic {kind!r}; choose one of {', '.join(TOXIC_KINDS)}")
        if self._backend is None:
            self._pending_toxics = {} if kind is None else {
                k: v for k, v in self._pending_toxics.items() if k != kind}
        else:
            self._last["toxics"] = self._backend.call("clear", kind=kind)
        return self

    @property
    def active_toxics(self) -> dict[str, dict]:
        """The faults switched on now, with their parameters."""
        if self._backend is None:
            return dict(self._pending_toxics)
        return dict(self._last["toxics"])

    # -- what happened ---------------------------------------------------------------------------
    def _stats(self) -> dict:
        if self._backend is not None:
            self._last.update(self._backend.call("stats"))
        return self._last

    @property
    def connections(self) -> list[Connection]:
        """Every connection so far (id, opened_ns, closed_ns, bytes, ended_by), oldest first."""
        return [Connection(**c) for c in self._stats()["connections"]]

    @property
    def bytes_up(self) -> int:
        """Bytes client -> server over every connection so far (as read by the proxy)."""
        return sum(c["bytes"][UP] for c in self._stats()["connections"])

    @property
    def bytes_down(self) -> int:
        """Bytes server -> client over every connection so far (as read by the proxy)."""
        return sum(c["bytes"][DOWN] for c in self._stats()["connections"])

    @property
    def handshake_ms(self) -> dict[int, float]:
        """Connection id -> the modelled TCP handshake wait it paid, in ms."""
        return {int(k): v for k, v in self._stats()["handshake_ms"].items()}

    @property
    def losses(self) -> list[dict]:
        """Every loss the loss toxic modelled: conn, direction, offset (bytes of that direction
        before the chunk), bytes, segments_lost, stall_ms, t_ns (perf_counter_ns when the chunk
        was scheduled; the same clock in every process on Linux)."""
        return list(self._stats()["losses"])

    @property
    def slow_start_restarts(self) -> int:
        """How many times a direction of a connection restarted slow start after a silence
        (RFC 5681 4.1; see `link.restart_after_idle`)."""
        return int(self._stats().get("slow_start_restarts", 0))

    @property
    def delays_ms(self) -> dict[str, list[float]]:
        """The delay (latency + jitter) drawn for each burst of chunks, per direction, oldest
        first."""
        if self._backend is not None:
            self._last["delays"] = self._backend.call("delays")
        return self._last["delays"]

    @property
    def lateness_ms(self) -> dict[str, list[float]]:
        """Per direction, how late each chunk was written compared with its due time, in ms (negative:
        early), oldest first: the emulator's own timing error on the sending side, not the
        client's or the server's. A chunk read late is not counted here (its due time is set when
        it is read)."""
        if self._backend is not None:
            self._last["lateness"] = self._backend.call("lateness")
        return self._last.get("lateness", {UP: [], DOWN: []})

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> NetemProxy:
        """Start the link (its own process by default); returns once it listens."""
        if self._backend is not None:
            return self
        backend = (_ProcessBackend if self.process else _ThreadBackend)(self._config)
        self.port = backend.start()
        self._backend = backend
        if isinstance(backend, _ProcessBackend):
            self._finalizer = weakref.finalize(self, _end_process, backend.proc)
        for kind, params in self._pending_toxics.items():
            self._last["toxics"] = backend.call("toxic", kind=kind, params=params)
        self._pending_toxics = {}
        return self

    def stop(self) -> None:
        """Stop the link and cut its connections; what happened stays readable. Safe twice."""
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            self._last.update(backend.call("stats"))
            self._last["delays"] = backend.call("delays")
            self._last["lateness"] = backend.call("lateness")
        except (OSError, ValueError, RuntimeError, TimeoutError):
            pass  # the process is gone already: keep what was last seen
        finally:
            backend.stop()
            if self._finalizer is not None:
                self._finalizer.detach()

    def __enter__(self) -> NetemProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

