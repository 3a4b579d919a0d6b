"""Lesson 09's experiments that need more than one call, and the closing table computed from them.

- `one_shot(lab)`: one request on a fresh connection, REST vs WebSocket (connect + one message):
  what a rare interaction such as signing in costs each way.
- `interaction_table(results)`: for each interaction of the bank, the transport the measured
  numbers favour and the numbers that say so. Nothing in it is written in advance: every choice is a
  comparison of two measurements from `results` (a dict the lesson fills as it runs).
"""

from __future__ import annotations

import math

from labkit import measure


def one_shot(lab, trials: int = 20) -> dict:
    """Median ms of one answered request on a NEW connection: REST (connect + GET) vs WebSocket
    (handshake + one echo), `trials` times each."""
    from labkit.clients.rest import RestClient
    from labkit.clients.ws import WsClient

    rest_ms, ws_ms = [], []
    for _ in range(trials):
        with RestClient(lab, keep_alive=False) as api:
            rest_ms.append(api.get("/api/echo?size=64").elapsed_ms)
        ws = WsClient(lab, "/ws/echo")
        _, echo_ms = ws.echo("x" * 64)
        ws_ms.append(ws.connect_ms + echo_ms)
        ws.close()
    return {"rest_new_connection_ms": measure.median(rest_ms),
            "ws_connect_and_echo_ms": measure.median(ws_ms), "trials": trials}


def _pick(rest: float, ws: float) -> str:
    return "REST" if rest <= ws else "WebSocket"


def interaction_table(results: dict):
    """One row per interaction: the transport favoured by the data and the comparison behind it.

    `results` holds: one_shot (from `one_shot`), retry_no_key / retry_key (from
    `clients.bank.retry_after_lost_answer`), reads (from `clients.rest_ws.compare_reads`),
    payments (from `clients.bank.pay_and_watch`, over WebSocket), chat (from
    `clients.bank.support_chat`) and commands (from `clients.iot.command_latency`, both modes at
    one poll interval). The median delay of the polling devices stands for what any poller at that
    interval waits: for the balance, the chat and notifications alike."""
    import pandas as pd

    shot = results["one_shot"]
    reads = results["reads"].set_index("way")["bytes_per_read"]
    commands = results["commands"].groupby("mode")["delay_ms"].median()
    no_key, key = results["retry_no_key"], results["retry_key"]
    screen = measure.median(results["payments"]["screen_ms"])
    poll_ms = commands.get("poll", math.nan)
    chat_ws = measure.median(results["chat"]["delay_ms"])
    polled_screen = screen + poll_ms  # a model: the moment it settled, plus a poller's measured wait
    rows = [
        ("sign-in (once per visit)", _pick(shot["rest_new_connection_ms"], shot["ws_connect_and_echo_ms"]),
         f"one answer on a new connection: REST {shot['rest_new_connection_ms']:.2f} ms, "
         f"WebSocket handshake + message {shot['ws_connect_and_echo_ms']:.2f} ms"),
        ("payment", "REST" if key["payments_created"] < no_key["payments_created"] else "either",
         f"a retried payment created {no_key['payments_created']} payment(s) without an Idempotency-Key "
         f"and {key['payments_created']} with one: the HTTP header, status codes and Location "
         "make the retry safe and the outcome explicit"),
        ("balance while the page is open", _pick(polled_screen, screen),
         f"payment to settled balance on screen: pushed {screen:.1f} ms (measured); polled about "
         f"{polled_screen:.0f} ms (model: the same moment plus a poller's measured median wait)"),
        ("statement download", _pick(reads["REST with cache (304)"], reads["REST over WebSocket"]),
         f"bytes per repeated read: REST with ETag/304 {reads['REST with cache (304)']:.0f} B, "
         f"over WebSocket {reads['REST over WebSocket']:.0f} B (no 304 there)"),
        ("support chat", _pick(poll_ms, chat_ws),
         f"median delivery: WebSocket {chat_ws:.1f} ms, a poller at the same interval {poll_ms:.1f} ms"),
        ("notifications / commands", _pick(commands.get("poll", math.inf), commands.get("ws", math.inf)),
         f"median delay to the device: pushed {commands.get('ws', float('nan')):.1f} ms, polled "
         f"{commands.get('poll', float('nan')):.1f} ms"),
    ]
    return pd.DataFrame(rows, columns=["interaction", "favoured by the data", "because (this run)"])
