"""Lesson 01's checkers accept right answers and refuse wrong ones, by making real requests."""

from __future__ import annotations

import json

import pytest

import labkit as lk
from labkit.clients.rest import RestClient
from labkit.lessons import rest as rest_lab

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(autouse=True)
def _first_attempt():
    """Each test starts as a student's first try (the second wrong answer gets a stronger hint)."""
    from labkit.check import _core

    _core.forget_attempts()


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
    assert not lk.check.recovered_from_412(None, lk.rest("http://127.0.0.1:9"))


def test_placeholders_are_not_answered_yet_before_anything_else():
    lk.stop()
    for feedback in (lk.check.conditional_get("/api/notes/1", None),
                     lk.check.idempotent_but_status_changes(None),
                     lk.check.recovered_from_412(None, None)):
        assert not feedback and not feedback.answered
        assert "not answered yet" in repr(feedback).lower()


def test_conditional_get(kernel_lab):
    with RestClient(kernel_lab) as api:
        path = api.post("/api/notes", json={"title": "x"}).headers["Location"]
        etag = api.get(path).headers["ETag"]
        last_modified = api.get(path).headers["Last-Modified"]
    assert lk.check.conditional_get(path, {"If-None-Match": etag})
    assert lk.check.conditional_get(path, {"If-Modified-Since": last_modified})  # also HTTP's way
    plausible_wrong = [{"If-None-Match": '"old"'}, {"If-Match": etag}, {"ETag": etag},
                       {"If-None-Match": etag.strip('"')}, {"Cache-Control": "no-cache"},
                       {"Last-Modified": last_modified}, {"If-Unmodified-Since": last_modified}, {},
                       "If-None-Match", [("If-None-Match", etag)]]
    for headers in plausible_wrong:
        feedback = lk.check.conditional_get(path, headers)
        assert not feedback and feedback.answered, headers
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
    ("head", "safe and idempotent"),
    ("OPTIONS", "safe and idempotent"),
    ("TRACE", "safe and idempotent"),
    (None, "Replace None"),
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


def test_conditional_get_by_date_refuses_the_etag(kernel_lab):
    with RestClient(kernel_lab) as api:
        path = api.post("/api/notes", json={"title": "dated"}).headers["Location"]
        got = api.get(path)
    assert lk.check.conditional_get(path, {"If-Modified-Since": got.headers["Last-Modified"]},
                                    validator="date")
    feedback = lk.check.conditional_get(path, {"If-None-Match": got.headers["ETag"]}, validator="date")
    assert not feedback and "without the ETag" in feedback.message
    assert not lk.check.conditional_get(path, {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
                                        validator="date")
    assert not lk.check.conditional_get(path, None, validator="date").answered


def test_second_conditional_put(kernel_lab):
    with RestClient(kernel_lab) as api:
        path = api.post("/api/notes", json={"title": "twice"}).headers["Location"]
        etag = api.get(path).headers["ETag"]
        measured = [api.put(path, json={"title": "x"}, headers={"If-Match": etag}).status
                    for _ in range(2)]
    assert measured == [200, 412]
    assert lk.check.second_conditional_put(measured[1])
    for wrong in (200, 204, 304, 409, 428, 404, "412", 412.0, True):
        feedback = lk.check.second_conditional_put(wrong)
        assert not feedback and feedback.answered, wrong
        if isinstance(wrong, int):
            assert "412" not in feedback.message, wrong
    assert not lk.check.second_conditional_put(None).answered


def test_time_saved_by_a_304_within_the_noise_is_said_so_never_negative():
    import pandas as pd

    from labkit.lessons import rest as rest_lab

    def frame(plain, cond):
        return pd.DataFrame(
            [{"kind": "plain GET (200)", "bytes_down": 50_300, "elapsed_ms": ms} for ms in plain]
            + [{"kind": "conditional GET (304)", "bytes_down": 200, "elapsed_ms": ms}
               for ms in cond])

    noisy = rest_lab.savings_summary(frame([1.0, 1.4, 1.1, 1.5], [1.3, 1.3, 1.3, 1.3]))
    assert noisy["ms_saved"] < 0 and noisy["ms_noise"] == pytest.approx(0.4)
    assert rest_lab.time_saved_text(noisy) == ("no time beyond the noise (two halves of the plain "
                                               "GETs differed by 0.40 ms)")
    clear = rest_lab.savings_summary(frame([80.0, 81.0, 80.0, 81.0], [30.0, 31.0, 30.0, 30.0]))
    assert rest_lab.time_saved_text(clear) == "50.50 ms (63% of the time)"


def test_on_a_class_server_the_checkers_ask_it_not_the_kernels_own_lab(kernel_lab, make_lab,
                                                                      monkeypatch):
    """With `lab = lk.join(...)` in the notebook, a note the student made is on the class server,
    while the kernel also runs its own lab (lk.own_lab, for the restart): the checkers ask the class
    server. The own lab has no such note, so asking it would answer 404."""
    import types

    import IPython

    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    handle = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(user_ns={"lab": handle}))
    for _ in range(3):  # the class server holds notes the kernel's own lab does not
        with RestClient(handle) as api:
            api.post("/api/notes", json={"title": "someone else's"})
    conflict = rest_lab.stale_write(handle)
    with RestClient(kernel_lab) as own:
        assert own.get(conflict.path).status == 404
    with RestClient(handle) as me:
        reply = rest_lab.increment(me, conflict.path, etag=conflict.stale_etag,
                                   value=conflict.votes_seen)
        assert [e.status for e in me.log] == [412, 200, 200] and reply.status == 200
        assert lk.check.recovered_from_412(conflict, me)
        modified = me.get(conflict.path).headers["Last-Modified"]
    assert lk.check.conditional_get(conflict.path, {"If-Modified-Since": modified}, validator="date")


def test_notes_file_names_the_labs_file_or_the_instructors(make_lab, tmp_path):
    """Lesson 01's notes-file cell: the own lab's file and kind; for a class server, no attribute of
    a LabServer is needed (the file is on the instructor's machine)."""
    from labkit.course.classroom import join_url

    kept = make_lab(db=str(tmp_path / "kept.db"))
    lines = rest_lab.notes_file(kept).splitlines()
    assert lines == [f"notes file: {(tmp_path / 'kept.db').resolve()}", "kind: your own file, kept"]
    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    handle = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    said = rest_lab.notes_file(handle)
    assert said.startswith(f"notes file: on the class server ({handle.base_url})")
    assert "student-token" not in said and "--db" in said
