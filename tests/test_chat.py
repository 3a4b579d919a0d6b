"""The chat room over REST and WebSocket: one order for everyone, typing, validation."""

from __future__ import annotations

import time

import pytest

from labkit.clients.chat import ChatError, ChatRestClient, ChatWsClient, simulate_room
from labkit.clients.rest import RestClient


def wait_until(predicate, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_rest_and_websocket_members_see_the_same_messages_in_the_same_order(lab):
    ann, bob = ChatWsClient(lab, "ann"), ChatWsClient(lab, "bob")
    cy = ChatRestClient(lab, "cy", interval_s=0.05).start(20)
    try:
        for i in range(6):
            (ann if i % 3 == 0 else bob).send(f"ws {i}")
            cy.send(f"rest {i}")
        wait_until(lambda: all(len(m.messages) == 12 for m in (ann, bob, cy)))
    finally:
        cy.close()
        ann.close()
        bob.close()
    orders = [[(m["seq"], m["data"]["name"], m["data"]["text"]) for m in member.messages]
              for member in (ann, bob, cy)]
    assert orders[0] == orders[1] == orders[2]
    assert [seq for seq, _, _ in orders[0]] == list(range(1, 13))
    assert {name for _, name, _ in orders[0]} == {"ann", "bob", "cy"}


def test_typing_reaches_other_websocket_members_only_and_is_not_stored(lab):
    ann, bob = ChatWsClient(lab, "ann"), ChatWsClient(lab, "bob")
    try:
        ann.typing()
        wait_until(lambda: bob.typing_seen)
        ann.send("done typing")
        wait_until(lambda: ann.messages and bob.messages)
    finally:
        ann.close()
        bob.close()
    assert [t["name"] for t in bob.typing_seen] == ["ann"] and ann.typing_seen == []
    with RestClient(lab) as api:
        stored = api.get("/api/chat/messages").json()
    assert [m["data"]["text"] for m in stored] == ["done typing"]


@pytest.mark.parametrize("body, field", [
    ({"name": "ann", "text": ""}, "text"), ({"name": "ann", "text": "   "}, "text"),
    ({"name": "ann", "text": "x" * 501}, "text"), ({"name": "", "text": "hi"}, "name"),
    ({"name": "n" * 33, "text": "hi"}, "name"), ({"name": "ann"}, "text"),
    ({"name": "ann", "text": 5}, "text"), ({"name": "a\x00b", "text": "hi"}, "name"),
    ({"name": "ann", "text": "hi", "extra": 1}, "extra"),
])
def test_post_refuses_invalid_messages_with_422(lab, body, field):
    with RestClient(lab) as api:
        r = api.post("/api/chat/messages", json=body)
        assert r.status == 422
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]]
        assert api.get("/api/chat/messages").json() == []  # nothing was stored


def _post_schema() -> dict:
    from labkit.routes.chat import OPENAPI_PATHS

    return OPENAPI_PATHS["/api/chat/messages"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]


@pytest.mark.parametrize("name, text, stored", [
    ("ann", "a\nb\tc", "a\nb\tc"), ("  ann ", "  hi  ", "hi"), ("ann", "x" * 500, "x" * 500),
    ("ann", "\u00e9\u3000\u65e5", "\u00e9\u3000\u65e5"), ("ann", "a\x11b", None),
    ("ann", "a\x00", None), ("ann", "\x7f", None), ("ann", "\u0085x", None),
    ("ann", "\t\n ", None), ("ann", "\u3000", None), ("ann", "x" * 500 + " ", None),
    ("a\nb", "hi", None), ("ann\t", "hi", None), ("\u2003", "hi", None), ("n" * 32, "hi", "hi"),
])
def test_post_accepts_exactly_what_its_schema_allows(lab, name, text, stored):
    """The OpenAPI schema states the server's rules (no control characters but newline and tab in
    a text, not only spaces, length before trimming): both agree on every case."""
    import jsonschema

    body = {"name": name, "text": text}
    valid = jsonschema.Draft202012Validator(_post_schema()).is_valid(body)
    with RestClient(lab) as api:
        r = api.post("/api/chat/messages", json=body)
        kept = [m["data"]["text"] for m in api.get("/api/chat/messages").json()]
    assert valid == (stored is not None)
    if stored is None:
        assert r.status == 422 and kept == []
    else:
        assert r.status == 201 and r.json()["data"]["text"] == stored and kept == [stored]


@pytest.mark.parametrize("query, field", [
    ("since=", "since"), ("wait=", "wait"), ("since=%2B0", "since"), ("since=0&wait=%2B1", "wait"),
    ("since=2", "since"),
])
def test_poll_refuses_empty_non_canonical_or_future_parameters(lab, query, field):
    with RestClient(lab) as api:
        assert api.post("/api/chat/messages", json={"name": "ann", "text": "hi"}).status == 201
        r = api.get(f"/api/chat/messages?{query}")
        assert api.get("/api/chat/messages?since=0&wait=0").status == 200
    assert r.status == 422
    assert r.json()["errors"][0]["field"] == field
    if query == "since=2":
        assert r.json()["last_seq"] == 1


def test_post_refuses_non_json_and_wrong_type(lab):
    with RestClient(lab) as api:
        assert api.post("/api/chat/messages", data="hi",
                        headers={"Content-Type": "text/plain"}).status == 415
        assert api.post("/api/chat/messages", data="{",
                        headers={"Content-Type": "application/json"}).status == 400
        assert api.delete("/api/chat/messages").status == 405


def test_post_returns_the_stored_message(lab):
    with RestClient(lab) as api:
        r = api.post("/api/chat/messages", json={"name": " ann ", "text": " hello "})
    assert r.status == 201
    assert r.json()["seq"] == 1 and r.json()["data"] == {"name": "ann", "text": "hello"}


def test_websocket_bad_messages_get_errors_and_the_connection_stays(lab):
    ann = ChatWsClient(lab, "ann")
    try:
        ann.send("")
        ann.send_raw("not json")
        ann.send_raw('{"type": "shout"}')
        ann.send("x" * 501)
        ann.send("still here")
        wait_until(lambda: ann.messages)
    finally:
        ann.close()
    assert len(ann.errors) == 4 and all(e["type"] == "error" for e in ann.errors)
    assert [m["data"]["text"] for m in ann.messages] == ["still here"]


def test_websocket_refuses_a_bad_name_before_upgrading(lab):
    from websockets.exceptions import InvalidStatus

    for name in ("", "n" * 33):
        with pytest.raises(InvalidStatus) as info:
            ChatWsClient(lab, name)
        assert info.value.response.status_code == 422


def test_rest_client_raises_a_clear_error(lab):
    cy = ChatRestClient(lab, "cy")
    try:
        with pytest.raises(ChatError, match="empty"):
            cy.send("  ")
    finally:
        cy.close()


def test_late_joiner_catches_up_with_since(lab):
    with RestClient(lab) as api:
        for i in range(3):
            api.post("/api/chat/messages", json={"name": "ann", "text": f"m{i}"})
    late = ChatWsClient(lab, "late", since=1)
    try:
        wait_until(lambda: len(late.messages) == 2)
    finally:
        late.close()
    assert [m["seq"] for m in late.messages] == [2, 3]


def test_simulated_room_delivers_every_message_to_every_member(lab):
    frame, members = simulate_room(lab, ws_members=2, rest_members=2, messages=5, gap_s=0.05,
                                   poll_interval_s=0.2)
    assert len(frame) == 5 * 4
    for member in members:
        assert [m["seq"] for m in member.messages] == [1, 2, 3, 4, 5]
    assert set(frame.receiver_kind) == {"WebSocket", "REST poll"}


def test_each_simulated_room_draws_its_own_schedule_and_a_seed_repeats_it(lab):
    a, _ = simulate_room(lab, ws_members=1, rest_members=1, messages=3, gap_s=0.02,
                         poll_interval_s=0.1)
    b, _ = simulate_room(lab, ws_members=1, rest_members=1, messages=3, gap_s=0.02,
                         poll_interval_s=0.1)
    assert a.attrs["seed"] != b.attrs["seed"]
    c, _ = simulate_room(lab, ws_members=1, rest_members=1, messages=3, gap_s=0.02,
                         poll_interval_s=0.1, seed=a.attrs["seed"])
    senders = [f.sort_values("seq").drop_duplicates("seq").sender.str.split("-").str[0].tolist()
               for f in (a, c)]
    assert senders[0] == senders[1]  # the same seed: the same speakers in the same order


def test_an_interrupted_room_leaves_no_member_behind(lab, monkeypatch):
    import labkit.clients.chat as chat
    from labkit.clients.feed import hub_stats

    sleeps = {"n": 0}
    real_sleep = time.sleep

    def sleep_then_interrupt(seconds):
        sleeps["n"] += 1
        if sleeps["n"] == 3:
            raise KeyboardInterrupt  # the kernel's stop button between two messages
        real_sleep(seconds)

    monkeypatch.setattr(chat.time, "sleep", sleep_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        simulate_room(lab, ws_members=2, rest_members=2, messages=10, gap_s=0.05,
                      poll_interval_s=0.2)
    monkeypatch.undo()
    wait_until(lambda: not hub_stats(lab)["topics"].get("chat", {}).get("subscribers", {})
               .get("ws", 0))
    assert hub_stats(lab)["topics"]["chat"]["published"] == 2  # two messages went out


# -- the chat box on a class server: one room for the class, one name per person --------------------
JOIN_A, JOIN_B, TEACHER = "class-token-a", "class-token-b", "teacher-token"


@pytest.fixture
def class_room(make_lab):
    return make_lab(student_tokens=(JOIN_A, JOIN_B), instructor_token=TEACHER)


def _student(class_room, token):
    import labkit as lk
    from labkit.course.classroom import join_url

    return lk.join(join_url("127.0.0.1", class_room.port, token), personal=False, sync_clock=False)


def test_the_box_is_you_on_the_own_lab(lab):
    from labkit.clients.chat import personal_name
    from labkit.widgets.chat import chat_widget

    assert personal_name(lab) == "you"
    box = chat_widget(lab, seconds=30)
    try:
        assert box.client.name == "you" and "<b><bdi>you</bdi></b>" in box.who.value
    finally:
        box.close()


def test_two_students_with_the_same_user_name_each_get_a_name_of_their_own(class_room, monkeypatch):
    """Binder: everybody is "jovyan". Each box joins the class's room under a name of its own
    person (the user name and six characters of the personal token's hash), so the second does
    not get 409; both see both messages, in one order."""
    from labkit.clients.chat import personal_name
    from labkit.widgets.chat import chat_widget

    monkeypatch.setenv("JUPYTERHUB_USER", "jovyan")
    ana, ben = _student(class_room, JOIN_A), _student(class_room, JOIN_B)
    names = personal_name(ana), personal_name(ben)
    assert names[0] != names[1] and all(n.startswith("jovyan-") and len(n) == 13 for n in names)
    assert personal_name(_student(class_room, JOIN_A)) == names[0]  # the same person, the same name
    boxes = [chat_widget(ana, seconds=30), chat_widget(ben, seconds=30)]
    try:
        assert [b.client.name for b in boxes] == list(names)
        boxes[0].send("hello from ana")
        boxes[1].send("hello from ben")
        for box in boxes:
            wait_until(lambda box=box: len(box.client.messages) == 2)
        seen = [[(m["seq"], m["data"]["name"]) for m in b.client.messages] for b in boxes]
        assert seen[0] == seen[1] and {n for _, n in seen[0]} == set(names)
    finally:
        for box in boxes:
            box.close()


def test_a_person_who_holds_a_name_joins_as_that_name(class_room):
    """A student who chose a name earlier holds it (one name per person): the class server answers
    409 "you are 'ana' in this room" to any other name, and the box joins as 'ana' instead."""
    from websockets.exceptions import InvalidStatus

    from labkit.clients.chat import held_name, join_room
    from labkit.widgets.chat import chat_widget

    student = _student(class_room, JOIN_A)
    ChatWsClient(student, "ana").close()
    with pytest.raises(InvalidStatus) as refused:
        ChatWsClient(student, "someone-else")
    assert refused.value.response.status_code == 409 and held_name(refused.value) == "ana"
    member = join_room(student, "someone-else")
    try:
        assert member.name == "ana" and member.welcome["name"] == "ana"
    finally:
        member.close()
    box = chat_widget(student, seconds=30)  # the default name: the held one wins as well
    try:
        assert box.name == "ana" and "<b><bdi>ana</bdi></b>" in box.who.value
    finally:
        box.close()
    other = _student(class_room, JOIN_B)  # a name another person holds is not adopted
    with pytest.raises(InvalidStatus) as taken:
        join_room(other, "ana")
    assert taken.value.response.status_code == 409 and held_name(taken.value) is None


@pytest.mark.parametrize("user", ["admin", "...", ""])
def test_a_user_name_the_room_refuses_becomes_student(class_room, monkeypatch, user):
    from labkit.clients.chat import personal_name

    monkeypatch.setenv("JUPYTERHUB_USER", user)
    monkeypatch.setattr("getpass.getuser", lambda: user)
    name = personal_name(_student(class_room, JOIN_A))
    assert name.startswith("student-") and len(name) == 14
    member = ChatWsClient(_student(class_room, JOIN_A), name)
    member.close()
