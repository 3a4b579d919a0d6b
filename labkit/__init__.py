"""labkit: WebSocket vs REST, measured live in your notebook.

    import labkit as lk
    lab = lk.start()          # the lab server, in this kernel, on 127.0.0.1
    lk.rest(lab).get("/healthz")

Importing labkit is light: the server, pandas and plotly load when first used.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.2.0.dev0"

QUICK = os.environ.get("LABKIT_QUICK", "") not in ("", "0")
"""True when LABKIT_QUICK=1: lessons shrink trial counts and durations (tests set it)."""

# public name -> "module:attribute" (or "module" for a submodule), resolved on first use
_LAZY = {
    "start": "labkit.server.runner:start",
    "start_cluster": "labkit.cluster:start_cluster",
    "stop_clusters": "labkit.cluster:stop_clusters",
    "scaling": "labkit.lessons.scaling",
    "stop": "labkit.server.runner:stop",
    "current": "labkit.server.runner:current",
    "LabServer": "labkit.server.runner:LabServer",
    "LabStartError": "labkit.server.runner:LabStartError",
    "rest": "labkit.clients.rest:RestClient",
    "websocket": "labkit.clients.ws:WsClient",
    "check": "labkit.check",
    "measure": "labkit.measure",
    "plots": "labkit.plots",
    "widgets": "labkit.widgets",
    "compare_transports": "labkit.lessons.latency:compare_transports",
    "latency": "labkit.lessons.latency",
    "netem": "labkit.net.netem",
    "NetemProxy": "labkit.net.netem:NetemProxy",
    "tls": "labkit.net.tls",
    "ping_meter": "labkit.widgets.ping:ping_meter",
    "ping_summary": "labkit.widgets.ping:summary",
    "feed_run": "labkit.clients.feed:feed_run",
    "feed_source": "labkit.clients.feed:set_source",
    "chat_ws": "labkit.clients.chat:ChatWsClient",
    "chat_rest": "labkit.clients.chat:ChatRestClient",
    "feed_dashboard": "labkit.widgets.dashboard:feed_dashboard",
    "chat_widget": "labkit.widgets.chat:chat_widget",
    "rest_lab": "labkit.lessons.rest",
    "bank_lab": "labkit.lessons.bank",
    "bank_widget": "labkit.widgets.bank:bank_widget",
    "tap": "labkit.net.wire:tap",
    "subscriber": "labkit.clients.reconnect:subscriber",
    "subscriber_widget": "labkit.widgets.subscriber:subscriber_widget",
    "reliability": "labkit.lessons.reliability",
    "browser": "labkit.browser",
    "game": "labkit.clients.game",
    "view": "labkit.tables:view",
    "present": "labkit.plots.base:present",
    "join": "labkit.course.classroom:join",
    "own_lab": "labkit.course.classroom:own_lab",
    "classroom_dashboard": "labkit.widgets.classroom:classroom_dashboard",
}


def pick(quick, full):
    """`quick` under LABKIT_QUICK=1 (tests, CI), `full` for a student: `n = lk.pick(50, 2000)`."""
    return quick if QUICK else full


def table(rows):
    """A list of dicts (or a dict of columns) as a pandas DataFrame, for showing in a cell."""
    import pandas as pd

    return pd.DataFrame(rows)


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["QUICK", "__version__", "pick", "table", *_LAZY]
