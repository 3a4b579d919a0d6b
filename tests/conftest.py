"""Shared fixtures: a real lab server on 127.0.0.1, port 0, for each test that asks for one; the
run's fresh venv and its one run of each lesson (see notebook_runner.py)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("LABKIT_QUICK", "1")
# What the kit keeps in a user's config folder (an instructor's token, a student's personal class
# tokens) goes to a folder of this run, never to the home of whoever runs the tests; kernels and
# servers the tests start inherit it.
# Removed when this process ends (each xdist worker has its own).
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="labkit-test-config-")
atexit.register(shutil.rmtree, os.environ["XDG_CONFIG_HOME"], ignore_errors=True)


def _shared_tmp(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this run sees (the run's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "shared"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def lesson_kernel(tmp_path_factory):
    """The kernel the lessons run in: the fresh venv's (only `pip install .`), built once per run
    whatever the number of workers; this venv's python3 under LABKIT_SKIP_FRESH_VENV=1."""
    import notebook_runner

    if notebook_runner.SKIP_FRESH_VENV:
        return notebook_runner.this_venvs_kernel()
    return notebook_runner.shared_fresh_venv(_shared_tmp(tmp_path_factory))


@pytest.fixture(scope="session")
def lesson_run(tmp_path_factory, lesson_kernel):
    """lesson_run(path) -> the lesson's one LessonRun of this test run (made on first use)."""
    import notebook_runner

    shared = _shared_tmp(tmp_path_factory)
    return lambda path: notebook_runner.shared_lesson_run(Path(path), shared, lesson_kernel)


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


# -- pytest-xdist: what runs on one worker, one test at a time ----------------------------------------
# `make test` runs `-n 4 --dist loadgroup`. Tests that are timing-sensitive (the emulator's delays,
# browsers) or heavy (hundreds of connections, clusters of processes, two kernels at once) share the
# xdist group "serial": they run one after another on one worker, never two of them side by side.
# They do run beside the three other workers' tests (four workers on two cores: the suite mostly
# waits), so none of them may depend on the machine being idle: they assert counts, order and
# content, and any deadline they wait on is many times what the step takes.
SERIAL_MODULES = {
    "test_netem", "test_netem_link", "test_netem_toxics",  # the emulator's delays and stalls
    "test_cluster", "test_cluster_backplane",  # worker processes and redis-server
    "test_hardening_limits",  # hundreds of connections, descriptor caps, memory
    "test_classroom_kernels", "test_classroom_load",  # two kernels; a class of clients
    "test_reliability_delivery",  # a stalled subscriber under a 600-event flood
    "test_tls", "test_check_lesson03",  # round trips compared through the emulator
}
SERIAL_TESTS = {
    "test_1000_websockets_and_50_pollers_all_get_every_event_in_order",
    "test_a_serial_test_is_grouped_by_pytest_xdist",  # test_suite_groups.py: the groups still work
}


# The order the other workers take the rest in: `--dist loadgroup` hands the group "serial" (the
# largest unit) to one worker and then the other tests one by one in collection order, so the longest
# ones go first and the run ends on short tests on every worker (instead of one worker finishing a
# lesson run alone). The interrupt tests lead: they use this venv's kernel, so those workers do not
# wait while the first lesson run builds the fresh venv the lessons run in.
HEAVY_FIRST = (
    "test_interrupts_00_01_04", "test_interrupts_02_03", "test_interrupts_05_07", "test_interrupts_08_09",
    "test_notebooks", "test_lessons_on_class_server", "test_http_versions",
)


def _module(item) -> str:
    return getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups set here
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = _module(item)
        serial = (module in SERIAL_MODULES or getattr(item, "originalname", item.name) in SERIAL_TESTS
                  or item.get_closest_marker("browser") is not None)
        if serial and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("serial"))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts its collection the same way
        rank = {name: n for n, name in enumerate(HEAVY_FIRST)}
        items.sort(key=lambda item: (item.get_closest_marker("xdist_group") is not None
                                     or _module(item) not in rank, rank.get(_module(item), 0)))
