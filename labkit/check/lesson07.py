"""Checkers for lesson 07 (reliability: heartbeats, reconnects, epochs, idempotency, semantics)."""

from __future__ import annotations

from ._core import Feedback, as_number, close_to, exercise, verdict

__all__ = ["backoff_ceiling", "notes_after_retries", "lost_at_most_once"]


@exercise("largest full-jitter delay", how="Use the formula of backoff_delays: min(cap, base * 2**n).")
def backoff_ceiling(answer, *, base_s: float, cap_s: float, attempt: int) -> Feedback:
    """The largest delay full jitter can draw before reconnection attempt number `attempt`
    (counted from 1), in seconds: min(cap_s, base_s * 2**(attempt - 1))."""
    name = "largest full-jitter delay"
    expected = min(cap_s, base_s * 2 ** (attempt - 1))
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a number of seconds.", name)
    return verdict(close_to(value, expected, rel=0.01, abs_=1e-9),
                   f"Yes: the ceiling doubles from {base_s:g} s each attempt and stops at "
                   f"{cap_s:g} s, so attempt {attempt} draws from 0 to {expected:g} s.",
                   "The first attempt (n = 0) has ceiling base_s; each later one doubles it, "
                   "until the cap. Count the doublings carefully.", name,
                   then=f"Attempt {attempt} is n = {attempt - 1} in the formula.")


@exercise("notes after retries", how="Count the POSTs that reach the server, then think keys.")
def notes_after_retries(answer, *, posts: int, with_key: bool) -> Feedback:
    """Notes created when the same POST reaches the server `posts` times (the first answers were
    lost), with or without one Idempotency-Key on every try."""
    name = "notes after retries"
    expected = 1 if with_key else posts
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a whole number of notes.", name)
    return verdict(value == expected,
                   "Right: with one key the server runs the POST once and replays that answer."
                   if with_key else
                   f"Right: without a key every one of the {posts} POSTs that arrived created a note.",
                   "A lost answer does not mean a lost request: the server did the work each time "
                   "the request arrived, unless the key told it the request was the same.", name)


@exercise("events lost by at-most-once",
          how="Count the published SEQs (first_seq..last_seq) the reader never delivered.")
def lost_at_most_once(answer, frame) -> Feedback:
    """Events the at-most-once reader lost in `frame` (from reliability.semantics_run)."""
    name = "events lost by at-most-once"
    rows = frame[frame["mode"] == "at_most_once"] if "mode" in frame else frame.iloc[0:0]
    if rows.empty:
        return verdict(False, "", "Pass the frame of semantics_run (it has a mode column).", name)
    expected = int(rows["lost"].iloc[0])
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a whole number of events.", name)
    return verdict(value == expected,
                   f"Yes: {expected} events were published while it was reconnecting, and "
                   "starting again from 'now' skipped them.",
                   "Lost means published but never delivered: take the SEQs from "
                   "semantics.attrs['first_seq'] to semantics.attrs['last_seq'] and remove the "
                   "ones in semantics.attrs['delivered']['at_most_once'] (count each SEQ once).",
                   name)
