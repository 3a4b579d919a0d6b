"""lk.start() again with other options: the previous lab's data is kept (and the user is told),
unless fresh=True asks for an empty one (before: 5 notes -> 0, silently)."""

from __future__ import annotations

import pytest

from labkit.clients.rest import RestClient
from labkit.server import runner


@pytest.fixture
def kernel_lab():
    runner.stop()
    yield runner
    runner.stop()


def notes(lab) -> int:
    with RestClient(lab) as api:
        return api.get("/api/notes").json()["total"]


def test_other_options_keep_the_previous_labs_notes_and_say_so(kernel_lab, capsys):
    first = runner.start()
    with RestClient(first) as api:
        for i in range(5):
            assert api.post("/api/notes", json={"title": f"note {i}"}).status == 201
    old_db = first.db_path
    second = runner.start(ws_heartbeat=20.0)  # other options: a new server
    said = capsys.readouterr().out
    assert second is not first and not first.running
    assert notes(second) == 5  # before: 0, and nothing said
    assert "keeps the previous lab's data" in said and str(old_db) in said
    assert second.db_path == old_db and old_db.exists()
    second_again = runner.start(ws_heartbeat=20.0)  # the same options: the same server
    assert second_again is second and capsys.readouterr().out == ""


def test_fresh_true_starts_empty_and_says_the_old_data_is_deleted(kernel_lab, capsys):
    first = runner.start()
    with RestClient(first) as api:
        assert api.post("/api/notes", json={"title": "old"}).status == 201
    old_db = first.db_path
    second = runner.start(fresh=True, ws_heartbeat=25.0)
    said = capsys.readouterr().out
    assert notes(second) == 0
    assert "fresh=True" in said and "deleted" in said and not old_db.exists()


def test_a_new_lab_with_its_own_db_leaves_the_previous_file_in_place(kernel_lab, capsys, tmp_path):
    first = runner.start()
    with RestClient(first) as api:
        assert api.post("/api/notes", json={"title": "kept"}).status == 201
    old_db = first.db_path
    second = runner.start(db=str(tmp_path / "mine.db"))
    said = capsys.readouterr().out
    assert notes(second) == 0 and old_db.exists() and str(old_db) in said
