"""lk.start(tls=True): https and wss with a local CA that labkit's clients trust; TLS costs round
trips on a new connection through the emulator."""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from websockets.asyncio.client import connect

from labkit import _loop
from labkit.lessons.latency import compare_transports
from labkit.net import tls
from labkit.net.netem import Profile


@pytest.fixture
def tls_lab(make_lab):
    return make_lab(tls=True)


def test_https_and_wss_work_with_the_local_ca(tls_lab):
    assert tls_lab.url.startswith("https://") and tls_lab.ws_url.startswith("wss://")

    async def talk():
        async with (aiohttp.ClientSession() as session,
                    session.get(tls_lab.url + "/healthz", ssl=tls.client_ssl_context()) as r):
            health = (r.status, await r.json())
        async with connect(tls_lab.ws_url + "/ws/echo", ssl=tls.client_ssl_context()) as ws:
            await ws.send(b"\x00secret")
            echoed = await ws.recv()
        return health, echoed

    health, echoed = _loop.run(talk())
    assert health == (200, {"status": "ok"})
    assert echoed == b"\x00secret"


def test_a_client_without_the_ca_is_refused(tls_lab):
    async def untrusting():
        async with aiohttp.ClientSession() as session, session.get(tls_lab.url + "/healthz") as r:
            return r.status

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        _loop.run(untrusting())


def test_ca_file_and_certificate_names():
    pem = tls.ca_pem_path().read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "127.0.0.1" in tls.HOSTS and "localhost" in tls.HOSTS
    assert tls.client_ssl_context().verify_mode == ssl.CERT_REQUIRED


def test_tls_adds_a_round_trip_to_a_new_connection(tls_lab, lab):
    """TCP handshake + TLS 1.3 handshake + the request: three round trips, where plain HTTP takes
    two. Checked by order through the same 40 ms profile (a new TLS connection answers after a new
    plain one) and by what was measured of each phase, not against a wall-clock bound."""
    profile = Profile.symmetric("tls", 40.0)
    frame = compare_transports(tls_lab, profile=profile, count=5, warmup=1,
                               transports=["rest-new", "rest-keepalive"])
    plain = compare_transports(lab, profile=profile, count=5, warmup=1, transports=["rest-new"])
    assert frame["tls"].all() and not plain["tls"].any()
    new = frame[frame.transport == "rest-new"]
    assert new["rtt_ms"].median() > plain["rtt_ms"].median()
    assert (new["tls_ms"] > 0).all()
    assert (frame[frame.transport == "rest-keepalive"]["tls_ms"] == 0).all()
    # TLS records add bytes to every exchange
    assert new["bytes_down"].median() > 1000  # the certificate chain crosses the wire


def test_kit_clients_trust_a_tls_lab_by_default(make_lab):
    from labkit.clients.rest import RestClient
    from labkit.clients.ws import WsClient

    lab = make_lab(tls=True)
    assert lab.url.startswith("https://") and lab.ws_url.startswith("wss://")
    with RestClient(lab) as api, WsClient(lab, "/ws/echo") as ws:
        assert api.get("/healthz").json() == {"status": "ok"}
        assert ws.echo("over tls")[0] == "over tls"


def test_a_trusted_ca_file_deleted_later_breaks_no_client(tmp_path, monkeypatch):
    """`lk.join(url, ca=path)` trusts a class server's CA; the file may go away afterwards (the
    class server's own copy is removed when it stops). Every later TLS client, including a lab's
    own (its bank trusts the lab's CA), must still be made, trusting that CA."""
    import ssl

    import trustme

    from labkit.net import tls

    monkeypatch.setattr(tls, "_trusted_pems", [])
    other = trustme.CA(organization_name="another class server")
    path = tmp_path / "class-ca.pem"
    other.cert_pem.write_to_path(str(path))
    tls.trust_file(path)
    tls.trust_file(path)  # twice: kept once
    path.unlink()
    context = tls.client_ssl_context()
    issuers = [dict(x[0] for x in cert["subject"]).get("organizationName")
               for cert in context.get_ca_certs()]
    assert issuers.count("another class server") == 1 and "labkit local CA" in issuers
    (tmp_path / "not-a-ca.pem").write_text("hello")
    with pytest.raises(ssl.SSLError):
        tls.trust_file(tmp_path / "not-a-ca.pem")
    assert len(tls._trusted_pems) == 1


def test_a_tls_lab_at_its_cap_answers_503_over_tls(make_lab, caplog):
    """A connection over the cap gets the same 503 problem+json over TLS as over plain TCP. TLS
    has no half-close, so the refusal is flushed and then closed (the refusal once called
    write_eof on the TLS transport: asyncio logged NotImplementedError and the client got no
    answer)."""
    import socket

    lab = make_lab(tls=True, max_connections=2, per_peer_share=1.0)
    context = tls.client_ssl_context()

    def connection() -> ssl.SSLSocket:
        return context.wrap_socket(socket.create_connection(("127.0.0.1", lab.port), timeout=10),
                                   server_hostname="127.0.0.1")

    held = [connection() for _ in range(2)]
    try:
        with connection() as extra:
            answer = b""
            while chunk := extra.recv(4096):
                answer += chunk
    finally:
        for sock in held:
            sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"application/problem+json" in head
    assert b"maximum of 2 connections" in body
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
