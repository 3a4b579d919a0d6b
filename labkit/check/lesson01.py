"""Checkers for lesson 01 (REST request-response). Each one re-does or inspects the real requests."""

from __future__ import annotations

from ._core import Feedback, verdict

__all__ = ["conditional_get", "idempotent_but_status_changes", "recovered_from_412"]


def _running_lab():
    from ..server.runner import current

    return current()


def conditional_get(path, headers) -> Feedback:
    """Exercise: the headers that make GET `path` answer 304. The checker sends them itself."""
    from ..clients.rest import RestClient

    name = "conditional GET"
    lab = _running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    if not path or not isinstance(headers, dict) or not headers:
        return verdict(False, "", "Pass a note's path and a dict of request headers, e.g. "
                       "{'If-None-Match': ...}. Which response header holds the value to send?", name)
    with RestClient(lab) as api:
        reply = api.get(str(path), headers={str(k): str(v) for k, v in headers.items()})
    if reply.status == 304:
        star = any(str(v).strip() == "*" for v in headers.values())
        extra = (" (`*` matches any version; with the ETag you ask about *your* copy)"
                 if star else "")
        return verdict(True, f"304 Not Modified with {len(reply.body)} body bytes: your copy is "
                       f"current{extra}.", "", name)
    return verdict(False, "", f"The lab answered {reply.status}, not 304. Send the note's current "
                   "ETag in If-None-Match (read it from a fresh GET's headers).", name)


def idempotent_but_status_changes(verb) -> Feedback:
    """Exercise: which idempotent verb answers with another status the second time? The checker
    repeats each verb twice against the lab (rest_lab.repeat_effects) and compares."""
    from ..rest_lab import repeat_effects, repeat_summary

    name = "idempotent, yet a different answer"
    lab = _running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    if not isinstance(verb, str) or not verb.strip() or verb.strip() == "?":
        return verdict(False, "", "Answer with a verb as a string, e.g. 'PUT'. Send each idempotent "
                       "verb twice to the same note and compare the two status codes.", name)
    verb = verb.strip().upper()
    if verb in ("GET", "HEAD", "OPTIONS"):
        return verdict(False, "", f"{verb} is safe and idempotent: it changes nothing, so a second "
                       f"{verb} of the same note gets the same answer. Look among the verbs that "
                       "do change the note.", name)
    summary = repeat_summary(repeat_effects(lab, times=2)).set_index("verb")
    if verb not in summary.index:
        return verdict(False, "", f"{verb!r} is not one of the verbs to try: "
                       f"{', '.join(summary.index)}.", name)
    row = summary.loc[verb]
    statuses = row["statuses"].split()
    if not row["idempotent"]:
        return verdict(False, "", f"{verb} is not idempotent at all: measured just now, sending it "
                       f"twice left {row['notes_after_last']} notes instead of "
                       f"{row['notes_after_first']}. Pick a verb whose repetition leaves the "
                       "server as the first request did.", name)
    if len(set(statuses)) == 1:
        return verdict(False, "", f"{verb} gives the same answer twice (measured: {' then '.join(statuses)}) "
                       "and the same state. Which verb leaves nothing for the second request to "
                       "act on?", name)
    return verdict(True, f"Measured: {verb} answered {' then '.join(statuses)}, yet the server is "
                   "the same after the second request as after the first (the note is gone). "
                   "Idempotency is about the state, not the answer, so a retried DELETE that "
                   "gets 404 is not an error.", "", name)


def recovered_from_412(conflict, client) -> Feedback:
    """Exercise: add one vote to `conflict`'s note starting from its stale ETag, without losing
    the other client's vote. `client` is the RestClient you used; its log must show the 412."""
    from ..clients.rest import RestClient

    name = "recover from 412"
    lab = _running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    if conflict is None or client is None or not hasattr(client, "log"):
        return verdict(False, "", "Send a PATCH with If-Match: conflict.stale_etag using your own "
                       "client, read the 412, GET the note again, and retry; then pass "
                       "(conflict, client).", name)
    saw_412 = any(e.status == 412 and e.path == conflict.path for e in client.log)
    if not saw_412:
        return verdict(False, "", "Your client's log shows no 412 on that note: start with the stale "
                       "ETag (conflict.stale_etag), as a real client that read earlier would.", name)
    with RestClient(lab) as api:
        reply = api.get(conflict.path)
    if reply.status != 200:
        return verdict(False, "", f"The note answers {reply.status} now; make a new conflict with "
                       "rest_lab.stale_write(lab) and try again.", name)
    votes, wanted = reply.json()["votes"], conflict.votes_now + 1
    return verdict(
        votes == wanted,
        f"votes = {votes}: your vote and the other client's are both there. The 412 stopped a "
        "lost update; re-reading and retrying made the write safe.",
        f"votes = {votes}, expected {wanted} (the other client's vote plus yours). After the 412, "
        "GET the note, take its votes and ETag, and PATCH votes + 1 with that ETag.",
        name,
    )
