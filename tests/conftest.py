"""Shared fixtures: a real lab server on 127.0.0.1, port 0, for each test that asks for one."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LABKIT_QUICK", "1")


@pytest.fixture
def lab(tmp_path):
    """A fresh lab server on its own thread (as in a kernel), stopped after the test."""
    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer

    server = LabServer(LabConfig(db=str(tmp_path / "lab.db"))).start()
    yield server
    server.stop()


@pytest.fixture
def make_lab(tmp_path):
    """Factory for lab servers with options: make_lab(max_ws_message=1024). All stopped after."""
    from labkit.server.config import LabConfig
    from labkit.server.runner import LabServer

    servers = []

    def _make(**options):
        options.setdefault("db", str(tmp_path / f"lab{len(servers)}.db"))
        if "allowed_origins" in options:
            options["allowed_origins"] = tuple(options["allowed_origins"])
        server = LabServer(LabConfig(**options)).start()
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.stop()
