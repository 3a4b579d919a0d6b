"""The bank family: payments over REST that never overdraw and charge once per key, a provider's
signed webhooks applied once, the account's WebSocket, the support room; IoT and REST over WebSocket.
Everything over real sockets on 127.0.0.1 against a real lab and a real provider service."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest
from websockets.asyncio.client import connect

from labkit.clients import bank, iot, rest_ws
from labkit.clients.rest import RestClient


def _account(lab, cents=10_000):
    return bank.open_account(lab, "Test", cents)["id"]


def _wait_settled(api, account_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        payments = api.get(f"/api/accounts/{account_id}/statement").json()
        if all(p["status"] != "pending" for p in payments):
            return payments
        time.sleep(0.02)
    raise AssertionError("payments still pending")


def test_a_payment_is_held_then_settled_by_the_webhook(lab):
    api = RestClient(lab)
    acc = _account(lab)
    r = api.post("/api/payments", json={"account": acc, "payee": "Shop", "amount": 2500})
    assert r.status == 201 and r.headers["Location"] == f"/api/payments/{r.json()['id']}"
    assert r.json()["status"] == "pending"
    _wait_settled(api, acc)
    assert api.get(r.headers["Location"]).json()["status"] == "succeeded"
    assert api.get(f"/api/accounts/{acc}").json() == {
        "id": acc, "owner": "Test", "currency": "EUR", "balance": 7500, "held": 0, "available": 7500}


def test_a_declined_payment_releases_the_hold(lab):
    api = RestClient(lab)
    acc = _account(lab, 1000)
    api.post("/api/payments", json={"account": acc, "payee": "Decline Corp", "amount": 600})
    payments = _wait_settled(api, acc)
    assert [p["status"] for p in payments] == ["failed"]
    assert api.get(f"/api/accounts/{acc}").json()["available"] == 1000


def test_the_bank_refuses_what_it_must(lab):
    api = RestClient(lab)
    acc = _account(lab, 100)
    over = api.post("/api/payments", json={"account": acc, "payee": "x", "amount": 101})
    assert over.status == 409 and over.headers["Content-Type"].startswith("application/problem+json")
    assert over.json()["available"] == 100
    for bad, field in [({"account": acc, "payee": "x", "amount": 1.5}, "amount"),
                       ({"account": acc, "payee": "x", "amount": 0}, "amount"),
                       ({"account": acc, "payee": "x", "amount": True}, "amount"),
                       ({"account": acc, "payee": "", "amount": 5}, "payee"),
                       ({"account": "acc_nope", "payee": "x", "amount": 5}, "account"),
                       ({"account": acc, "payee": "x", "amount": 5, "currency": "USD"}, "currency"),
                       ({"account": acc, "payee": "x", "amount": 5, "extra": 1}, "extra")]:
        r = api.post("/api/payments", json=bad)
        assert r.status == 422, bad
        assert field in [e["field"] for e in r.json()["errors"]], bad
    assert api.post("/api/payments", data=b"[[[[", headers={"Content-Type": "application/json"}).status == 400
    assert api.get(f"/api/accounts/{acc}/statement").json() == []
    assert api.get("/api/accounts/nope").status == 404
    assert api.get("/api/payments/99999").status == 404


def test_twenty_racing_payments_never_overdraw(lab):
    api = RestClient(lab)
    acc = _account(lab, 1000)

    async def race():
        async with aiohttp.ClientSession() as session:
            async def pay():
                async with session.post(f"{lab.url}/api/payments",
                                        json={"account": acc, "payee": "race", "amount": 300}) as r:
                    return r.status
            return await asyncio.gather(*(pay() for _ in range(20)))

    statuses = asyncio.run(race())
    assert sorted(set(statuses)) == [201, 409]
    assert statuses.count(201) == 3  # 3 × 300 <= 1000 < 4 × 300
    _wait_settled(api, acc)
    assert api.get(f"/api/accounts/{acc}").json()["balance"] == 100


def test_a_retried_payment_charges_once_with_a_key_and_twice_without(lab):
    acc = _account(lab)
    without = bank.retry_after_lost_answer(lab, acc, with_key=False, amount=500)
    keyed = bank.retry_after_lost_answer(lab, acc, with_key=True, amount=500, attempts=3)
    assert (without["payments_created"], without["charged_cents"]) == (2, 1000)
    assert (keyed["payments_created"], keyed["charged_cents"]) == (1, 500)


def test_the_same_key_with_another_body_is_refused(lab):
    api = RestClient(lab)
    acc = _account(lab)
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
    first = api.post("/api/payments", json={"account": acc, "payee": "a", "amount": 5}, headers=key)
    again = api.post("/api/payments", json={"account": acc, "payee": "a", "amount": 5}, headers=key)
    other = api.post("/api/payments", json={"account": acc, "payee": "a", "amount": 6}, headers=key)
    assert first.status == again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert other.status == 422


def test_a_webhook_delivered_three_times_is_applied_once(lab):
    acc = _account(lab)
    result = bank.webhook_redelivery(lab, acc, deliveries=3, amount=100)
    assert result == {"deliveries_made": 3, "applied": 1, "duplicates": 2, "balance_updates_seen": 1}
    assert bank.account(lab, acc)["balance"] == 9900


def test_forged_or_unsigned_webhooks_are_refused_and_change_nothing(lab):
    api = RestClient(lab)
    acc = _account(lab)
    payment = api.post("/api/payments", json={"account": acc, "payee": "Decline me", "amount": 100}).json()
    _wait_settled(api, acc)
    forged = bank.forged_webhook(lab, payment_id=payment["id"])
    assert forged["status"] == 401 and "signature" in forged["detail"]
    unsigned = api.post("/api/webhooks/provider", json={"id": "evt_x", "type": "charge.succeeded",
                                                        "payment_id": payment["id"]})
    assert unsigned.status == 401 and unsigned.headers["WWW-Authenticate"].startswith("Webhook-Signature")
    assert api.get(f"/api/payments/{payment['id']}").json()["status"] == "failed"
    assert api.get("/api/bank").json()["webhooks"]["refused"] == 2


def test_the_provider_retries_through_an_outage(lab):
    api = RestClient(lab)
    acc = _account(lab)
    api.post("/api/bank/webhook-outage", json={"fail_next": 2})
    frame = bank.pay_and_watch(lab, acc, count=1)
    assert frame["status"].tolist() == ["succeeded"]
    log = bank.provider_deliveries(lab)
    mine = log[log.payment_id == log.payment_id.max()]
    assert mine["status"].tolist() == [503, 503, 200]
    assert api.post("/api/bank/webhook-outage", json={"fail_next": 11}).status == 422


def test_the_account_socket_sees_each_balance_change_exactly_once(lab):
    acc = _account(lab)
    frame = bank.pay_and_watch(lab, acc, count=4, amount=100)
    assert frame["status"].tolist() == ["succeeded"] * 4
    assert frame["balance"].tolist() == [9900, 9800, 9700, 9600]
    settled = [m["data"]["payment"]["id"] for m in frame.attrs["messages"]
               if m.get("data", {}).get("payment", {}).get("status") == "succeeded"]
    assert len(settled) == len(set(settled)) == 4


def test_support_rooms_are_one_per_customer(lab):
    a, b = _account(lab), _account(lab)
    chat = bank.support_chat(lab, a, [("customer", "help"), ("agent", "here")])
    assert chat.groupby("receiver")["text"].apply(list).to_dict() == {
        "agent": ["help", "here"], "customer": ["help", "here"]}
    other = bank.support_chat(lab, b, [("customer", "hello")])
    assert other["seq"].tolist() == [1, 1]  # a room of its own: its first message is SEQ 1


def test_the_support_bot_answers_only_while_no_agent_is_in_the_room(lab):
    api = RestClient(lab)
    acc = _account(lab, 10_000)
    api.post("/api/payments", json={"account": acc, "payee": "Corner shop", "amount": 250})
    _wait_settled(api, acc)
    balance = bank.ask_support(lab, acc, "What is my balance?")
    assert [m["name"] for m in balance] == ["customer", "support bot"]
    assert "97.50 EUR" in balance[1]["text"] and "0.00 is held" in balance[1]["text"]
    paid = bank.ask_support(lab, acc, "Was my payment taken twice?")
    assert "1 in all" in paid[1]["text"] and "2.50 to Corner shop: succeeded" in paid[1]["text"]
    other = bank.ask_support(lab, acc, "hello")
    assert "No agent is in this room" in other[1]["text"]
    with_agent = bank.support_chat(lab, acc, [("customer", "balance?"), ("agent", "a person here")])
    assert "support bot" not in set(with_agent["sender"])  # an agent is there: the bot stays quiet
    assert with_agent.groupby("receiver")["text"].apply(list).to_dict() == {
        "agent": ["balance?", "a person here"], "customer": ["balance?", "a person here"]}


def test_a_pending_payment_is_a_resource_at_once_and_a_lost_answer_finds_it(lab):
    """201, not 202: when the bank answers, the payment exists at its Location (pending or later)."""
    api = RestClient(lab)
    acc = _account(lab)
    r = api.post("/api/payments", json={"account": acc, "payee": "Shop", "amount": 100})
    assert r.status == 201
    at_once = api.get(r.headers["Location"])
    assert at_once.status == 200 and at_once.json()["id"] == r.json()["id"]
    assert at_once.json()["status"] in ("pending", "succeeded")
    keyed = bank.retry_after_lost_answer(lab, acc, with_key=True, amount=100)
    assert keyed["last_status"] == 201 and keyed["location"].startswith("/api/payments/")
    assert keyed["outcome_at_location"] == "succeeded"


def test_bank_sockets_refuse_bad_parameters_and_bad_messages(lab):
    api = RestClient(lab)
    acc = _account(lab)
    assert api.get("/ws/bank?account=nope", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                      "Sec-WebSocket-Version": "13",
                                                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                   ).status == 422

    async def talk():
        async with connect(f"{lab.ws_url}/ws/bank/support?account={acc}&role=customer") as ws:
            json.loads(await ws.recv())
            await ws.send("not json")
            error = json.loads(await ws.recv())
            await ws.send(json.dumps({"text": "still here"}))
            return error, json.loads(await ws.recv())

    error, message = asyncio.run(talk())
    assert error["type"] == "error"
    assert message["data"] == {"name": "customer", "text": "still here"}


@pytest.mark.parametrize("mode", iot.MODES)
def test_iot_telemetry_stores_every_reading(lab, mode):
    from labkit.lessons.latency import tcp_ip_bytes

    row = iot.telemetry(lab, mode, devices=4, readings=6, packet_model=tcp_ip_bytes)
    assert row["readings_sent"] == row["readings_stored"] == 24
    assert row["connections"] == 4
    assert row["requests"] == {"rest": 24, "batch": 4, "ws": 4}[mode]
    # lesson 03's model: 52 B per packet; every exchange at least one data packet and one ACK, and
    # each of the 4 connections 7 packets to open and close
    exchanges = {"rest": 24, "batch": 4, "ws": 4 + 24}[mode]  # ws: the upgrade, then one frame each
    assert row["tcp_ip_bytes_per_reading"] * 24 >= 52 * (2 * exchanges + 7 * 4)
    assert row["bytes_with_tcp_ip_per_reading"] == pytest.approx(
        row["bytes_per_reading"] + row["tcp_ip_bytes_per_reading"])


def test_telemetry_counts_both_ways_and_says_which(lab):
    from labkit.lessons import bank as bank_lab

    frame = bank_lab.telemetry(lab, devices=3, readings=5)
    assert frame["mode"].tolist() == list(iot.MODES)
    ws = frame.set_index("mode").loc["ws"]
    assert ws["x_ws_http_ws_bytes"] == ws["x_ws_with_tcp_ip"] == 1
    sentence = bank_lab.ratio_sentence(frame)
    rest = frame.set_index("mode").loc["rest"]
    assert f"{rest['x_ws_http_ws_bytes']:.1f}×" in sentence and f"{rest['x_ws_with_tcp_ip']:.1f}×" in sentence


@pytest.mark.parametrize("mode", ["poll", "ws"])
def test_iot_commands_reach_every_device_once(lab, mode):
    frame = iot.command_latency(lab, mode, devices=3, commands=3, poll_s=0.1)
    assert len(frame) == 9
    assert sorted(frame.groupby("device")["command"].apply(sorted).tolist()) == [
        ["set-0", "set-1", "set-2"]] * 3


def test_iot_refuses_bad_input(lab):
    api = RestClient(lab)
    for body in ({"device": "bad id!", "value": 1}, {"device": "d", "value": "x"},
                 {"device": "d", "value": True}, {"device": "d"}):
        assert api.post("/api/iot/readings", json=body).status == 422, body
    assert api.post("/api/iot/readings/batch", json={"device": "d", "values": []}).status == 422
    assert api.post("/api/iot/devices/d/commands", json={"command": ""}).status == 422


def test_rest_over_websocket_gives_the_same_results_as_rest(lab):
    api = RestClient(lab)
    rpc = rest_ws.RestOverWs(lab)
    created = rpc.call("POST", "/api/notes", {"title": "one", "tags": ["a"]})
    assert created["status"] == 201
    nid = created["body"]["id"]
    assert api.get(f"/api/notes/{nid}").json() == created["body"]
    patched = rpc.call("PATCH", f"/api/notes/{nid}", {"votes": 3})
    assert patched["body"] == api.get(f"/api/notes/{nid}").json()
    put = rpc.call("PUT", f"/api/notes/{nid}", {"title": "two"})
    assert put["body"]["title"] == "two" and put["body"]["tags"] == []
    assert rpc.call("POST", "/api/notes", {"title": ""})["status"] == \
        api.post("/api/notes", json={"title": ""}).status == 422
    assert rpc.call("DELETE", f"/api/notes/{nid}")["status"] == 204
    assert rpc.call("GET", f"/api/notes/{nid}")["status"] == api.get(f"/api/notes/{nid}").status == 404
    assert rpc.send_raw("{not json")["status"] == 400
    assert rpc.call("GET", "/api/elsewhere")["status"] == 404
    assert rpc.call("GET", "/api/notes")["status"] == 200  # the socket survived every error
    rpc.close()


def test_reads_over_websocket_always_carry_the_body(lab):
    reads = rest_ws.compare_reads(lab, note_bytes=500, reads=5).set_index("way")
    assert reads.loc["REST with cache (304)", "answers_with_body"] == 1
    assert reads.loc["REST without cache", "answers_with_body"] == 5
    assert reads.loc["REST over WebSocket", "answers_with_body"] == 5


def test_a_tls_lab_settles_payments_over_https(make_lab):
    lab = make_lab(tls=True)
    acc = _account(lab)
    frame = bank.pay_and_watch(lab, acc, count=2)
    assert frame["status"].tolist() == ["succeeded", "succeeded"]
