"""Checkers for lesson 09 (one bank, both transports). Each one finds the truth itself, live or from
the lesson's own data, and refuses the plausible wrong answers."""

from __future__ import annotations

from ._core import Feedback, as_number, close_to, exercise, verdict

__all__ = ["keyed_retries", "overdraft_status", "telemetry_ratio", "big_note_bytes"]


@exercise("three tries with one key", how="Give a whole number of payments.")
def keyed_retries(answer, target) -> Feedback:
    """How many payments the bank creates when one payment is sent three times with one key."""
    from labkit.clients.bank import open_account, retry_after_lost_answer

    name = "three tries with one key"
    if isinstance(answer, bool) or not isinstance(answer, int):
        return verdict(False, "", "Give a whole number of payments (e.g. 2).", name)
    account = open_account(target, "checker", 10_000)["id"]
    created = retry_after_lost_answer(target, account, with_key=True, attempts=3)["payments_created"]
    return verdict(answer == created,
                   f"Right: {created}. The checker just sent it three times: the second and third "
                   "tries replayed the first answer.",
                   "Think about what the server stores with the key, then try it: "
                   "bank.retry_after_lost_answer(lab, account, with_key=True, attempts=3).", name,
                   then="The key makes the server answer a retry with the stored first answer.")


@exercise("a payment larger than the balance", how="Give the status code as a number.")
def overdraft_status(answer, target) -> Feedback:
    """The status the bank answers to a payment above the available balance (checked live)."""
    from labkit.clients.bank import open_account
    from labkit.clients.rest import RestClient

    name = "a payment larger than the balance"
    account = open_account(target, "checker", 100)["id"]
    with RestClient(target) as api:
        status = api.post("/api/payments", json={"account": account, "payee": "x", "amount": 101}).status
    try:
        value = int(answer)
    except (TypeError, ValueError):
        return verdict(False, "", "Give the status code as a number (send such a payment and look).", name)
    return verdict(value == status,
                   f"Right: {status} Conflict: the request is valid, but it conflicts with the "
                   "account's current state (402 Payment Required is reserved and unused).",
                   "Open an account with little money, pay more than it holds and read `.status`.", name)


@exercise("bytes per reading with one reading per device", how="A ratio such as 2.5.")
def telemetry_ratio(answer, target, telemetry=None, devices: int = 10) -> Feedback:
    """Bytes per reading of one POST per reading divided by those of the WebSocket when each device
    sends ONE reading (HTTP/WebSocket bytes, as the lesson's table counts them): measured by the
    checker (`iot.telemetry` with readings=1, both modes). `telemetry`: the lesson's own table, so
    its ratio (many readings per device) is recognised as the answer to another question."""
    from labkit.clients import iot

    name = "bytes per reading with one reading per device"
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a ratio (a number, e.g. 2.5).", name)
    per = {mode: iot.telemetry(target, mode, devices=devices, readings=1)["bytes_per_reading"]
           for mode in ("rest", "ws")}
    expected = per["rest"] / per["ws"]
    if close_to(value, 1 / expected, rel=0.05) and not close_to(value, expected, rel=0.05):
        return verdict(False, "", "That is the ratio the other way round: REST divided by WebSocket.",
                       name)
    if telemetry is not None and not close_to(value, expected, rel=0.05):
        table = telemetry.set_index("mode")["bytes_per_reading"]
        if close_to(value, table["rest"] / table["ws"], rel=0.1):
            return verdict(False, "", "That is the ratio for many readings per device. With one "
                           "reading, what does the WebSocket pay for that reading alone?", name)
    return verdict(close_to(value, expected, rel=0.05),
                   f"Yes: {expected:.2f}× ({per['rest']:.0f} B vs {per['ws']:.0f} B per reading, "
                   "just measured). With one reading the WebSocket's handshake and close are paid "
                   "by that one reading, so a lone POST is cheaper; a socket pays off only for a "
                   "device that keeps sending.",
                   "What does a WebSocket cost before its first message, and how many readings "
                   "share that cost here?", name,
                   then="Measure it: iot.telemetry(lab, 'ws', devices=10, readings=1) and the same "
                   "with 'rest'; divide the bytes_per_reading.")


@exercise("reading a ten times larger note", how="A number of bytes per read.")
def big_note_bytes(answer, target) -> Feedback:
    """Bytes per read of a 20,000-character note over /ws/rest (measured by the checker, 5 %)."""
    from labkit.clients.rest_ws import compare_reads

    name = "reading a ten times larger note"
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a number of bytes per read.", name)
    reads = compare_reads(target, note_bytes=20_000, reads=3).set_index("way")["bytes_per_read"]
    measured = reads["REST over WebSocket"]
    return verdict(close_to(value, measured, rel=0.05),
                   f"Yes: about {measured:,.0f} B per read. Every read carries the whole body (no 304 "
                   "over a WebSocket), and the framing around it stays a few bytes, so ten times the "
                   "text is a little less than ten times the bytes.",
                   "Each read answers with the whole note. What grows with the note, and what stays "
                   "the same size?", name,
                   then="Measure it: rest_ws.compare_reads(lab, note_bytes=20_000, reads=3).")
