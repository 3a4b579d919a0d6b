"""Checkers for lesson 01 (REST request-response). Each one re-does or inspects the real requests."""

from __future__ import annotations

from ._core import Feedback, exercise, running_lab, verdict

__all__ = ["conditional_get", "idempotent_but_status_changes", "recovered_from_412",
           "second_conditional_put"]


@exercise("conditional GET", answer="headers",
          how="Answer with a dict of request headers: which response header holds the value to send back?")
def conditional_get(path, headers, validator: str = "any") -> Feedback:
    """Exercise: the headers that make GET `path` answer 304. The checker sends them itself.
    validator="date": without an ETag (If-None-Match), by the date the note last changed."""
    from labkit.clients.rest import RestClient

    name = "conditional GET" + (" by date" if validator == "date" else "")
    if not isinstance(headers, dict) or not headers:
        return verdict(False, "", "Pass a dict of request headers, e.g. {'Some-Header': 'value'}. "
                       "Which response header of a GET holds the value to send back?", name)
    if validator == "date" and any(str(k).lower() == "if-none-match" for k in headers):
        return verdict(False, "", "This time without the ETag: which other response header of a "
                       "GET says *when* the note last changed, and which If- header sends it back?",
                       name)
    if not path:
        return verdict(False, "", "Pass the note's path (note_url) as the first argument.", name)
    sent = {str(k).lower() for k in headers}
    if "etag" in sent or "last-modified" in sent:
        return verdict(False, "", "ETag and Last-Modified are *response* headers. A client sends the "
                       "value back in a request header whose name starts with 'If-'.", name)
    if sent <= {"if-match", "if-unmodified-since"}:
        return verdict(False, "", "If-Match guards a *write* ('only if it is still this version'); "
                       "a read that wants 'only if it changed' uses another If- header.", name)
    lab = running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    with RestClient(lab) as api:
        reply = api.get(str(path), headers={str(k): str(v) for k, v in headers.items()})
    if reply.status == 304:
        star = any(str(v).strip() == "*" for v in headers.values())
        extra = (" (`*` matches any version; with the ETag you ask about *your* copy)"
                 if star else "")
        return verdict(True, f"304 Not Modified with {len(reply.body)} body bytes: your copy is "
                       f"current{extra}.", "", name)
    return verdict(False, "", f"The lab answered {reply.status}, not 304: the value you sent does not "
                   "match the note as it is now. Read it from a fresh GET's headers.", name,
                   then=f"The lab answered {reply.status}. Send the note's current ETag (from a fresh "
                   "GET) in If-None-Match.")


@exercise("idempotent, yet a different answer", answer="verb",
          how="Answer with a verb as a string, e.g. 'PUT', after sending each verb twice.")
def idempotent_but_status_changes(verb) -> Feedback:
    """Exercise: which idempotent verb answers with another status the second time? The checker
    repeats each verb twice against the lab (rest_lab.repeat_effects) and compares."""
    from labkit.lessons.rest import repeat_effects, repeat_summary

    name = "idempotent, yet a different answer"
    if not isinstance(verb, str) or not verb.strip() or verb.strip() == "?":
        return verdict(False, "", "Answer with a verb as a string, e.g. 'PUT'. Send each idempotent "
                       "verb twice to the same note and compare the two status codes.", name)
    lab = running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    verb = verb.strip().upper()
    if verb in ("GET", "HEAD", "OPTIONS", "TRACE"):
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


@exercise("recover from 412", answer="client",
          how="Make your own client (me = lk.rest(lab)), send your requests with it, and pass it.")
def recovered_from_412(conflict, client) -> Feedback:
    """Exercise: add one vote to `conflict`'s note starting from its stale ETag, without losing
    the other client's vote. `client` is the RestClient you used; its log must show the 412."""
    from labkit.clients.rest import RestClient

    name = "recover from 412"
    lab = running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    if not hasattr(conflict, "stale_etag") or not hasattr(client, "log"):
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


_PUT_SLIPS = {
    200: "The first PUT answers 200. Does the second one still carry a *current* ETag?",
    204: "Would the second PUT even be applied? Compare its If-Match with the note's ETag by then.",
    304: "304 answers a conditional *read* (If-None-Match on GET); this is a conditional write.",
    409: "Close in spirit, but HTTP has a status for exactly 'your precondition failed'.",
    428: "428 means the precondition is *missing*; here it is present but no longer true.",
}


@exercise("repeated conditional PUT", answer="status",
          how="Send the same PUT with If-Match twice and give the second reply's .status.")
def second_conditional_put(status) -> Feedback:
    """Exercise: the same PUT with `If-Match: <the ETag read before>` sent twice: which status does
    the second one get? The checker repeats the experiment on a note of its own."""
    from labkit.clients.rest import RestClient

    name = "repeated conditional PUT"
    if isinstance(status, bool) or not isinstance(status, int):
        return verdict(False, "", "Answer with the status code as a whole number (reply.status).", name)
    lab = running_lab()
    if lab is None:
        return verdict(False, "", "Start the lab first: lab = lk.start()", name)
    with RestClient(lab) as api:
        path = api.post("/api/notes", json={"title": "checker's note"}).headers["Location"]
        etag = api.get(path).headers["ETag"]
        replies = [api.put(path, json={"title": "replaced once"}, headers={"If-Match": etag})
                   for _ in range(2)]
        api.delete(path)
    first, second = (r.status for r in replies)
    return verdict(
        status == second,
        f"Yes: measured just now, {first} then {second}. The first PUT changed the note, so its "
        "ETag changed; the repeated request names the old one and is refused, leaving the note as "
        "the first one made it. A conditional write is safe to retry blindly.",
        _PUT_SLIPS.get(status, "Not what the lab answers. Try it: read a note's ETag, then send the "
                       "same PUT with If-Match twice and compare the statuses."),
        name,
    )
