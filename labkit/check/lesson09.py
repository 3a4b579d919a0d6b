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


@exercise("bytes per reading", how="A ratio such as 3.5.")
def telemetry_ratio(answer, telemetry) -> Feedback:
    """Bytes per reading of one POST per reading divided by those of the WebSocket, from the frame."""
    name = "bytes per reading"
    per = telemetry.set_index("mode")["bytes_per_reading"]
    expected = per["rest"] / per["ws"]
    inverse = per["ws"] / per["rest"]
    if close_to(answer, inverse, rel=0.03) and not close_to(answer, expected, rel=0.03):
        return verdict(False, "", "That is the ratio the other way round: REST divided by WebSocket.",
                       name)
    return verdict(close_to(answer, expected, rel=0.03),
                   f"Yes: {expected:.1f}× more bytes per reading when every reading is its own HTTP "
                   "request (its headers travel every time; the WebSocket pays its handshake once).",
                   "Divide the bytes_per_reading of the 'rest' row by that of the 'ws' row.", name)


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
