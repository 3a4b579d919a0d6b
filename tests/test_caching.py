"""Lesson 01's caches in between: a real shared cache (hishel, RFC 9111, shared mode) behind the
kit's proxy, in front of a real lab on 127.0.0.1. Which requests reached the lab is counted by the
lab itself (GET /api/cacheable/stats), never inferred from timings."""

from __future__ import annotations

import pytest

from labkit.clients._target import through
from labkit.clients.rest import RestClient
from labkit.lessons.caching import SharedCache, cache_tour, describe_tour, lab_requests


def test_the_lab_answers_with_the_cache_control_asked_for_and_counts_each_request(lab):
    api = RestClient(lab)
    before = lab_requests(lab)
    r = api.get("/api/cacheable?max_age=30&s_maxage=60&scope=private&must_revalidate=1"
                "&stale_while_revalidate=5", headers={"Cookie": "user=ada"})
    assert r.status == 200 and r.headers["Vary"] == "Accept"
    assert r.headers["Cache-Control"] == ("private, max-age=30, s-maxage=60, "
                                          "stale-while-revalidate=5, must-revalidate")
    assert r.json() == {"version": 1, "user": "ada", "cache_control": r.headers["Cache-Control"]}
    again = api.get("/api/cacheable?max_age=30", headers={"If-None-Match": r.headers["ETag"],
                                                          "Cookie": "user=ada"})
    assert again.status == 200  # another query, another answer: its own ETag
    same = api.get("/api/cacheable?max_age=30&s_maxage=60&scope=private&must_revalidate=1"
                   "&stale_while_revalidate=5",
                   headers={"If-None-Match": r.headers["ETag"], "Cookie": "user=ada"})
    assert same.status == 304 and same.body == b""
    csv = api.get("/api/cacheable", headers={"Accept": "text/csv"})
    assert csv.headers["Content-Type"].startswith("text/csv") and csv.text.startswith("version,user")
    stats = api.get("/api/cacheable/stats")
    assert stats.headers["Cache-Control"] == "no-store"
    assert lab_requests(lab) - before == 4
    for bad in ("max_age=-1", "max_age=1e3", "scope=shared", "must_revalidate=2", "s_maxage=x"):
        assert api.get(f"/api/cacheable?{bad}").status == 422, bad
    assert api.get("/api/cacheable", headers={"Accept": "image/png"}).status == 406
    assert api.post("/api/cacheable/version").json() == {"version": 2}


def test_a_fresh_answer_is_served_by_the_shared_cache_without_a_request_to_the_lab(lab):
    with SharedCache(lab) as cdn:
        via = RestClient(cdn.url)
        before = lab_requests(lab)
        answers = [via.get("/api/cacheable?max_age=60") for _ in range(6)]
        assert lab_requests(lab) - before == 1
        assert [a.headers["X-Cache"] for a in answers] == ["MISS"] + ["HIT"] * 5
        assert {a.json()["version"] for a in answers} == {1}
        before = lab_requests(lab)
        revalidated = [via.get("/api/cacheable?max_age=0") for _ in range(4)]
        assert lab_requests(lab) - before == 4  # every use asks: 1 full answer, then 3 × 304
        assert [a.headers["X-Cache"] for a in revalidated] == ["MISS"] + ["REVALIDATED"] * 3
        assert list(cdn.log_frame()["x_cache"]) == ["MISS"] + ["HIT"] * 5 + ["MISS"] + \
            ["REVALIDATED"] * 3
    assert "stopped" in repr(cdn)


def test_the_tour_counts_what_each_rule_kept_from_the_lab(lab):
    tour = cache_tour(lab, repeats=4, stale_wait_s=1.2).set_index("case")
    rows = list(tour.itertuples())
    fresh, asks, shared, vary, public, private, stale, strict = rows
    assert (fresh.requests, fresh.reached_lab) == (4, 1)
    assert (asks.requests, asks.reached_lab) == (4, 4)
    assert asks.x_cache.split().count("REVALIDATED") == 3
    # s-maxage: the client's own cache asks every time (max-age=0), the shared cache answers
    assert (shared.requests, shared.reached_lab) == (4, 1)
    assert shared.cache_control == "max-age=0, s-maxage=30"
    # Vary: Accept: one stored copy per format, each client got the format it asked for
    assert (vary.requests, vary.reached_lab) == (8, 2) and vary.got.startswith("8 of 8")
    # a per-user answer: public leaks alice's copy to bob; private keeps it out of the cache
    assert public.leaked and public.reached_lab == 1 and "bob got alice's" in public.got
    assert not private.leaked and private.reached_lab == 2 and "bob got bob's" in private.got
    # stale: served from the cache without asking, unless must-revalidate
    assert stale.reached_lab == 1 and stale.x_cache == "MISS HIT"
    old, new = (int(w) for w in stale.got.replace("version ", "").split(" while the lab has "))
    assert old < new
    assert strict.reached_lab == 2 and strict.x_cache == "MISS MISS"
    words = describe_tour(tour.reset_index())
    assert "the shared cache served bob the copy it stored for alice" in words
    assert "the lab saw 1." in words and "reached the lab 0 times (`X-Cache`: HIT)" in words
    assert "reached the lab 1 time and gave" in words
    assert len(set(strict.got.replace("version ", "").split(" while the lab has "))) == 1


@pytest.mark.parametrize("allow_stale", [False, True])
def test_a_stale_answer_is_revalidated_unless_stale_answers_are_allowed(lab, allow_stale):
    import time

    with SharedCache(lab, allow_stale=allow_stale) as cdn:
        via = RestClient(cdn.url)
        via.get("/api/cacheable?max_age=1&stale=1")
        time.sleep(1.2)  # not a timing assertion: only lets max-age=1 pass
        before = lab_requests(lab)
        again = via.get("/api/cacheable?max_age=1&stale=1")
        assert lab_requests(lab) - before == (0 if allow_stale else 1)
        assert again.headers["X-Cache"] == ("HIT" if allow_stale else "REVALIDATED")


def test_the_cache_refuses_a_foreign_host_as_the_lab_does(lab):
    """DNS rebinding through the cache: a request for Host evil.example is refused (403) by the
    cache itself, as the lab would (a stored answer is served without asking the lab), and the
    cache forwards the client's own Host, so the lab checks it too."""
    with SharedCache(lab) as cdn:
        via = RestClient(cdn.url)
        assert via.get("/api/cacheable?max_age=60&host=1").status == 200
        before = lab_requests(lab)
        for url in ("/api/cacheable?max_age=60&host=1", "/api/cacheable?max_age=60&host=2"):
            refused = via.get(url, headers={"Host": "evil.example"})  # stored or not: refused
            assert refused.status == 403 and "X-Cache" not in refused.headers
            assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert lab_requests(lab) == before


def test_through_a_class_server_an_answer_to_a_token_is_reused_only_when_it_says_so(make_lab):
    """Why lesson 01's cache tour runs on the student's own lab: through a class server (lk.join)
    every request carries the student's token, and a shared cache must not reuse an answer to a
    request with Authorization unless the answer allows it (public, s-maxage, must-revalidate;
    RFC 9111 section 3.5). Counted at the class server."""
    import labkit as lk
    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    handle = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    token, _ = through(handle)  # "student:TOKEN@": the client brings its own credentials
    with SharedCache(handle) as cdn, RestClient(f"http://{token}127.0.0.1:{cdn.port}") as via:
        for query, reached, x_cache in (("max_age=30", 3, ["MISS"] * 3),
                                         ("max_age=30&scope=public", 1, ["MISS", "HIT", "HIT"]),
                                         ("max_age=0&s_maxage=30", 1, ["MISS", "HIT", "HIT"])):
            before = lab_requests(handle)
            answers = [via.get(f"/api/cacheable?{query}") for _ in range(3)]
            assert [a.status for a in answers] == [200] * 3
            assert [a.headers["X-Cache"] for a in answers] == x_cache, query
            assert lab_requests(handle) - before == reached, query


def test_the_cache_adds_no_credentials_of_its_own(make_lab):
    """In front of a class server the cache forwards a client's own Authorization and nothing
    else: a client on this machine without the token is refused by the class server, as it would
    be there directly, and never reaches it as the student whose handle the cache was made with."""
    import labkit as lk
    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    handle = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    with SharedCache(handle) as cdn, RestClient(cdn.url) as anyone, \
            RestClient(f"http://127.0.0.1:{room.port}") as tokenless:
        assert "student-token" not in cdn.origin
        before = lab_requests(handle)
        direct = tokenless.get("/api/cacheable?max_age=30&who=1")
        refused = anyone.get("/api/cacheable?max_age=30&who=1")
        assert refused.status == direct.status == 401
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert lab_requests(handle) == before  # none of them was answered as the student
        assert [r["status"] for r in cdn.log] == [401]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_the_cache_forwards_only_get_and_head(lab, method):
    with SharedCache(lab) as cdn, RestClient(cdn.url) as via, RestClient(lab) as direct:
        version = direct.get("/api/cacheable/stats").json()["version"]
        assert via.request("HEAD", "/api/cacheable?max_age=30&head=1").status == 200
        refused = via.request(method, "/api/cacheable/version")
        assert refused.status == 405 and refused.headers["Allow"] == "GET, HEAD"
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert refused.json()["status"] == 405
        assert direct.get("/api/cacheable/stats").json()["version"] == version
        assert [(r["method"], r["status"]) for r in cdn.log] == [("HEAD", 200)]


def test_with_cors_on_a_shared_cache_keeps_one_answer_per_origin(make_lab):
    """A lab with CORS on says `Vary: Origin` on every answer, whatever the request's origin, so a
    shared cache never serves an allowed page, as it is, an answer stored for a request without
    that origin (no Access-Control-Allow-Origin: the browser would block the page). hishel then
    asks the lab conditionally with the stored ETag and takes the 304's headers (RFC 9111 section
    4.3.4), so which answers are HIT or REVALIDATED is hishel's; asserted is what each origin gets."""
    page, foreign = "http://localhost:9999", "http://evil.example"
    lab = make_lab(allowed_origins=[page])
    with SharedCache(lab) as cdn, RestClient(cdn.url) as via:
        url = "/api/cacheable?max_age=30&cors=1"
        origins = [None, page, foreign, page, None]
        answers = [via.get(url, headers={"Origin": o} if o else {}) for o in origins]
        allow = [a.headers.get("Access-Control-Allow-Origin") for a in answers]
        assert [a.status for a in answers] == [200] * 5
        assert all("Origin" in a.headers["Vary"].split(", ") for a in answers)
        assert answers[0].headers["X-Cache"] == "MISS" and allow[0] is None
        assert answers[1].headers["X-Cache"] != "HIT"  # the lab was asked for the page's answer
        assert allow[1] == allow[3] == page            # the page can read every answer it gets
        assert allow[2] != foreign                     # and the foreign page none
        missing = via.get("/api/no-such-route")  # errors too, and without Origin
        assert missing.status == 404 and "Origin" in missing.headers["Vary"]
