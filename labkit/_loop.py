"""A private event loop on a daemon thread where the sync clients run their async work.

Notebook cells already run inside the kernel's event loop, so `asyncio.run()` is not allowed there.
Sync client calls hand their coroutine to this loop and wait for the answer instead.
"""

from __future__ import annotations

import asyncio
import atexit
import threading

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()

DEFAULT_TIMEOUT = 30.0


def client_loop() -> asyncio.AbstractEventLoop:
    """The clients' loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="labkit-clients", daemon=True).start()
        return _loop


def run(coro, timeout: float | None = DEFAULT_TIMEOUT):
    """Run `coro` on the clients' loop and return its result; raise TimeoutError after `timeout` s."""
    loop = client_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("labkit sync call made from the clients' own loop; await the coroutine")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise TimeoutError(f"no answer within {timeout} s") from None


def _shutdown() -> None:
    if _loop is not None and _loop.is_running():
        _loop.call_soon_threadsafe(_loop.stop)


atexit.register(_shutdown)
