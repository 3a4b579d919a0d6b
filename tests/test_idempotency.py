"""Idempotency-Key on POST /api/notes: a retry replays the first answer and creates nothing new,
in one server, across two server processes sharing one SQLite file, and under a race."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time

import pytest
import requests
from waiting import wait_until

from labkit.stores import idempotency
from labkit.stores.idempotency import IdempotencyStore, Stored


def total_notes(url: str) -> int:
    return requests.get(url + "/api/notes", timeout=10).json()["total"]


def post(url: str, body: dict, key: str | None = None) -> requests.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return requests.post(url + "/api/notes", json=body, headers=headers, timeout=20)


def test_same_key_same_body_creates_one_note_and_replays_the_answer(lab):
    first = post(lab.url, {"title": "pay rent"}, '"k-1"')
    again = post(lab.url, {"title": "pay rent"}, '"k-1"')
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert total_notes(lab.url) == 1


def test_without_a_key_a_retry_creates_a_second_note(lab):
    post(lab.url, {"title": "pay rent"})
    post(lab.url, {"title": "pay rent"})
    assert total_notes(lab.url) == 2


def test_same_key_with_another_body_is_refused_with_422(lab):
    assert post(lab.url, {"title": "a"}, '"k-2"').status_code == 201
    other = post(lab.url, {"title": "b"}, '"k-2"')
    assert other.status_code == 422
    assert other.headers["Content-Type"].startswith("application/problem+json")
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert total_notes(lab.url) == 1


@pytest.mark.parametrize("key", ['""', '"a\\b"', "a b", '"' + "x" * 300 + '"'])
def test_a_malformed_key_is_refused_with_400(lab, key):
    r = requests.post(lab.url + "/api/notes", data=json.dumps({"title": "t"}).encode(),
                      headers={"Idempotency-Key": key, "Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert total_notes(lab.url) == 0


def test_a_failed_request_releases_the_key(lab):
    bad = post(lab.url, {"title": ""}, '"k-3"')
    assert bad.status_code == 422
    good = post(lab.url, {"title": "now valid"}, '"k-3"')
    assert good.status_code == 201 and "Idempotent-Replayed" not in good.headers
    assert total_notes(lab.url) == 1


def test_keys_expire_after_their_time_to_live(tmp_path):
    store = IdempotencyStore(tmp_path / "keys.db", ttl_s=0.05)
    store.init()
    assert store.claim("s", "k", "fp") == ("new", None)
    store.finish("s", "k", Stored(201, {}, b"{}"))
    assert store.claim("s", "k", "fp")[0] == "done"
    # until it expires (50 ms) the other body is refused, without a change; then it is a new key
    def claimed_unless_refused():
        outcome = store.claim("s", "k", "other body")
        return None if outcome == ("mismatch", None) else outcome

    assert wait_until(claimed_unless_refused, 10, what="the key expired") == ("new", None)


def test_openapi_documents_the_header(lab):
    doc = requests.get(lab.url + "/openapi.json", timeout=10).json()
    post_op = doc["paths"]["/api/notes"]["post"]
    assert idempotency.HEADER in [p["name"] for p in post_op["parameters"]]
    assert "409" in post_op["responses"] and "422" in post_op["responses"]


def test_20_clients_racing_with_one_key_create_one_note(lab):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: post(lab.url, {"title": "race"}, '"race-1"'), range(20)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.content for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert total_notes(lab.url) == 1


@pytest.fixture
def two_servers(tmp_path):
    """Two `labkit serve` processes on one SQLite file."""
    db = tmp_path / "shared.db"
    procs, urls = [], []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--db", str(db)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        urls.append(proc.stdout.readline().strip())
    for url in urls:
        for _ in range(100):
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
    yield urls
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_two_server_processes_sharing_one_file_honour_the_same_key(two_servers):
    a, b = two_servers
    assert a != b
    first = post(a, {"title": "once"}, '"shared-1"')
    again = post(b, {"title": "once"}, '"shared-1"')
    assert first.status_code == again.status_code == 201 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert post(b, {"title": "twice?"}, '"shared-1"').status_code == 422
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: post(two_servers[i % 2], {"title": "race"}, '"shared-2"'),
                                range(20)))
    assert {r.status_code for r in answers} == {201} and len({r.content for r in answers}) == 1
    assert total_notes(a) == total_notes(b) == 2
