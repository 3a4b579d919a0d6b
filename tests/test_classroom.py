"""Classroom mode over real sockets: tokens on every route, who may do what, names that cannot
impersonate, the CLI's join URL and origin flag, clock offsets, and the instructor's statistics."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from labkit.course.classroom import join_host, join_url
from labkit.measure import clock_offset, estimate_clock_offset
from labkit.routes.core import route_index
from labkit.server.validate import chat_name, name_keys

STUDENT, OTHER_STUDENT, INSTRUCTOR = "student-token-1", "student-token-2", "instructor-token"
BEARER = {None: {}, **{t: {"Authorization": f"Bearer {t}"} for t in (STUDENT, OTHER_STUDENT, INSTRUCTOR)}}


@pytest.fixture
def classroom(make_lab):
    return make_lab(student_tokens=(STUDENT, OTHER_STUDENT), instructor_token=INSTRUCTOR)


def run(coro):
    return asyncio.run(coro)


async def status_of(session, method: str, url: str, token: str | None, **kw) -> int:
    async with session.request(method, url, headers=BEARER[token], timeout=aiohttp.ClientTimeout(5),
                               allow_redirects=False, **kw) as resp:
        return resp.status


INSTRUCTOR_ROUTES = {("POST", "/api/feed/source"), ("DELETE", "/api/chat/members/{name}"),
                     ("POST", "/api/chat/members/{name}/allow"),
                     ("GET", "/api/classroom"), ("POST", "/api/bank/webhook-outage")}
OWNER_ROUTES = {"/api/accounts/{id}", "/api/accounts/{id}/statement", "/api/payments/{id}"}
"""Someone's resource (labkit/server/access.py): a student gets 403 for one that is not theirs,
and the same for one that does not exist (ids cannot be probed). tests/test_access_matrix.py walks
every route with real resources."""
SIGNED_NOT_TOKENED = {"/api/webhooks/provider"}
"""Needs no class token but the payment provider's HMAC signature: refused (401) without one."""


def expected(method: str, path: str, token: str | None) -> set[int] | str:
    """The rule of the table: what a request may get back (a set), or "allowed" (anything but 401/403)."""
    if path in ("/", "/healthz"):
        return {200}
    if path in SIGNED_NOT_TOKENED:
        return {401}  # whatever the token: this table sends no signature (see the bank test below)
    if token is None:
        return {401}
    if token == INSTRUCTOR:
        return "allowed"
    if (method, path) in INSTRUCTOR_ROUTES or path in OWNER_ROUTES:
        return {403}
    if method in ("PUT", "PATCH", "DELETE") and path.startswith("/api/notes"):
        return {403}
    return "allowed"


def test_every_route_by_token_kind(classroom):
    """A table: every route of the app x no token / student / instructor -> the expected status."""
    routes = route_index(classroom.app)
    assert len(routes) > 10
    table = []

    async def go():
        async with aiohttp.ClientSession() as session:
            for entry in routes:
                path = entry["path"]
                concrete = path.replace("{name}", "nobody").replace("{id}", "999999")
                for token in (None, STUDENT, INSTRUCTOR):
                    concrete_path = concrete.split("{")[0].rstrip("/") or "/"
                    for method in entry["methods"]:
                        got = await status_of(session, method, classroom.url + concrete_path, token)
                        table.append((method, path, token, got))

    run(go())
    assert len(table) >= 3 * len(routes)
    for method, path, token, got in table:
        rule = expected(method, path, token)
        if rule == "allowed":
            assert got not in (401, 403), (method, path, token, got)
        else:
            assert got in rule, (method, path, token, got)


def test_problem_json_and_challenge_on_401(classroom):
    async def go():
        async with aiohttp.ClientSession() as session, session.get(classroom.url + "/api/notes") as r:
            return r.status, r.headers["Content-Type"], r.headers.get("WWW-Authenticate"), await r.json(
                content_type=None)

    status, ctype, challenge, body = run(go())
    assert (status, ctype, body["status"]) == (401, "application/problem+json", 401)
    assert challenge.startswith("Bearer")


def test_notes_belong_to_whoever_created_them(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.post(classroom.url + "/api/notes", json={"title": "mine"},
                                    headers=BEARER[STUDENT]) as resp:
                assert resp.status == 201
                note = urlsplit(resp.headers["Location"]).path
            other = await status_of(session, "DELETE", classroom.url + note, OTHER_STUDENT)
            patch = await status_of(session, "PATCH", classroom.url + note, OTHER_STUDENT,
                                    json={"title": "hijacked"})
            own = await status_of(session, "PATCH", classroom.url + note, STUDENT,
                                  data=json.dumps({"title": "still mine"}),
                                  )
            async with session.post(classroom.url + "/api/notes", json={"title": "theirs"},
                                    headers=BEARER[OTHER_STUDENT]) as resp:
                theirs = urlsplit(resp.headers["Location"]).path
            teacher = await status_of(session, "DELETE", classroom.url + theirs, INSTRUCTOR)
            return other, patch, own, teacher

    other, patch, own, teacher = run(go())
    assert (other, patch, teacher) == (403, 403, 204)
    assert own not in (401, 403)


def test_websocket_token_in_query_string_only_for_streams(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{classroom.ws_url}/ws/echo?token={STUDENT}") as ws:
                await ws.send_str("hi")
                echoed = (await ws.receive(timeout=5)).data
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{classroom.ws_url}/ws/echo")
            async with session.get(f"{classroom.url}/api/notes?token={STUDENT}") as resp:
                plain_http = resp.status
            return echoed, refused.value.status, plain_http

    echoed, refused, plain_http = run(go())
    assert echoed == "hi"
    assert refused == 401
    assert plain_http == 401, "a token in the query string is for browsers' WebSockets and SSE only"


def test_userinfo_urls_send_the_token(classroom):
    """The kit's clients get the token through the URL's user info (lk.join's handle)."""
    from labkit.clients.rest import RestClient

    base = classroom.url.replace("http://", f"http://student:{STUDENT}@")
    with RestClient(base) as api:
        assert api.get("/api/notes").status == 200
    with RestClient(base.replace(STUDENT, "wrong")) as api:
        assert api.get("/api/notes").status == 401


def test_only_the_instructor_removes_a_chat_member(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{classroom.ws_url}/ws/chat?name=bob&token={STUDENT}")
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
            by_student = await status_of(session, "DELETE", classroom.url + "/api/chat/members/bob",
                                         STUDENT)
            by_teacher = await status_of(session, "DELETE", classroom.url + "/api/chat/members/bob",
                                         INSTRUCTOR)
            while (msg := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
                pass
            nobody = await status_of(session, "DELETE", classroom.url + "/api/chat/members/zed",
                                     INSTRUCTOR)
            rejoin = await _join_status(session, f"{classroom.ws_url}/ws/chat?name=bob&token={STUDENT}")
            return by_student, by_teacher, (msg.type, msg.data), nobody, rejoin

    by_student, by_teacher, code, nobody, rejoin = run(go())
    assert (by_student, by_teacher, code, nobody) == (403, 204, (aiohttp.WSMsgType.CLOSE, 1008), 404)
    assert rejoin == 403, "a removed member does not rejoin until the instructor allows it"


async def _join_status(session, url: str) -> int:
    try:
        ws = await session.ws_connect(url)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


def test_a_removed_identity_stays_out_until_the_instructor_allows_it(classroom):
    """Removal is of the identity, not of one socket: a name used only over REST can be removed,
    and neither a rejoin nor a post (under any name) gets in until the instructor allows it back."""
    async def go():
        out = {}
        async with aiohttp.ClientSession() as session:
            post = lambda token, name: status_of(  # noqa: E731
                session, "POST", classroom.url + "/api/chat/messages", token,
                json={"name": name, "text": "hi"})
            out["rest only"] = await post(STUDENT, "rita")
            out["remove rest-only"] = await status_of(
                session, "DELETE", classroom.url + "/api/chat/members/rita", INSTRUCTOR)
            out["post again"] = await post(STUDENT, "rita")
            out["join"] = await _join_status(
                session, f"{classroom.ws_url}/ws/chat?name=rita&token={STUDENT}")
            out["others"] = await post(OTHER_STUDENT, "otto")
            out["allow by student"] = await status_of(
                session, "POST", classroom.url + "/api/chat/members/rita/allow", STUDENT)
            out["allow"] = await status_of(
                session, "POST", classroom.url + "/api/chat/members/rita/allow", INSTRUCTOR)
            out["join after"] = await _join_status(
                session, f"{classroom.ws_url}/ws/chat?name=rita&token={STUDENT}")
            out["post after"] = await post(STUDENT, "rita")
        return out

    out = run(go())
    assert out == {"rest only": 201, "remove rest-only": 204, "post again": 403, "join": 403,
                   "others": 201, "allow by student": 403, "allow": 204, "join after": 101,
                   "post after": 201}


# -- names ---------------------------------------------------------------------------------------
LOOK_ALIKES = ["alice", "Alice", "ALICE", "\u0430lice", "ａｌｉｃｅ", "aIice", "\u0430l\u0456\u0441\u0435"]
REFUSED_NAMES = ["alice\u200b", "\u200b", "\u2060", "\ufeff", "\u3164", "\uffa0", "\u115f",
                 "\u2800", "a\u202eecila", "\u2067alice", "ali\u00adce", "al\ud800ice", "a\x00b",
                 "   "]


@pytest.mark.parametrize("name", REFUSED_NAMES, ids=lambda n: n.encode("unicode_escape").decode())
def test_invisible_format_bidi_and_surrogate_names_are_refused(name):
    normalised, errors = chat_name(name)
    assert normalised is None and errors


def test_look_alike_names_clash():
    alice = name_keys("alice")
    for name in LOOK_ALIKES:
        assert name_keys(chat_name(name)[0]) & alice, name
    different = ["alicia", "bob", "al1ce", "李雷", "علي", "Zoë", "malice"]
    for i, name in enumerate(different):
        assert not name_keys(name) & alice, name
        assert not any(name_keys(name) & name_keys(other) for other in different[i + 1:]), name
    assert name_keys("rn") & name_keys("m"), "a multi-letter look-alike (UTS #39: m -> rn)"


def test_names_are_nfkc_normalised():
    assert chat_name("ｂｏｂ")[0] == "bob"
    assert chat_name("  ﬁona  ")[0] == "fiona"


def test_names_unique_in_the_room_over_websocket(classroom):
    async def join(session, name, token=STUDENT):
        try:
            ws = await session.ws_connect(f"{classroom.ws_url}/ws/chat", params={
                "name": name, "token": token})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, None
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
        return 101, ws

    async def go():
        async with aiohttp.ClientSession() as session:
            first = await join(session, "alice")
            look_alikes = [(await join(session, n))[0] for n in LOOK_ALIKES]
            invisible = (await join(session, "alice\u200b"))[0]
            other = await join(session, "bob", OTHER_STUDENT)
            async with session.post(classroom.url + "/api/chat/messages", headers=BEARER[OTHER_STUDENT],
                                    json={"name": "\u0430lice", "text": "it is me"}) as resp:
                rest_post = resp.status
            await first[1].close()
            # the room lets the name go once it has seen the close: ask until it does (bounded)
            after_leaving = await join(session, "Alice")
            deadline = time.monotonic() + 10
            while after_leaving[0] == 409 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                after_leaving = await join(session, "Alice")
            for ws in (other[1], after_leaving[1]):
                await ws.close()
            return first[0], look_alikes, invisible, other[0], rest_post, after_leaving[0]

    first, look_alikes, invisible, other, rest_post, after_leaving = run(go())
    assert first == 101 and other == 101
    assert look_alikes == [409] * len(LOOK_ALIKES)
    assert invisible == 422
    assert rest_post == 409
    assert after_leaving == 101, "a name is free again once its member has left"


def test_texts_lose_bidi_overrides(lab):
    from labkit.clients.rest import RestClient

    with RestClient(lab) as api:
        reply = api.post("/api/chat/messages", json={"name": "eve", "text": "pay \u202eRLO\u202c 100"})
    assert reply.status == 201
    assert reply.json()["data"]["text"] == "pay RLO 100"


# -- the command line ----------------------------------------------------------------------------
def start_cli(*args, config_home: str | None = None) -> tuple[subprocess.Popen, str]:
    """`labkit serve --classroom ...`; the default instructor-token file goes to `config_home` (a
    folder inside the run's own unless given), never to the home of whoever runs the tests."""
    import tempfile

    home = config_home or tempfile.mkdtemp(prefix="cli-", dir=os.environ["XDG_CONFIG_HOME"])
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "serve", "--classroom", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": home})
    first = proc.stdout.readline().strip()
    return proc, first


def stop_cli(proc) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.mark.timeout(60)
def test_cli_join_url_is_never_a_wildcard_address():
    secret = "teacher-s3cret-0042"
    proc, first = start_cli("--host", "0.0.0.0", "--token", STUDENT, "--instructor-token", secret)
    try:
        parts = urlsplit(first)
        assert parts.scheme == "http" and parts.port
        assert parts.hostname not in ("0.0.0.0", "", "::")
        assert f"token={STUDENT}" in parts.query
        qr = proc.stdout.readline() + proc.stdout.readline()
        assert "█" in qr or "▀" in qr or "▄" in qr, "a QR code follows the URL"
    finally:
        err = stop_cli(proc)
    assert "Traceback" not in err
    assert secret not in err and secret not in first + qr  # the secret is never on the projector
    assert "--instructor-token-file" in err  # and a token given on the command line is warned of


@pytest.mark.timeout(60)
def test_the_instructor_token_lives_in_a_file_only_the_instructor_reads(tmp_path):
    """The issue: the instructor token was printed beside the join URL and QR code. Now the
    projected terminal shows where it is, not what it is; the file is 0600 and the token works."""
    import stat

    token_file = tmp_path / "secret" / "instructor-token"
    proc, first = start_cli("--token", STUDENT, "--instructor-token-file", str(token_file))
    try:
        shown = first + proc.stdout.readline() + proc.stdout.readline()
        token = token_file.read_text().strip()
        assert len(token) >= 16
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        base = first.split("/?")[0]

        async def as_instructor() -> tuple[int, int]:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/api/classroom",
                                   headers={"Authorization": f"Bearer {token}"}) as r1, \
                        session.get(f"{base}/api/classroom",
                                headers={"Authorization": f"Bearer {STUDENT}"}) as r2:
                return r1.status, r2.status

        assert asyncio.run(as_instructor()) == (200, 403)
    finally:
        err = stop_cli(proc)
    assert token not in shown and token not in err
    assert str(token_file) in err
    # run again: the same file, the same token (restarting the class server changes nothing)
    proc, _ = start_cli("--token", STUDENT, "--instructor-token-file", str(token_file))
    stop_cli(proc)
    assert token_file.read_text().strip() == token


def test_join_host_rules():
    assert join_host("0.0.0.0") != "0.0.0.0"
    assert join_host("::") not in ("::", "0.0.0.0")
    assert join_host("127.0.0.1") == "127.0.0.1"
    assert join_url("10.1.2.3", 8765, "t k") == "http://10.1.2.3:8765/?token=t%20k"


@pytest.mark.timeout(60)
def test_cli_generates_tokens_and_honours_allow_origin():
    proc, first = start_cli("--host", "127.0.0.1", "--allow-origin", "https://class.example")
    try:
        token = first.split("token=")[1]
        base = first.split("/?")[0].replace("http://", "ws://")

        async def go():
            async with aiohttp.ClientSession() as session:
                ok = await session.ws_connect(f"{base}/ws/echo?token={token}",
                                              headers={"Origin": "https://class.example"})
                await ok.close()
                with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
                    await session.ws_connect(f"{base}/ws/echo?token={token}",
                                             headers={"Origin": "https://evil.example"})
                return foreign.value.status

        assert len(token) >= 16
        assert run(go()) == 403
    finally:
        stop_cli(proc)


# -- clocks ---------------------------------------------------------------------------------------
def test_clock_offset_formula():
    # the server's clock is 5 s ahead; 10 ms out, 30 ms back, 2 ms in the server
    t0 = 100.0
    t1 = t0 + 0.010 + 5.0
    t2 = t1 + 0.002
    t3 = (t2 - 5.0) + 0.030
    offset, delay = clock_offset(t0, t1, t2, t3)
    assert delay == pytest.approx(0.040)
    assert offset == pytest.approx(5.0 - 0.010)  # half the asymmetry is the error
    assert abs(offset - 5.0) <= delay / 2


def test_estimate_uses_the_fastest_round_trip():
    slow = (0.0, 5.2, 5.2, 0.5)      # 0.5 s round trip, skewed
    fast = (1.0, 6.001, 6.001, 1.002)
    estimate = estimate_clock_offset([slow, fast, slow])
    assert estimate["offset_s"] == pytest.approx(5.0)
    assert estimate["n"] == 3 and estimate["error_s"] == pytest.approx(0.001)
    assert estimate_clock_offset([])["n"] == 0


def test_join_handle_estimates_offset_and_sends_the_token(classroom):
    import labkit as lk

    handle = lk.join(join_url("127.0.0.1", classroom.port, STUDENT))
    assert abs(handle.clock_offset_s) <= max(handle.clock_error_s, 0.005) + 0.005  # same machine
    assert STUDENT not in repr(handle)
    assert lk.rest(handle).get("/api/notes").status == 200
    with pytest.raises(ConnectionError):
        lk.join(classroom.url, "not-a-token")


def test_staleness_is_corrected_by_the_handles_offset(classroom):
    """A client whose handle says the server's clock is 2 s ahead stamps arrivals on the server's
    clock: staleness stays small instead of jumping by 2000 ms."""
    import labkit as lk
    from labkit.clients.feed import make_client, set_source

    handle = lk.join(join_url("127.0.0.1", classroom.port, INSTRUCTOR), sync_clock=False)
    skewed = lk.join(join_url("127.0.0.1", classroom.port, INSTRUCTOR), sync_clock=False)
    skewed.clock_offset_s = 2.0
    set_source(handle, 20.0, seed=3, ticks=8)
    plain, shifted = make_client("ws", handle), make_client("ws", skewed)
    from labkit import _loop

    async def both():
        await asyncio.gather(plain.arun(3.0, since=0, until_seq=8), shifted.arun(3.0, since=0, until_seq=8))

    _loop.run(both(), timeout=20)
    assert len(plain.events) == len(shifted.events) == 8
    for a, b in zip(plain.events, shifted.events, strict=True):
        assert b.staleness_ms - a.staleness_ms == pytest.approx(2000.0, abs=500.0)


# -- the instructor's statistics -------------------------------------------------------------------
def test_classroom_stats_list_transports_and_members(classroom):
    async def go():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{classroom.ws_url}/ws/chat?name=carol&token={STUDENT}")
            await ws.receive(timeout=5)
            feed = await session.ws_connect(f"{classroom.ws_url}/ws/feed?token={OTHER_STUDENT}")
            async with session.get(classroom.url + "/api/classroom", headers=BEARER[INSTRUCTOR]) as r:
                stats = await r.json()
            await ws.close()
            await feed.close()
            return stats

    stats = run(go())
    transports = sorted((c["transport"], c["path"]) for c in stats["connections"])
    assert transports == [("WebSocket", "/ws/chat"), ("WebSocket", "/ws/feed")]
    assert stats["chat_members"] == ["carol"]
    assert len({c["principal"] for c in stats["connections"]}) == 2
    assert all(c["backlog_bytes"] >= 0 for c in stats["connections"])


def test_dashboard_render_and_rates():
    from labkit.widgets.classroom import rates, render

    before = {"ts": 10.0, "topics": {"chat": {"published": 10, "subscribers": {}}}, "connections": [],
              "chat_members": []}
    after = {"ts": 12.0, "topics": {"chat": {"published": 30, "subscribers": {"ws": 2}}},
             "chat_members": ["a"], "connections": [
                 {"principal": "student-1", "name": "a", "peer": "10.0.0.2", "transport": "WebSocket",
                  "backlog_bytes": 900},
                 {"principal": "student-1", "name": "b\u202e", "peer": "10.0.0.3", "transport": "SSE",
                  "backlog_bytes": 5}]}
    assert rates(before, after) == {"chat": 10.0}
    page = render(after, rates(before, after))
    assert page.index("900") < page.index(">5<")
    assert "<bdi>b\u202e</bdi>" in page
    assert time.time() > 0


def test_dashboard_reads_the_class_and_refuses_a_student(classroom):
    import labkit as lk
    from labkit.widgets.classroom import ClassroomDashboard

    teacher = lk.join(join_url("127.0.0.1", classroom.port, INSTRUCTOR), sync_clock=False)
    student = lk.join(join_url("127.0.0.1", classroom.port, STUDENT), sync_clock=False)
    member = lk.chat_ws(student, "dora")
    try:
        watching = ClassroomDashboard(teacher, seconds=1.5)
        refused = ClassroomDashboard(student, seconds=1.5)
        watching.wait(timeout=15)
        refused.wait(timeout=15)
    finally:
        member.close()
    assert watching.snapshots and watching.snapshots[-1]["chat_members"] == ["dora"]
    assert "open streams" in watching.panel.value and "dora" in watching.panel.value
    assert "instructor" in refused.status.value and not refused.snapshots


@pytest.mark.timeout(60)
def test_cli_tls_with_the_kits_ca(tmp_path):
    import re

    import labkit as lk

    proc, first = start_cli("--host", "127.0.0.1", "--tls", "--token", STUDENT, "--instructor-token",
                            INSTRUCTOR)
    try:
        assert first.startswith("https://127.0.0.1:")
        ca = None
        deadline = time.time() + 20
        while ca is None and time.time() < deadline:
            found = re.search(r"CA file (\S+)", proc.stderr.readline())
            ca = found.group(1) if found else None
        assert ca, "the CA file's path is printed for the students"
        handle = lk.join(first, ca=ca)
        assert lk.rest(handle).get("/api/notes").status == 200
        member = lk.chat_ws(handle, "tls-member")
        assert member.welcome["type"] == "welcome"
        member.close()
    finally:
        stop_cli(proc)


def test_bank_accounts_are_paid_from_by_their_owner_and_webhooks_need_no_token(classroom):
    """A student pays from the account they opened; another student may not; the provider's signed
    webhook reaches the bank without a class token, so the payment settles."""
    async def go():
        async with aiohttp.ClientSession() as session:
            async def call(method, path, token, **kw):
                async with session.request(method, classroom.url + path, headers=BEARER[token], **kw) as r:
                    return r.status, await r.json(content_type=None)

            status, account = await call("POST", "/api/accounts", STUDENT,
                                         json={"owner": "me", "opening_balance": 1000})
            assert status == 201
            pay = {"account": account["id"], "payee": "shop", "amount": 100}
            assert (await call("POST", "/api/payments", OTHER_STUDENT, json=pay))[0] == 403
            assert (await call("POST", "/api/payments", STUDENT, json=pay))[0] == 201
            assert (await call("POST", "/api/payments", INSTRUCTOR, json=pay))[0] == 201
            for _ in range(250):
                _, statement = await call("GET", f"/api/accounts/{account['id']}/statement", STUDENT)
                if all(p["status"] == "succeeded" for p in statement):
                    break
                await asyncio.sleep(0.02)
            assert [p["status"] for p in statement] == ["succeeded", "succeeded"]
            assert (await call("GET", f"/api/accounts/{account['id']}", STUDENT))[1]["balance"] == 800
            assert (await call("POST", "/api/bank/webhook-outage", STUDENT, json={"fail_next": 1}))[0] == 403

    run(go())


def test_join_takes_a_public_url_with_no_port_and_a_path_prefix():
    """A class server on a public HTTPS URL (behind a university's reverse proxy, or as a hub
    service) has no port in its URL and may sit under a path: lk.join keeps both."""
    from labkit.course.classroom import ClassroomLab

    public = ClassroomLab("https://class.example.edu/?token=abc", sync_clock=False, personal=False)
    assert (public.port, public.tls, public.prefix) == (443, True, "")
    assert public.base_url == "https://class.example.edu:443"
    behind = ClassroomLab("https://hub.example.edu/services/labkit/?token=abc", sync_clock=False,
                          personal=False)
    assert behind.url == "https://student:abc@hub.example.edu:443/services/labkit"
    assert behind.ws_url == "wss://student:abc@hub.example.edu:443/services/labkit"
    plain = ClassroomLab("http://10.0.0.5:8765/?token=t", sync_clock=False, personal=False)
    assert (plain.port, plain.tls, plain.prefix) == (8765, False, "")


def test_one_join_code_gives_each_machine_its_own_identity(make_lab, tmp_path, monkeypatch):
    """A class shares one join code (the QR code); lk.join exchanges it for a personal token, so two
    students can take two chat names (before: the second got 409, one identity per token), a
    restarted kernel on the same machine is the same identity again (its name with it), and the
    instructor's token stays the instructor's."""
    import stat

    from labkit.clients.rest import RestClient
    from labkit.course.classroom import ClassroomLab

    def say(lab, name: str, text: str) -> int:
        with RestClient(lab) as api:
            return api.post("/api/chat/messages", json={"name": name, "text": text}).status

    classroom = make_lab(student_tokens=(STUDENT,), instructor_token=INSTRUCTOR)  # one join code
    url = f"http://127.0.0.1:{classroom.port}/?token={STUDENT}"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "machine-a"))
    ada = ClassroomLab(url, sync_clock=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "machine-b"))
    bo = ClassroomLab(url, sync_clock=False)
    assert len({ada.token, bo.token, STUDENT}) == 3
    assert [say(ada, "ada", "hello"), say(bo, "bo", "hi")] == [201, 201]
    assert say(bo, "ada", "I am ada") == 409  # a name is its identity's, not the class's

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "machine-a"))
    again = ClassroomLab(url, sync_clock=False)  # ada's kernel restarted
    assert again.token == ada.token and say(again, "ada", "back") == 201
    joined = tmp_path / "machine-a" / "labkit" / "joined.json"
    assert stat.S_IMODE(joined.stat().st_mode) == 0o600
    teacher = ClassroomLab(f"http://127.0.0.1:{classroom.port}/?token={INSTRUCTOR}", sync_clock=False)
    assert teacher.token == INSTRUCTOR
    classroom.restart()  # the class server restarts on its --db: personal tokens and names survive
    assert say(bo, "bo", "after the restart") == 201 and say(bo, "ada", "now?") == 409

    # a personal token mints nothing: exchanging it gives it back (a removed student stays removed)
    with RestClient(bo) as api:
        again_bo = api.post("/api/classroom/join")
    assert again_bo.status == 200 and again_bo.json()["token"] == bo.token


def test_roster_tokens_are_never_exchanged(classroom, tmp_path, monkeypatch):
    """With one token per student (a roster), each token is its student's identity: lk.join keeps
    it, so an instructor's removal cannot be undone by joining again."""
    from labkit.course.classroom import ClassroomLab

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    joined = ClassroomLab(f"http://127.0.0.1:{classroom.port}/?token={STUDENT}", sync_clock=False)
    assert joined.token == STUDENT


def test_every_stream_route_holds_a_member_to_its_share_of_streams(make_lab):
    """One class member may hold at most max_streams_per_identity open streams (WebSocket, SSE, long
    poll), whichever route: built from the route index, so a new stream route cannot skip the rule.
    One more gets 429 problem+json with Retry-After (a WebSocket handshake is refused so); another
    student and the instructor are not affected; a closed stream frees its slot."""
    from labkit.server.access import INSTRUCTOR_ONLY, OPEN_ROUTES
    from labkit.server.auth import token_hash

    cap = 2
    lab = make_lab(student_tokens=(STUDENT, OTHER_STUDENT), instructor_token=INSTRUCTOR,
                   max_streams_per_identity=cap)
    index = route_index(lab.app)
    ws_routes = [e["path"] for e in index if e["kind"] == "websocket"]
    sse_routes = [e["path"] for e in index if e["kind"] == "sse"]
    polls = [e["path"] for e in index if e["kind"] == "http" and "GET" in e["methods"]
             and "{" not in e["path"] and e["path"] not in OPEN_ROUTES
             and ("GET", e["path"]) not in INSTRUCTOR_ONLY]
    assert len(ws_routes) >= 8 and sse_routes and "/api/feed" in polls

    async def refused(session, route: str, kind: str, token: str) -> tuple:
        if kind == "websocket":
            try:
                ws = await session.ws_connect(f"{lab.ws_url}{route}?token={token}")
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status, exc.headers.get("Retry-After"), exc.headers.get("Content-Type", "")
            await ws.close()
            return 101, None, ""
        query = "?wait=0.01" if kind == "poll" else ""
        async with session.get(lab.url + route + query, headers=BEARER[token],
                               timeout=aiohttp.ClientTimeout(10)) as resp:
            return resp.status, resp.headers.get("Retry-After"), resp.headers["Content-Type"]

    async def go():
        async with aiohttp.ClientSession() as session:
            held = [await session.ws_connect(f"{lab.ws_url}/ws/echo?token={STUDENT}")
                    for _ in range(cap)]
            cells = [(kind, route, await refused(session, route, kind, STUDENT))
                     for kind, routes in (("websocket", ws_routes), ("sse", sse_routes),
                                          ("poll", polls)) for route in routes]
            stats = await (await session.get(lab.url + "/api/classroom",
                                             headers=BEARER[INSTRUCTOR])).json()
            others = [await session.ws_connect(f"{lab.ws_url}/ws/echo?token={t}")
                      for t in (OTHER_STUDENT, INSTRUCTOR, INSTRUCTOR, INSTRUCTOR)]
            await held.pop().close()
            await asyncio.sleep(0.2)  # the server sees the close
            again = await session.ws_connect(f"{lab.ws_url}/ws/echo?token={STUDENT}")
            await again.send_str("back")
            echoed = (await again.receive(timeout=5)).data
            for ws in [*held, *others, again]:
                await ws.close()
            return cells, stats, echoed

    cells, stats, echoed = run(go())
    wrong = [c for c in cells if c[2][0] != 429 or c[2][1] != "5"
             or not c[2][2].startswith("application/problem+json")]
    assert not wrong, wrong
    assert len(cells) == len(ws_routes) + len(sse_routes) + len(polls)
    mine = [c for c in stats["connections"] if c["principal"] == "student-" + token_hash(STUDENT)[:8]]
    assert len(mine) == cap
    assert echoed == "back"


def test_max_streams_per_identity_is_a_limit_like_the_others():
    from labkit.server.config import LIMIT_FIELDS, MAX_STREAMS_PER_IDENTITY, LabConfig, parse_limits

    assert "max_streams_per_identity" in LIMIT_FIELDS
    assert LabConfig().max_streams_per_identity == MAX_STREAMS_PER_IDENTITY == 32
    assert parse_limits(["max-streams-per-identity=8"]) == {"max_streams_per_identity": 8}
    with pytest.raises(ValueError):
        parse_limits(["max_streams_per_identity=0"])


def test_a_plain_lab_says_it_does_not_list_streams_and_the_dashboard_says_why(lab):
    """Only the classroom middleware lists open streams, and a lab of one's own has none in its
    chain: with a socket open, its /api/classroom answers `connections: null` (not an empty list,
    which would read as "nobody"), and the dashboard names the reason instead of a count."""
    from labkit.widgets.classroom import render

    async def go():
        async with aiohttp.ClientSession() as session:
            feed = await session.ws_connect(f"{lab.ws_url}/ws/chat?name=dana")
            await feed.receive(timeout=5)  # the welcome: the socket is open and served
            async with session.get(lab.url + "/api/classroom") as r:
                status, body = r.status, await r.json()
            await feed.close()
            return status, body

    status, body = run(go())
    assert status == 200 and body["classroom"] is False and body["connections"] is None
    page = render(body, {})
    assert "not a class server" in page and "open streams</b>" not in page and "1 in the room" in page
