"""The simulated payment provider takes charges only from its lab's bank (a per-lab token derived
from the lab's provider secret) and answers only requests addressed to a loopback name (the lab's
Host check), so nobody else on loopback can make it sign a webhook. Real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from labkit.routes.bank import BANK_STATE
from labkit.routes.bank_provider import charge_token

VICTIM, ATTACKER, INSTRUCTOR = "victim-token", "attacker-token", "instructor-token"


@pytest.fixture
def classroom(make_lab):
    return make_lab(student_tokens=(VICTIM, ATTACKER), instructor_token=INSTRUCTOR)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _provider(lab, token=ATTACKER) -> str:
    return requests.get(lab.url + "/api/bank", headers=_bearer(token), timeout=10).json()["provider_url"]


def _charge(lab, payment_id: int, headers: dict | None = None) -> requests.Response:
    return requests.post(_provider(lab) + "/charges", headers=headers or {}, timeout=10, json={
        "payment_id": payment_id, "amount": 1, "payee": "decline",
        "webhook_url": lab.url + "/api/webhooks/provider"})


def _raw(port: int, request: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), (json.loads(body) if body.strip() else {})


def test_a_forged_charge_is_refused_and_the_victims_payment_settles(classroom):
    account = requests.post(classroom.url + "/api/accounts", json={"owner": "V", "opening_balance": 1000},
                            headers=_bearer(VICTIM), timeout=10).json()["id"]
    # payment ids are sequential: the attacker forges a "decline" charge for the next one first
    forged = [_charge(classroom, 1), _charge(classroom, 1, _bearer(ATTACKER)),
              _charge(classroom, 1, _bearer(INSTRUCTOR)), _charge(classroom, 1, {"Authorization": "Bearer "})]
    assert [f.status_code for f in forged] == [401] * 4
    assert forged[0].headers["Content-Type"].startswith("application/problem+json")
    assert forged[0].headers["WWW-Authenticate"].startswith("Bearer")
    pay = requests.post(classroom.url + "/api/payments", headers=_bearer(VICTIM), timeout=10,
                        json={"account": account, "payee": "Shop", "amount": 100}).json()
    assert pay["id"] == 1
    deadline = time.monotonic() + 15
    while (status := requests.get(f"{classroom.url}/api/payments/1", headers=_bearer(VICTIM),
                                  timeout=10).json()["status"]) == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status == "succeeded"
    assert requests.get(classroom.url + "/api/bank", headers=_bearer(INSTRUCTOR),
                        timeout=10).json()["webhooks"]["applied"] == 1


def test_the_charge_token_is_the_labs_own(make_lab):
    one, two = make_lab(), make_lab()
    secret_one = one.app[BANK_STATE]["secret"]
    assert _charge(two, 1, _bearer(charge_token(secret_one))).status_code == 401
    assert _charge(one, 999, _bearer(charge_token(secret_one))).status_code == 202  # the bank's own
    assert charge_token(secret_one) != charge_token(two.app[BANK_STATE]["secret"])


@pytest.mark.parametrize("path, method", [("/charges", "POST"), ("/config", "POST"), ("/deliveries", "GET")])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", ""])
def test_the_provider_checks_the_host_header_like_the_lab(lab, path, method, host):
    port = int(_provider(lab).rsplit(":", 1)[1])
    token = charge_token(lab.app[BANK_STATE]["secret"])
    status, body = _raw(port, (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                               f"Authorization: Bearer {token}\r\n"
                               "Content-Type: application/json\r\nContent-Length: 2\r\n"
                               "Connection: close\r\n\r\n{}").encode())
    assert status in (400, 403), (host, status)
    if host:
        assert status == 403 and "Host" in body["detail"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_the_provider_answers_loopback_hosts(lab, host):
    port = int(_provider(lab).rsplit(":", 1)[1])
    status, _ = _raw(port, f"GET /deliveries HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Connection: close\r\n\r\n".encode())
    assert status == 200
