"""Local TLS for the lab: a certificate authority made on the spot and a certificate for 127.0.0.1.

`lk.start(tls=True)` serves https:// and wss:// with `server_ssl_context()`; clients trust the same
authority through `client_ssl_context()`. Nothing is written to the system trust store: the
authority lives in this process only (and in `ca_pem_path()` for tools that want a file, e.g.
`curl --cacert`). Made with trustme, which exists for exactly this (tests and labs).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import ssl
import tempfile
from pathlib import Path

HOSTS = ("127.0.0.1", "localhost", "::1")
"""Names the lab certificate is valid for."""


@functools.cache
def authority():
    """The process's certificate authority (a trustme.CA), made on first use."""
    import trustme

    return trustme.CA(organization_name="labkit local CA")


@functools.cache
def _server_cert():
    return authority().issue_cert(*HOSTS)


def server_ssl_context() -> ssl.SSLContext:
    """An SSLContext for the lab server: the certificate for 127.0.0.1/localhost and its key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _server_cert().configure_cert(context)
    return context


def client_ssl_context() -> ssl.SSLContext:
    """An SSLContext for clients (aiohttp `ssl=`, websockets `ssl=`) that trusts the lab's CA.

    Certificate and host name are checked as for any public site; only the trusted root differs.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    authority().configure_trust(context)
    for pem in _trusted_pems:
        context.load_verify_locations(cadata=pem)
    return context


_trusted_pems: list[str] = []
"""CA certificates (PEM text) `trust_file` added, trusted by every `client_ssl_context()`."""


def trust_file(path) -> None:
    """Also trust the CA certificate in `path` (PEM): the CA of a class server on another machine,
    handed out by the instructor (`labkit serve --classroom --tls`). Its contents are kept, not its
    path: a file deleted or moved later (a download folder cleaned up) does not break every TLS
    client made after it."""
    pem = Path(path).read_text(encoding="ascii")
    ssl.create_default_context(cadata=pem)  # fails here, clearly, if the file is not a CA PEM
    if pem not in _trusted_pems:
        _trusted_pems.append(pem)


@functools.cache
def ca_pem_path() -> Path:
    """The CA certificate as a PEM file (for curl --cacert, requests verify=...)."""
    folder = Path(tempfile.mkdtemp(prefix="labkit-ca-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # one per process, gone at its exit
    path = folder / "labkit-ca.pem"
    authority().cert_pem.write_to_path(str(path))
    return path


__all__ = ["HOSTS", "authority", "ca_pem_path", "client_ssl_context", "server_ssl_context", "trust_file"]
