"""Faults ("toxics"): their names, parameters and defaults, checked before they reach the link.

`check_toxic` runs in the caller's process (so a typo fails in the cell that made it) and again in
the proxy's, which applies the toxic (engine.py: timers, budgets, seeded loss draws). Real: a reset
is a real RST (SO_LINGER 0), a close a real FIN, a refused upgrade a real HTTP answer, a blackhole
really drops the bytes. Modelled: a "loss" is a stall of `rto_ms` (a byte stream has no segments
to drop; see the package docstring).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..proxy import DOWN, UP

TOXIC_KINDS = ("timeout", "reset_peer", "idle_timeout", "refuse_upgrade", "loss")
"""The faults `NetemProxy.toxic` knows (see the module docstring)."""

_DIRECTIONS = {"both": (UP, DOWN), "up": (UP,), "upstream": (UP,), "down": (DOWN,),
               "downstream": (DOWN,)}
_UPGRADE = re.compile(rb"(?im)^upgrade:[ \t]*websocket")
_REASONS = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable"}



def check_toxic(kind: str, params: dict) -> dict:
    """The parameters of a toxic with defaults filled in; ValueError for anything wrong."""
    def number(name, value, low=0.0, high=math.inf):
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"toxic {kind!r}: {name} must be a number in [{low:g}, {high:g}], "
                             f"got {value!r}")
        return value

    def direction(value):
        if value not in _DIRECTIONS:
            raise ValueError(f"toxic {kind!r}: direction must be 'both', 'up' or 'down', got {value!r}")
        return value

    defaults: dict[str, dict[str, Any]] = {
        "timeout": {"direction": "both"},
        "reset_peer": {"after_ms": None, "after_bytes": None, "direction": "both"},
        "idle_timeout": {"seconds": None},
        "refuse_upgrade": {"status": 403},
        "loss": {"probability": None, "rto_ms": 200.0, "seed": 0, "direction": "both"},
    }
    if kind not in defaults:
        raise ValueError(f"unknown toxic {kind!r}; choose one of {', '.join(TOXIC_KINDS)}")
    unknown = set(params) - set(defaults[kind])
    if unknown:
        raise ValueError(f"toxic {kind!r} takes {', '.join(defaults[kind])}; "
                         f"not {', '.join(sorted(unknown))}")
    p = {**defaults[kind], **params}
    if "direction" in p:
        direction(p["direction"])
    if kind == "reset_peer":
        if p["after_ms"] is not None and p["after_bytes"] is not None:
            raise ValueError("toxic 'reset_peer': give after_ms or after_bytes, not both")
        if p["after_bytes"] is None:
            p["after_ms"] = number("after_ms", 0 if p["after_ms"] is None else p["after_ms"])
        elif isinstance(p["after_bytes"], bool) or not isinstance(p["after_bytes"], int) \
                or p["after_bytes"] < 0:
            raise ValueError(f"toxic 'reset_peer': after_bytes must be a whole number >= 0, "
                             f"got {p['after_bytes']!r}")
    elif kind == "idle_timeout":
        if p["seconds"] is None:
            raise ValueError("toxic 'idle_timeout' needs seconds=, e.g. net.toxic('idle_timeout', "
                             "seconds=60)")
        number("seconds", p["seconds"], 0.001)
    elif kind == "refuse_upgrade":
        if p["status"] not in _REASONS:
            raise ValueError(f"toxic 'refuse_upgrade': status must be one of "
                             f"{', '.join(map(str, _REASONS))}, got {p['status']!r}")
    elif kind == "loss":
        if p["probability"] is None:
            raise ValueError("toxic 'loss' needs probability=, e.g. net.toxic('loss', probability=0.02)")
        number("probability", p["probability"], 0.0, 1.0)
        number("rto_ms", p["rto_ms"])
        if isinstance(p["seed"], bool) or not isinstance(p["seed"], int | str):
            raise ValueError(f"toxic 'loss': seed must be an int or a str, got {p['seed']!r}")
    return p

