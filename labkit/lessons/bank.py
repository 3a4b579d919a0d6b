"""Lesson 09's experiments that need more than one call, and the closing table computed from them.

- `one_shot(lab)`: one request on a fresh connection, REST vs WebSocket (connect + one message):
  what a rare interaction such as signing in costs each way.
- `telemetry(lab, devices, readings)`: the three ways of sending readings, each row with the
  measured HTTP/WebSocket bytes and, beside them, lesson 03's TCP/IP packet model on top.
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


def telemetry(lab, devices: int = 20, readings: int = 20, *, progress=None):
    """`clients.iot.telemetry` for every mode, one row each: bytes per reading as measured
    (HTTP/WebSocket bytes, `bytes_per_reading`) and with lesson 03's TCP/IP model added
    (`labkit.lessons.latency.tcp_ip_bytes`: 52 B of IPv4 + TCP headers per packet, one ACK per
    exchange, 7 packets to open and close a connection), `bytes_with_tcp_ip_per_reading`; the
    ratio to the WebSocket's for both. `progress` (e.g. `print`) gets a line every 2 s and after
    each mode."""
    import pandas as pd

    from labkit.clients import iot
    from labkit.lessons.latency import tcp_ip_bytes

    rows = []
    for mode in iot.MODES:
        rows.append(iot.telemetry(lab, mode, devices=devices, readings=readings, packet_model=tcp_ip_bytes,
                                  progress=progress))
        if progress is not None:
            progress(f"{mode}: {rows[-1]['readings_stored']} of {rows[-1]['readings_sent']} readings stored")
    frame = pd.DataFrame(rows)
    ws = frame.set_index("mode").loc["ws"]
    frame["x_ws_http_ws_bytes"] = frame["bytes_per_reading"] / ws["bytes_per_reading"]
    frame["x_ws_with_tcp_ip"] = frame["bytes_with_tcp_ip_per_reading"] / ws["bytes_with_tcp_ip_per_reading"]
    return frame


def ratio_sentence(frame) -> str:
    """One sentence: how many times the WebSocket's bytes one POST per reading costs, counted both
    ways (HTTP/WebSocket bytes only, and with the TCP/IP model), and why the two differ."""
    by = frame.set_index("mode")
    rest, ws = by.loc["rest"], by.loc["ws"]
    only, model = rest["x_ws_http_ws_bytes"], rest["x_ws_with_tcp_ip"]
    change = "smaller" if model < only else "larger"
    return (f"One POST per reading costs {only:.1f}× the WebSocket's bytes per reading counting "
            f"HTTP/WebSocket bytes only (measured by the tap: {rest['bytes_per_reading']:.0f} B vs "
            f"{ws['bytes_per_reading']:.0f} B), and {model:.1f}× with lesson 03's TCP/IP model added "
            f"({rest['tcp_ip_bytes_per_reading']:.0f} B vs {ws['tcp_ip_bytes_per_reading']:.0f} B of "
            f"packet headers, ACKs and connection set-up per reading): the ratio is {change} when the "
            "packets are counted, so say which bytes a ratio counts.")


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
        ("payment", "REST" if key.get("outcome_at_location") else "either",
         f"not the key: a key de-duplicates over either transport (lesson 07 did it over WebSocket "
         f"with message ids; here {no_key['payments_created']} payment(s) without a key, "
         f"{key['payments_created']} with one, both over REST). What REST adds: the retry's answer "
         f"is a status ({key.get('last_status')}) with the payment's own address "
         f"({key.get('location')}), and a GET of it on a new connection said "
         f"'{key.get('outcome_at_location')}': a client that lost every answer still learns the "
         "outcome, which a WebSocket would need its own lookup message for"),
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
