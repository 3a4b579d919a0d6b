"""Checkers for lesson 03 (the latency lab). Each takes the student's answer and the run it came
from (the tidy frame of `lk.compare_transports`) and compares with what that run measured."""

from __future__ import annotations

from ._core import Feedback, as_number, exercise, verdict

__all__ = ["new_connection_round_trips", "websocket_break_even", "header_bytes_saved",
           "websocket_bytes_saved",
           "parallel_prediction", "new_connection_prediction"]


TRIALS = 3
"""Runs the timing checkers measure (the fastest and the median count, see their docstrings)."""


def _needs_bytes(frame, name: str) -> Feedback | None:
    """A refusal when `frame` lacks keep-alive REST and WebSocket rows or counted no bytes, else None."""
    problem = _needs(frame, ["rest-keepalive", "websocket"], name)
    if problem is None and frame["bytes_up"].isna().all():
        problem = verdict(False, "", "This run counted no bytes (profile=None); measure through "
                          "the emulator, e.g. profile='loopback'.", name)
    return problem


def _needs(frame, transports, name: str) -> Feedback | None:
    if frame is None or not hasattr(frame, "columns") or "transport" not in frame.columns:
        return verdict(False, "", "Pass the frame your run returned as the second argument, "
                       "e.g. check(answer, g4).", name)
    missing = [t for t in transports if t not in set(frame["transport"])]
    if missing:
        return verdict(False, "", f"This run has no {', '.join(missing)} rows; measure with "
                       f"transports including {', '.join(missing)}.", name)
    return None


@exercise("round trips of a new connection", answer="answer",
          how="Answer with a whole number of round trips, from the medians of g4.")
def new_connection_round_trips(answer, frame=None) -> Feedback:
    """Exercise: from the data, how many network round trips does a REST request on a new
    connection cost? (Its median divided by the keep-alive median, rounded to a whole number.)"""
    name = "round trips of a new connection"
    problem = _needs(frame, ["rest-new", "rest-keepalive"], name)
    if problem is not None:
        return problem
    from labkit.lessons.latency import round_trips_per_connection

    measured = round_trips_per_connection(frame)
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Answer with a number: divide the median round trip of "
                       "rest-new by the median of rest-keepalive.", name)
    expected = round(measured)
    ok = value == expected or (value != int(value) and abs(value - measured) <= 0.25)
    tls = bool(frame["tls"].any()) if "tls" in frame.columns else False
    why = ("one for the TCP handshake, one for TLS, one for the request itself" if expected == 3
           and tls else "one for the TCP handshake, one for the request itself")
    return verdict(
        ok,
        f"Yes: this run measured {measured:.2f} keep-alive round trips, so {expected} ({why}).",
        f"{value:g} is not what this run shows: what does a request on a new connection wait "
        "for before its bytes can go? Compare the medians of rest-new and rest-keepalive "
        "(lk.measure.summary(frame)).",
        name,
    )


@exercise("break-even", answer="answer", how="Answer with a whole number of messages.")
def websocket_break_even(answer, frame=None) -> Feedback:
    """Exercise: counting the opening handshake, from how many messages on is one WebSocket
    faster in total than REST with a new connection per message? (Use exchange_totals.)

    Exact: the run's own model (set-up + N x median round trip) decides, so an answer one off
    either side is refused (at N - 1 the WebSocket is not ahead yet; N + 1 is not the first)."""
    name = "break-even"
    problem = _needs(frame, ["rest-new", "websocket"], name)
    if problem is not None:
        return problem
    from labkit.lessons.latency import exchange_totals

    value = as_number(answer)
    if value is None or value < 1 or value != int(value):
        return verdict(False, "", "Answer with a whole number of messages (1 or more).", name)
    totals = exchange_totals(frame, messages=range(1, 201))
    ws = totals[totals["transport"] == "websocket"].set_index("messages")["total_ms"]
    rest = totals[totals["transport"] == "rest-new"].set_index("messages")["total_ms"]
    faster = [n for n in ws.index if ws[n] < rest[n]]
    if not faster:
        return verdict(False, "", "In this run WebSocket never wins within 200 messages: is the "
                       "profile loopback? Try the 4G run.", name)
    first, n = faster[0], int(value)
    if n == first:
        return verdict(True, f"Right: from {first} messages on, the WebSocket's one-off handshake "
                       f"({ws[n] - n * (ws[2] - ws[1]):.0f} ms) is paid back (each REST request "
                       "pays its own connection).", "", name)
    if n < first:
        hint = (f"At {n} message{'s' * (n > 1)} the WebSocket is not ahead yet in this run: its "
                "handshake is still being paid off. Compare both totals at your N.")
    else:
        hint = (f"At {n} messages the WebSocket is ahead, but is it the first N where it is? "
                "Look at the totals just below your answer.")
    return verdict(False, "", hint + " (lk.latency.exchange_totals(frame, messages=...))", name)


@exercise("bytes per message", answer="answer", how="Answer with a number of bytes.")
def header_bytes_saved(answer, frame=None) -> Feedback:
    """Exercise: how many more bytes (up plus down) does one REST keep-alive round trip put on
    the wire than one WebSocket message round trip with the same payload? (Medians.)"""
    name = "bytes per message"
    problem = _needs_bytes(frame, name)
    if problem is not None:
        return problem
    from labkit.measure import median

    size = frame["payload_bytes"].min()
    rows = frame[frame["payload_bytes"] == size]

    def wire(transport):
        sel = rows[rows["transport"] == transport]
        return median(sel["bytes_up"] + sel["bytes_down"])

    expected = wire("rest-keepalive") - wire("websocket")
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Answer with a number of bytes: median of bytes_up + "
                       "bytes_down for rest-keepalive minus the same for websocket.", name)
    return verdict(
        abs(value - expected) <= max(4.0, 0.05 * abs(expected)),
        f"Right: {expected:.0f} extra bytes per exchange, almost all of them HTTP headers; a "
        f"WebSocket frame adds 2-14 bytes of header around the {size}-byte payload.",
        f"{value:g} B is not this run's difference. Take the median of bytes_up + bytes_down "
        f"per transport for the {size}-byte payload, then subtract the WebSocket's from the "
        "keep-alive request's.",
        name,
    )


def _handshake_bytes(lab) -> int:
    """HTTP bytes (up + down) of one WebSocket opening handshake to `lab`, measured now through a
    private tap, with the client `lk.compare_transports` uses."""
    from websockets.asyncio.client import connect

    from labkit import _loop
    from labkit.net.wire import WireTap

    async def handshake(url: str) -> None:
        conn = await connect(url, compression=None, open_timeout=10)
        await conn.close()

    with WireTap(lab).start() as tap:
        _loop.run(handshake(tap.url("ws") + "/ws/echo"), timeout=20)
        messages = tap.settle().http_messages()
    return int(messages["wire_bytes"].sum())


@exercise("bytes of N messages, handshake included", answer="answer",
          how="Answer with a number of bytes.")
def websocket_bytes_saved(answer, frame=None, lab=None, *, messages: int = 100) -> Feedback:
    """Exercise: how many fewer HTTP/WebSocket bytes (up + down) do `messages` echoes put on the
    wire over one WebSocket, its opening handshake included, than over one keep-alive REST
    connection? Per-echo bytes: the run's medians (smallest payload); the handshake: measured
    again now through the checker's own tap in front of `lab` (default: the running lab; the
    run does not hold it)."""
    name = f"bytes of {messages} messages"
    problem = _needs_bytes(frame, name)
    if problem is not None:
        return problem
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Answer with a number of bytes.", name)
    from labkit.measure import median
    from labkit.server.runner import current

    lab = lab if lab is not None else current()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    rows = frame[frame["payload_bytes"] == frame["payload_bytes"].min()]

    def per_echo(transport):
        sel = rows[rows["transport"] == transport]
        return median(sel["bytes_up"] + sel["bytes_down"])

    per_message = per_echo("rest-keepalive") - per_echo("websocket")
    handshake = _handshake_bytes(lab)
    expected = messages * per_message - handshake
    tolerance = min(handshake / 4, max(20.0, 0.002 * abs(expected)))
    if abs(value - expected) <= tolerance:
        return verdict(True, f"Right: {messages} × {per_message:.0f} B saved per echo, minus the "
                       f"handshake's {handshake} B (request and 101 answer, measured again just "
                       f"now): {expected:,.0f} B. From the second message on the WebSocket is "
                       "ahead in bytes; in time it needs more (exercise 2).", "", name)
    slips = [(messages * per_message, "That leaves the handshake out: the WebSocket pays its "
              "opening request and 101 answer once, before its first message."),
             (messages * per_message + handshake, "The handshake is a cost of the WebSocket: "
              "subtract it from what it saves, do not add it."),
             (per_message, f"That is one echo; the question asks about {messages}."),
             (-expected, "Upside down: REST puts more bytes on the wire per message, so the "
              "saving is positive.")]
    for wrong, hint in slips:
        if abs(value - wrong) <= tolerance:
            return verdict(False, "", hint, name)
    return verdict(False, "", f"Not this run's number. Per echo: the median of bytes_up + "
                   f"bytes_down per transport in the run; {messages} echoes of each; then the "
                   "WebSocket's opening handshake, measured through a tap (tap.http_messages()).",
                   name)


def _emulated(lab):
    """Where a timing checker measures: `lab` itself when it is this kernel's own, else (a class
    server, another machine across a real network) this kernel's own lab, as the lesson's
    timing cells do: the emulated profile must be the whole path for a prediction from it."""
    from labkit.course.classroom import own_lab

    return own_lab(lab, "an emulated network needs the quiet loopback of this machine under it")


@exercise("requests over parallel connections", answer="answer_ms",
          how="Answer with your prediction in milliseconds.")
def parallel_prediction(answer_ms, lab=None, *, messages: int = 30, connections: int = 3,
                        profile: str = "4g") -> Feedback:
    """Exercise: predict how long `messages` echoes take (ms) over `connections` keep-alive HTTP/1.1
    connections on `profile`, connections already open. The checker measures it through the
    emulator (lk.latency.compare_patterns, TRIALS times) and accepts a prediction within 25 % of
    a time it measured: from 25 % under the fastest run to 25 % over the median. A busy machine
    only adds time (a stalled process, a late thread), so the fastest run is nearest to what
    the profile models, and the median is what a student measuring it would see. The answer must
    also lie within 0.7-1.6 times the model (messages / connections round trips), so that a loaded
    machine's slow median can never make the lock-step answer (3x the model) right."""
    name = f"{messages} requests over {connections} connections"
    if lab is None or not hasattr(lab, "port"):
        return verdict(False, "", "Pass the running lab as the second argument.", name)
    value = as_number(answer_ms)
    if value is None or value <= 0:
        return verdict(False, "", "Answer with a positive number of milliseconds.", name)
    from labkit.lessons.latency import compare_patterns
    from labkit.measure import median
    from labkit.net.netem import profile as resolve

    rtt = resolve(profile).rtt_ms
    run = compare_patterns(_emulated(lab), messages=messages, parallel=connections,
                           profile=profile, patterns=["rest parallel"], progress=False,
                           trials=TRIALS)
    fastest, measured = float(run["total_ms"].min()), median(run["total_ms"])
    model = messages / connections * rtt  # each connection: one round trip per echo it carries
    if 0.75 * fastest <= value <= 1.25 * measured and 0.7 * model <= value <= 1.6 * model:
        return verdict(True, f"Yes: measured {measured:.0f} ms just now (median of {TRIALS} runs; "
                       f"fastest {fastest:.0f} ms), {measured / rtt:.1f} round "
                       f"trips of {rtt:g} ms: the client waits for each answer before the next "
                       f"request on its connection (it does not pipeline), so {messages} requests "
                       f"need about {messages} / {connections} rounds.", "", name)
    if value < 10:
        hint = "That looks like seconds; answer in milliseconds."
    elif value > 1.25 * measured:
        hint = ("Too slow: the connections work at the same time. How many requests does each "
                "one carry, one after another?")
    else:
        hint = ("Too fast: the client (like every browser) sends a connection's next request "
                "only after the answer to the previous one, so each request costs a round trip. "
                "Pipelining would lift that, but this client does not pipeline.")
    return verdict(False, "", hint, name)


@exercise("a new connection far away", answer="answer_ms",
          how="Answer with your prediction in milliseconds.")
def new_connection_prediction(answer_ms, lab=None, *, profile: str = "intercontinental"
                              ) -> Feedback:
    """Exercise: predict how long (ms) one small REST request on a new connection takes over
    `profile`. The checker measures TRIALS through the emulator (lk.compare_transports) and
    accepts a prediction within 15 % of a time it measured: from 15 % under the fastest to 15 %
    over the median (a busy machine only adds time, so the fastest is nearest to the profile's
    model, and the median is what a student measuring it would see), and within 1.6-2.5 round
    trips, so that a loaded machine's slow median can never make three round trips right."""
    name = f"a new connection over {profile}"
    if lab is None or not hasattr(lab, "port"):
        return verdict(False, "", "Pass the running lab as the second argument.", name)
    value = as_number(answer_ms)
    if value is None or value <= 0:
        return verdict(False, "", "Answer with a positive number of milliseconds.", name)
    from labkit.lessons.latency import compare_transports
    from labkit.measure import median

    run = compare_transports(_emulated(lab), profile=profile, transports=["rest-new"],
                             count=TRIALS, warmup=1, progress=False)
    rtt, measured = run.attrs["rtt_configured_ms"], median(run["rtt_ms"])
    fastest = float(run["rtt_ms"].min())
    if 0.85 * fastest <= value <= 1.15 * measured and 1.6 * rtt <= value <= 2.5 * rtt:
        return verdict(True, f"Yes: measured {measured:.0f} ms just now (median of {TRIALS}; "
                       f"fastest {fastest:.0f} ms), {measured / rtt:.1f} round "
                       f"trips of {rtt:g} ms: one for the TCP handshake, one for the request.", "",
                       name)
    trips = value / rtt
    if value < 10:
        hint = "That looks like seconds; answer in milliseconds."
    elif abs(trips - 1) < 0.3:
        hint = "One round trip carries the request and its answer; what has to happen first?"
    elif trips > measured / rtt:
        hint = ("Too slow. Plain HTTP here: no TLS handshake. Count the round trips before the "
                "request can go, then the request's own.")
    else:
        hint = "Too fast: look up the profile's round trip (lk.netem.profile(...)) and count trips."
    stronger = None if value < 10 else ("A new connection costs the TCP handshake (one round "
                                        "trip) before the request's own round trip.")
    return verdict(False, "", hint, name, then=stronger)
