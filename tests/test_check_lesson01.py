"""Lesson 01's checkers accept right answers and refuse wrong ones, by making real requests."""

from __future__ import annotations

import json

import pytest

import labkit as lk
from labkit import rest_lab
from labkit.clients.rest import RestClient

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def kernel_lab(tmp_path):
    """The kernel's lab (what lk.start() gives a notebook), which the checkers look up."""
    lab = lk.start(db=str(tmp_path / "lesson01.db"))
    yield lab
    lk.stop()


def test_checkers_without_a_lab_give_a_hint_not_a_crash():
    lk.stop()
    assert not lk.check.conditional_get("/api/notes/1", {"If-None-Match": "*"})
    assert not lk.check.idempotent_but_status_changes("DELETE")
    assert not lk.check.recovered_from_412(None, None)


def test_conditional_get(kernel_lab):
    with RestClient(kernel_lab) as api:
        path = api.post("/api/notes", json={"title": "x"}).headers["Location"]
        etag = api.get(path).headers["ETag"]
    assert lk.check.conditional_get(path, {"If-None-Match": etag})
    assert not lk.check.conditional_get(path, {"If-None-Match": '"old"'})
    assert not lk.check.conditional_get(path, {"If-Match": etag})
    assert not lk.check.conditional_get(path, {})
    assert not lk.check.conditional_get("/api/notes/999", {"If-None-Match": etag})


def test_idempotent_but_status_changes_accepts_delete(kernel_lab):
    for answer in ("DELETE", " delete "):
        feedback = lk.check.idempotent_but_status_changes(answer)
        assert feedback, answer
        assert "204 then 404" in feedback.message


@pytest.mark.parametrize(("answer", "hint"), [
    ("POST", "not idempotent at all"),
    ("put", "same answer twice"),
    ("PATCH", "same answer twice"),
    ("GET", "safe and idempotent"),
    (None, "Answer with a verb"),
    ("", "Answer with a verb"),
    ("?", "Answer with a verb"),
    (3, "Answer with a verb"),
    (["DELETE"], "Answer with a verb"),
    ("FROB", "not one of the verbs"),
])
def test_idempotent_but_status_changes_refuses_kindly(kernel_lab, answer, hint):
    feedback = lk.check.idempotent_but_status_changes(answer)
    assert not feedback
    assert hint in feedback.message


def test_recovered_from_412(kernel_lab):
    conflict = rest_lab.stale_write(kernel_lab)
    assert (conflict.votes_seen, conflict.votes_now) == (1, 2)
    with RestClient(kernel_lab) as careless:  # overwrites the other vote: no 412, a lost update
        careless.patch(conflict.path, data=json.dumps({"votes": conflict.votes_seen + 1}),
                       headers=MERGE)
        assert not lk.check.recovered_from_412(conflict, careless)

    conflict = rest_lab.stale_write(kernel_lab)
    with RestClient(kernel_lab) as gives_up:  # meets the 412 but never retries
        stale = gives_up.patch(conflict.path, data=json.dumps({"votes": conflict.votes_seen + 1}),
                               headers={**MERGE, "If-Match": conflict.stale_etag})
        assert stale.status == 412
        assert not lk.check.recovered_from_412(conflict, gives_up)

    conflict = rest_lab.stale_write(kernel_lab)
    with RestClient(kernel_lab) as me:
        reply = rest_lab.increment(me, conflict.path, etag=conflict.stale_etag,
                                   value=conflict.votes_seen)
        assert reply.status == 200
        assert [e.status for e in me.log] == [412, 200, 200]
        assert lk.check.recovered_from_412(conflict, me)


def test_the_repetition_experiment_tells_post_from_the_idempotent_verbs(lab):
    summary = rest_lab.repeat_summary(rest_lab.repeat_effects(lab, times=3)).set_index("verb")
    assert list(summary.index) == ["PUT", "PATCH", "DELETE", "POST"]
    assert summary.loc["DELETE", "statuses"] == "204 404 404"
    assert summary.loc["POST", "statuses"] == "201 201 201"
    post = summary.loc["POST"]
    assert post["notes_after_last"] - post["notes_after_first"] == 2
    assert post["distinct_states"] == 3 and not post["idempotent"]
    for verb in ("PUT", "PATCH", "DELETE"):
        assert summary.loc[verb, "distinct_states"] == 1 and summary.loc[verb, "idempotent"], verb
