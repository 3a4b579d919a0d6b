"""Idempotency keys belong to whoever used them, are bounded in number per identity, and their stored
answers count toward the notes store's byte bound. Real sockets on 127.0.0.1 against real labs."""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from urllib.parse import urlsplit

import pytest
import requests

from labkit.stores import idempotency
from labkit.stores.idempotency import IdempotencyStore, Stored, TooManyKeys
from labkit.stores.notes import NotesStore, StoreFull

A, B, INSTRUCTOR = "student-token-a", "student-token-b", "instructor-token"


@pytest.fixture
def classroom(make_lab):
    return make_lab(student_tokens=(A, B), instructor_token=INSTRUCTOR)


def send(lab, method: str, path: str, token: str | None = None, body=None, key: str | None = None):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if key:
        headers["Idempotency-Key"] = key
    return requests.request(method, lab.url + path, json=body, headers=headers, timeout=20)


def test_another_student_replaying_a_key_gets_a_note_of_their_own(classroom):
    first = send(classroom, "POST", "/api/notes", A, {"title": "A's"}, '"k"')
    replayed_by_b = send(classroom, "POST", "/api/notes", B, {"title": "A's"}, '"k"')
    a_note = urlsplit(first.headers["Location"]).path
    assert first.status_code == replayed_by_b.status_code == 201
    assert "Idempotent-Replayed" not in replayed_by_b.headers
    assert urlsplit(replayed_by_b.headers["Location"]).path != a_note
    assert send(classroom, "PUT", a_note, B, {"title": "B's now?"}).status_code == 403
    assert send(classroom, "PUT", a_note, A, {"title": "still A's"}).status_code == 200
    again_by_a = send(classroom, "POST", "/api/notes", A, {"title": "A's"}, '"k"')
    assert again_by_a.headers["Idempotent-Replayed"] == "true"
    assert urlsplit(again_by_a.headers["Location"]).path == a_note


def test_a_student_cannot_block_anothers_key_by_using_it_first(classroom):
    assert send(classroom, "POST", "/api/notes", B, {"title": "squat"}, '"k2"').status_code == 201
    mine = send(classroom, "POST", "/api/notes", A, {"title": "mine"}, '"k2"')
    assert mine.status_code == 201 and "Idempotent-Replayed" not in mine.headers


def test_without_classroom_mode_keys_are_one_shared_scope(lab):
    assert send(lab, "POST", "/api/notes", None, {"title": "t"}, '"s"').status_code == 201
    again = send(lab, "POST", "/api/notes", None, {"title": "t"}, '"s"')
    assert again.headers["Idempotent-Replayed"] == "true"
    assert send(lab, "POST", "/api/notes", None, {"title": "u"}, '"s"').status_code == 422


def test_each_identity_keeps_at_most_max_keys_the_oldest_finished_go_first(tmp_path):
    store = IdempotencyStore(tmp_path / "keys.db", max_keys_per_identity=3)
    store.init()
    for i in range(5):
        assert store.claim("s", f"k{i}", "fp", principal="alice") == ("new", None)
        store.finish("s", f"k{i}", Stored(201, {}, b"{}"), principal="alice")
    assert store.claim("s", "k0", "fp", principal="bob") == ("new", None)  # bob's keys are bob's
    assert store.count("alice") == 3 and store.count("bob") == 1
    assert store.claim("s", "k4", "fp", principal="alice")[0] == "done"  # the newest are kept
    assert store.claim("s", "k0", "other", principal="alice") == ("new", None)  # the oldest went
    for i in range(3):  # three claims still in flight: none may be dropped, so 429
        store.claim("s", f"k{i}", "fp", principal="carol")
    with pytest.raises(TooManyKeys):
        store.claim("s", "k3", "fp", principal="carol")


def test_the_key_limit_over_http_drops_the_oldest_key(lab, monkeypatch):
    monkeypatch.setattr(idempotency, "MAX_KEYS_PER_IDENTITY", 4)
    keys = [f'"{uuid.uuid4()}"' for _ in range(6)]
    for key in keys:
        assert send(lab, "POST", "/api/notes", None, {"title": "t"}, key).status_code == 201
    assert send(lab, "POST", "/api/notes", None, {"title": "t"}, keys[-1]).headers.get("Idempotent-Replayed")
    assert "Idempotent-Replayed" not in send(lab, "POST", "/api/notes", None, {"title": "t"}, keys[0]).headers


def _bytes_on_disk(db: str) -> tuple[int, int]:
    with closing(sqlite3.connect(db)) as con:
        notes = con.execute("SELECT COALESCE(SUM(LENGTH(CAST(title AS BLOB)) + LENGTH(CAST(body AS BLOB)) "
                            "+ LENGTH(CAST(tags AS BLOB))), 0) FROM notes").fetchone()[0]
        answers = con.execute("SELECT COALESCE(SUM(LENGTH(body) + LENGTH(headers)), 0) "
                              "FROM idempotency_keys").fetchone()[0]
    return notes, answers


def test_stored_answers_count_toward_the_store_bound(make_lab, tmp_path):
    limit, db = 200_000, str(tmp_path / "bound.db")
    lab = make_lab(db=db, max_store_bytes=limit, max_note_bytes=20_000)
    note = {"title": "t", "body": "x" * 15_000}
    statuses = []
    for i in range(150):
        created = send(lab, "POST", "/api/notes", None, note, f'"round-{i}"')
        statuses.append(created.status_code)
        if created.status_code == 201:
            assert send(lab, "DELETE", urlsplit(created.headers["Location"]).path).status_code == 204
        notes, answers = _bytes_on_disk(db)
        assert notes + answers <= limit, (i, notes, answers)
    assert statuses == [201] * 150  # one identity's old answers make room for its new ones
    assert NotesStore(db, max_store_bytes=limit).used_bytes() >= _bytes_on_disk(db)[1] > 0


def test_a_store_full_of_notes_refuses_a_keyed_post_before_running_it(make_lab):
    lab = make_lab(max_store_bytes=50_000, max_note_bytes=20_000)
    for _ in range(3):
        assert send(lab, "POST", "/api/notes", None, {"title": "t", "body": "x" * 15_000}).status_code == 201
    total = requests.get(lab.url + "/api/notes", timeout=10).json()["total"]
    # 45,009 bytes used: the note (4,503) would fit, but not with room kept for its answer too
    refused = send(lab, "POST", "/api/notes", None, {"title": "t", "body": "y" * 4_500}, '"full"')
    assert refused.status_code == 507 and refused.headers["Content-Type"] == "application/problem+json"
    assert "answer" in refused.json()["detail"]
    assert send(lab, "POST", "/api/notes", None, {"title": "t", "body": "y" * 4_500}).status_code == 201
    assert requests.get(lab.url + "/api/notes", timeout=10).json()["total"] == total + 1


def test_the_notes_store_counts_key_reservations(tmp_path):
    db = tmp_path / "both.db"
    notes = NotesStore(db, max_store_bytes=10_000)
    notes.init()
    keys = IdempotencyStore(db, max_store_bytes=10_000)
    keys.init()
    keys.claim("s", "k", "fp", principal="p", reserve=6_000)
    with pytest.raises(StoreFull):
        notes.create({"title": "t", "body": "x" * 5_000, "tags": [], "votes": 0})
    keys.finish("s", "k", Stored(201, {}, json.dumps({"ok": True}).encode()), principal="p")
    assert notes.create({"title": "t", "body": "x" * 5_000, "tags": [], "votes": 0}).id == 1
    assert 0 < notes.used_bytes() - 5_003 < 200  # the note and the small stored answer
