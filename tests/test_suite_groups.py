"""The suite's own scheduling: `make test` runs four pytest-xdist workers with `--dist loadgroup`,
and the timing-sensitive tests (conftest.py's SERIAL_MODULES and SERIAL_TESTS) must run one at a
time on one worker. xdist marks a grouped test by appending "@<group>" to its node id; a pytest and
xdist pair that drops the group (pytest-dev/pytest-xdist#1386), or a conftest hook that adds the
marks after xdist read them, would silently run them side by side. This test is in the serial group
itself, so it fails then instead."""

from __future__ import annotations

import pytest


def test_a_serial_test_is_grouped_by_pytest_xdist(request):
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers
        pytest.skip("only meaningful under pytest-xdist with --dist loadgroup (as make test runs)")
    assert request.node.get_closest_marker("xdist_group").args == ("serial",)
    assert request.node.nodeid.endswith("@serial"), request.node.nodeid
