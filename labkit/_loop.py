"""A private event loop on a daemon thread where the sync clients run their async work.

Notebook cells already run inside the kernel's event loop, so `asyncio.run()` is not allowed there.
Sync client calls hand their coroutine to this loop and wait for the answer instead.

Clients register what they hold open (an aiohttp session, a WebSocket) with `close_when_collected`:
it is closed on this loop when the client is garbage-collected (a cell run again) or, for clients
still alive then, at interpreter exit before the loop stops. So nothing is left "unclosed".
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()
_closers: set[weakref.finalize] = set()
_closing: set[concurrent.futures.Future] = set()

DEFAULT_TIMEOUT = 30.0
EXIT_CLOSE_TIMEOUT = 2.0
"""Seconds the interpreter waits at exit for the clients' closing handshakes."""


def client_loop() -> asyncio.AbstractEventLoop:
    """The clients' loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="labkit-clients",
                                       daemon=True)
            _thread.start()
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


def _close_soon(aclose: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Start `aclose()` on the clients' loop without waiting (finalizers run on any thread)."""
    loop = _loop
    if loop is None or not loop.is_running():
        return
    future = asyncio.run_coroutine_threadsafe(aclose(), loop)
    with _lock:  # the done callback runs on the loop's thread
        _closing.add(future)
    future.add_done_callback(_forget)


def _forget(future: concurrent.futures.Future) -> None:
    with _lock:
        _closing.discard(future)


def close_when_collected(owner, aclose: Callable[[], Coroutine[Any, Any, Any]]) -> weakref.finalize:
    """Run the coroutine function `aclose` on the clients' loop once `owner` is garbage-collected,
    or at interpreter exit if `owner` is still alive. `aclose` must not refer to `owner` (or it
    would keep it alive) and must be harmless when the resource is already closed."""
    finalizer = weakref.finalize(owner, _close_soon, aclose)
    finalizer.atexit = False  # _shutdown runs it while the loop still runs, then waits for it
    with _lock:
        _closers.difference_update([f for f in _closers if not f.alive])
        _closers.add(finalizer)
    return finalizer


def _shutdown() -> None:
    """At exit: close what live clients still hold open, then stop and close the loop."""
    if _loop is None or not _loop.is_running():
        return
    with _lock:
        closers = list(_closers)
    for finalizer in closers:
        # weakref's own exit hook may already have run (it disables finalizer() calls): detach()
        # still hands back the callback for every client that is alive.
        detached = finalizer.detach()
        if detached is not None:
            _, func, args, kwargs = detached
            func(*args, **kwargs)
    with _lock:
        closing = list(_closing)
    concurrent.futures.wait(closing, timeout=EXIT_CLOSE_TIMEOUT)
    _loop.call_soon_threadsafe(_loop.stop)
    if _thread is not None:
        _thread.join(EXIT_CLOSE_TIMEOUT)
    if not _loop.is_running():
        _loop.close()


atexit.register(_shutdown)
