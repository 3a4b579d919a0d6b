"""Heartbeats find a blackholed peer (and say which mechanism did); without one nothing notices.
A heartbeat also keeps a connection alive through a proxy that closes idle connections.
Faults come from the netem proxy's toxics on 127.0.0.1."""

from __future__ import annotations

import pytest

from labkit.lessons import reliability

MECHANISMS = {"ws": "ws ping timeout", "sse": "sse read timeout", "long_poll": "long-poll timeout"}


@pytest.mark.parametrize("transport", ["ws", "sse", "long_poll"])
def test_a_heartbeat_detects_a_blackholed_peer(lab, transport):
    result = reliability.detection_run(lab, transport, heartbeat_s=0.4, limit_s=6.0, wait_s=1.0)
    assert result["detected"], result
    assert result["mechanism"] == MECHANISMS[transport]


def test_without_a_heartbeat_a_blackholed_websocket_goes_unnoticed(lab):
    result = reliability.detection_run(lab, "ws", heartbeat_s=None, limit_s=2.0)
    assert not result["detected"] and result["mechanism"] is None


def test_a_heartbeat_keeps_a_connection_alive_through_an_idle_timeout(lab):
    kept = reliability.idle_timeout_run(lab, idle_s=0.8, heartbeat_s=0.2, seconds=2.5)
    cut = reliability.idle_timeout_run(lab, idle_s=0.8, heartbeat_s=None, seconds=2.5)
    assert kept["connects"] == 1 and kept["cuts"] == 0
    assert cut["cuts"] >= 1  # the quiet connection was closed and the client came back


def test_the_server_heartbeat_option_is_validated(lab):
    from labkit.clients.rest import RestClient

    with RestClient(lab) as api:
        assert api.get("/sse/feed?heartbeat=0").status == 422
        assert api.get("/sse/feed?heartbeat=x").status == 422


def test_a_websocket_heartbeat_option_out_of_range_is_refused_before_the_upgrade(lab):
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def open_it():
        async with connect(lab.ws_url + "/ws/feed?heartbeat=0"):
            pass

    with pytest.raises(InvalidStatus) as info:
        asyncio.run(open_it())
    assert info.value.response.status_code == 422
