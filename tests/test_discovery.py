"""Lesson 01's discovery: the lab's OpenAPI and AsyncAPI documents, read from a running lab, list
its operations and channels, and real traffic (a REST answer, a WebSocket message) fits the
schemas they give, while the same traffic with one field made wrong does not."""

from __future__ import annotations

from labkit.clients.rest import RestClient
from labkit.clients.ws import WsClient
from labkit.lessons import rest as rest_lab


def test_channels_list_what_the_lab_sends_and_receives_on_each_websocket(lab):
    asyncapi = RestClient(lab).get("/asyncapi.json").json()
    chans = rest_lab.channels(asyncapi).set_index("channel")
    assert set(chans.index) == set(asyncapi["channels"])
    assert chans.loc["clock", "address"] == "/ws/clock"
    assert set(chans.loc["clock", "lab sends"].split(", ")) == {"tick", "ack", "error"}
    assert chans.loc["echo", "lab receives"] == "text, binary"
    assert chans.loc["feedSse", "lab receives"] == ""  # SSE: the lab only sends


def test_real_traffic_fits_the_documents_and_a_wrong_field_does_not(lab):
    api = RestClient(lab)
    openapi, asyncapi = api.get("/openapi.json").json(), api.get("/asyncapi.json").json()
    note = api.get(api.post("/api/notes", json={"title": "checked"}).headers["Location"]).json()
    pointer = rest_lab.response_schema(openapi, "/api/notes/{id}", "get", 200)
    assert rest_lab.schema_errors(openapi, pointer, note) == []
    errors = rest_lab.schema_errors(openapi, pointer, {**note, "votes": "many"})
    assert len(errors) == 1 and errors[0].startswith("votes:")
    with WsClient(lab, "/ws/clock?rate=20&count=2") as clock:
        ticks = [clock.recv_json(), clock.recv_json()]
    tick = rest_lab.message_schema(asyncapi, "clock", "tick")
    assert [rest_lab.schema_errors(asyncapi, tick, t) for t in ticks] == [[], []]
    assert rest_lab.schema_errors(asyncapi, tick, {**ticks[0], "seq": "three"})[0].startswith("seq:")
    cacheable = rest_lab.response_schema(openapi, "/api/cacheable", "get", 200)
    assert rest_lab.schema_errors(openapi, cacheable, api.get("/api/cacheable").json()) == []


def test_a_class_server_describes_itself_and_its_traffic_fits(make_lab):
    """Lesson 01's discovery stays on the class server (lk.join): both documents are readable with
    the student's token, and a note and a /ws/clock tick received there fit them."""
    import labkit as lk
    from labkit.course.classroom import join_url

    room = make_lab(student_tokens=("student-token",), instructor_token="instructor-token")
    handle = lk.join(join_url("127.0.0.1", room.port, "student-token"), sync_clock=False,
                     personal=False)
    with RestClient(handle) as api:
        openapi, asyncapi = api.get("/openapi.json").json(), api.get("/asyncapi.json").json()
        note = api.get(api.post("/api/notes", json={"title": "checked"}).headers["Location"]).json()
    with WsClient(handle, "/ws/clock?rate=20&count=1") as clock:
        tick = clock.recv_json()
    checks = rest_lab.traffic_checks(openapi, asyncapi, note, tick)
    assert checks["fits"].tolist() == [True, False, True, False]
    assert "/api/notes/{id}" in set(rest_lab.operations(openapi)["path"])
