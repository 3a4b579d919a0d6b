"""Wait for a condition, not for a fixed time: tests poll what they need to see, with a bound that only
a real failure reaches (tests never assert how long something took)."""

from __future__ import annotations

import asyncio
import time


def _failure(predicate, timeout: float, what: str, value) -> str:
    name = what or getattr(predicate, "__name__", repr(predicate))
    return f"not reached within {timeout} s: {name} (last: {value!r})"


def wait_until(predicate, timeout: float = 10.0, *, what: str = "", interval: float = 0.02):
    """Poll `predicate()` until it returns something truthy, and return that. After `timeout`
    seconds fail the test, naming `what` (or the predicate) and what it last returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_failure(predicate, timeout, what, value))
        time.sleep(interval)


async def async_wait_until(predicate, timeout: float = 10.0, *, what: str = "", interval: float = 0.01):
    """wait_until for a coroutine: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_failure(predicate, timeout, what, value))
        await asyncio.sleep(interval)
