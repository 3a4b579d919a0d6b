"""GET /asyncapi.json: AsyncAPI 3.0 structure, every $ref resolves, and it lists exactly the
WebSocket routes the app serves (plus streaming HTTP channels such as SSE, which must be real routes)."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator

from labkit.clients.rest import RestClient

KEY = re.compile(r"^[A-Za-z0-9_\-]+$")  # AsyncAPI 3 component and channel keys


@pytest.fixture
def documents(lab):
    api = RestClient(lab)
    doc = api.get("/asyncapi.json")
    index = api.get("/", headers={"Accept": "application/json"}).json()
    api.close()
    assert doc.status == 200
    return doc.json(), index["routes"]


def resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_required_asyncapi_3_structure(documents):
    doc, _ = documents
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for server in doc["servers"].values():
        assert server["host"] and server["protocol"] in ("ws", "wss", "http", "https")
    assert doc["channels"], "no channel at all"
    for channel_id, channel in doc["channels"].items():
        assert KEY.match(channel_id)
        assert channel["address"].startswith("/")
        assert channel["messages"]
        assert not {"receives", "sends"} & set(channel)  # our helper keys never leak out
        for name, message in channel["messages"].items():
            assert KEY.match(name)
            Draft202012Validator.check_schema(message["payload"])
    for op_id, operation in doc["operations"].items():
        assert KEY.match(op_id)
        assert operation["action"] in ("send", "receive")
        channel = resolve(doc, operation["channel"]["$ref"])
        for ref in operation["messages"]:  # an operation's messages must belong to its channel
            assert ref["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            assert resolve(doc, ref["$ref"]) in channel["messages"].values()


def test_lists_exactly_the_websocket_routes(documents):
    doc, routes = documents
    websocket_paths = {r["path"] for r in routes if r["kind"] == "websocket"}
    served = {r["path"] for r in routes}
    addresses = [c["address"] for c in doc["channels"].values()]
    assert len(addresses) == len(set(addresses))
    assert websocket_paths <= set(addresses), websocket_paths - set(addresses)
    assert set(addresses) <= served  # nothing described that the app does not serve
    assert {"/ws/echo", "/ws/session", "/ws/clock"} <= websocket_paths


def test_directions_of_the_session_and_echo_channels(documents):
    doc, _ = documents
    ops = doc["operations"]
    assert ops["sessionReceive"]["action"] == "receive"
    assert [m["$ref"] for m in ops["sessionSend"]["messages"]] == [
        "#/channels/session/messages/state", "#/channels/session/messages/error"]
    assert ops["echoSend"]["channel"] == {"$ref": "#/channels/echo"}
    assert doc["channels"]["clock"]["bindings"]["ws"]["query"]["properties"]["rate"]["maximum"] == 100


def test_every_channel_says_what_flows_which_way(documents):
    doc, _ = documents
    channels_with_ops = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in doc["operations"].values()}
    assert channels_with_ops == set(doc["channels"])
    ops = doc["operations"]
    assert ops["chatWebSocketReceive"]["action"] == "receive"  # the server receives what clients send
    assert ops["feedWebSocketSend"]["action"] == "send" and "feedWebSocketReceive" not in ops
