"""LabServer: the lab app on its own daemon thread and event loop, so cells can block freely.

A server on the kernel's own loop would deadlock any synchronous request made from a cell (the
cell holds the loop while it waits for an answer that the loop should produce). Here the server
has a private loop on a private thread; the kernel's loop stays free for top-level `await`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from .app import make_app
from .config import LabConfig
from .guard import STOP_TIMEOUT_S, Served, serve_app
from .jupyter_proxy import JUPYTER_ORIGINS

STOP_TIMEOUT = STOP_TIMEOUT_S
"""Seconds the server gives running handlers to finish once stopping has begun."""

OWNER_FILE = "owner.pid"
"""Written into each temporary data folder: the id of the process that uses it."""


WORKDIR_PREFIX = "labkit-data-"
"""Names of the lab's temporary data folders start with this, and only theirs: the cleaner looks at
these alone, not at every other labkit folder in the temporary directory."""


def make_workdir(prefix: str = WORKDIR_PREFIX) -> Path:
    """A new temporary data folder marked with this process's id (see `clean_stale_workdirs`)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / OWNER_FILE).write_text(str(os.getpid()))
    return workdir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def clean_stale_workdirs(prefix: str = WORKDIR_PREFIX) -> list[Path]:
    """Remove temporary data folders whose owner process is gone (a killed `labkit serve` or
    kernel leaves its folder behind). Folders without an owner file are left alone. Returns the
    folders removed. Not on Windows, where signal 0 would end the process instead of asking."""
    if os.name == "nt":
        return []
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            pid = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class LabStartError(RuntimeError):
    """The lab server could not start; the message says what to do."""


class LabServer:
    """One running lab server. Use `url`, `ws_url`, `stop()`, or `with LabServer(...) as lab:`."""

    def __init__(self, config: LabConfig | None = None):
        self.config = config or LabConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._served: Served | None = None
        self._workdir: Path | None = None
        self.port: int | None = None
        self.app: web.Application | None = None
        self._lifecycle = threading.RLock()  # start/stop/restart from several threads at once
        self._page_origins: set[str] = set()  # Jupyter origins learnt from widgets, kept across restarts

    # -- addresses -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.config.host

    def _base(self, scheme: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}{'s' if self.config.tls else ''}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the REST side, e.g. http://127.0.0.1:41234."""
        return self._base("http")

    @property
    def ws_url(self) -> str:
        """Base URL of the WebSocket side, e.g. ws://127.0.0.1:41234."""
        return self._base("ws")

    @property
    def browser_url(self) -> str:
        """The lab as the student's browser reaches it: `<Jupyter base URL>proxy/<port>/`.

        Through jupyter-server-proxy, behind Jupyter's own login, so it works on Binder and on a
        JupyterHub too. Outside Jupyter (no Jupyter server found) it is the direct URL.
        """
        from .jupyter_proxy import jupyter_base_url

        base = jupyter_base_url()
        return f"{base}proxy/{self.port}/" if base else self.url + "/"

    def trust_page_origin(self, origin: str) -> bool:
        """Accept WebSockets (and Host) from pages of the student's own Jupyter at `origin`.

        Called by labkit's browser widgets with the page's `location.origin`, which reaches the
        kernel over Jupyter's authenticated comm channel. Returns False for a malformed origin.
        """
        from .jupyter_proxy import normal_origin

        normal = normal_origin(origin)
        if normal is None:
            return False
        self._page_origins.add(normal)
        if self.app is not None and self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self.app[JUPYTER_ORIGINS].add, normal)
        return True

    @property
    def db_path(self) -> Path:
        """The SQLite file behind the REST resources (a temporary one unless you chose `db=`)."""
        if self.config.db:
            return Path(self.config.db).resolve()
        if self._workdir is None:
            clean_stale_workdirs()
            self._workdir = make_workdir()
        return self._workdir / "lab.db"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> LabServer:
        """Bind and serve; returns once the port answers. Errors are raised here, in the caller."""
        with self._lifecycle:
            if self.running:
                return self
            self._start(timeout)
        return self

    def _start(self, timeout: float) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="labkit-server", daemon=True
        )
        self._thread.start()
        _alive.add(self)
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            future.result(timeout)
        except OSError as exc:  # includes TimeoutError: the server did not start in time
            timed_out = not future.done()
            future.cancel()
            self._halt_loop()
            if timed_out:
                raise LabStartError(f"The lab server did not start within {timeout} s.") from None
            raise LabStartError(self._bind_advice(exc)) from None
        except BaseException:
            future.cancel()
            self._halt_loop()
            raise

    def _bind_advice(self, exc: OSError) -> str:
        where = f"{self.config.host}:{self.config.port}"
        if exc.errno == errno.EADDRINUSE:
            return (
                f"Port {self.config.port} on {self.config.host} is already in use. Stop the other "
                "program (or the other lab: lk.stop()), or call lk.start() without port= to let "
                "the system pick a free port."
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"Cannot bind {where}: this machine has no such address. Use 127.0.0.1."
        if exc.errno == errno.EACCES:
            return f"Not allowed to bind {where}: ports below 1024 need privileges; pick a higher port."
        if exc.filename is not None:  # not the socket: a file the start needed (data, certificate)
            return f"The lab server could not start: {exc.strerror or exc}: {exc.filename!r}"
        return f"Cannot bind {where}: {exc.strerror or exc}"

    async def _serve(self) -> None:
        effective = replace(self.config, db=str(self.db_path))
        self.app = make_app(effective)
        self.app[JUPYTER_ORIGINS].update(self._page_origins)
        ssl_context = None
        if self.config.tls:
            from labkit.net.tls import server_ssl_context

            ssl_context = server_ssl_context()
        self._served = await serve_app(self.app, self.config.host, self.config.port, config=self.config,
                                       ssl_context=ssl_context)
        self.port = self._served.port

    def stop(self, *, keep_data: bool = False) -> None:
        """Close every WebSocket with 1001, free the port, end the thread. Safe to call twice."""
        with self._lifecycle:
            if self._loop is None:
                return
            self._refuse_own_thread("stop()")
            if self._served is not None and self._loop.is_running():
                future = asyncio.run_coroutine_threadsafe(self._served.close(), self._loop)
                with contextlib.suppress(Exception):  # stopping must always finish
                    future.result(5)
            self._halt_loop()
            self._served = None
            if self._workdir is not None and not keep_data:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def restart(self) -> LabServer:
        """Stop and start again on the same port with the same data (a server restart, live)."""
        with self._lifecycle:
            port = self.port
            if port is None:  # set when it first started (stop() keeps it)
                raise RuntimeError("restart() needs a lab server that was started: call start()")
            self.stop(keep_data=True)
            self.config = replace(self.config, port=port)
            return self.start()

    def _refuse_own_thread(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{what} called from the lab server's own thread would wait for itself")

    def _halt_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):  # a handler stuck in a worker thread: stop anyway
                asyncio.run_coroutine_threadsafe(_drain(loop), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if not loop.is_running():  # else the daemon thread is stuck; leave its loop to it
            loop.close()
        self._loop = self._thread = None

    def call(self, coro, timeout: float = 10.0):
        """Run a coroutine on the server's loop and return its result (for tests and lessons)."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the lab server is not running: call lk.start() first")
        self._refuse_own_thread("call()")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def status(self) -> dict:
        """What is running where: url, ws_url, db, open WebSockets."""
        from .keys import WEBSOCKETS

        async def count_open(app: web.Application) -> int:  # on the server loop, which changes the set
            return len([w for w in app[WEBSOCKETS] if not w.closed])

        app = self.app
        open_ws = self.call(count_open(app), 5) if self.running and app else 0
        return {
            "running": self.running,
            "url": self.url if self.running else None,
            "ws_url": self.ws_url if self.running else None,
            "db": str(self.db_path),
            "open_websockets": open_ws,
        }

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"<LabServer {state}>"


async def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending on the server loop and end its executor threads."""
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks(loop) if t is not me]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await loop.shutdown_default_executor()


_current: LabServer | None = None
_lock = threading.Lock()
_alive: weakref.WeakSet[LabServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At interpreter exit, stop every lab still running (closes sockets, removes temp data)."""
    for server in list(_alive):
        server.stop()


def start(*, fresh: bool = False, **options) -> LabServer:
    """Start the kernel's lab server, or return the running one if the options are the same.

    Different options stop the running server and start a new one. Its data (the notes, the
    idempotency keys: the SQLite file) is kept: a new lab without `db=` goes on with the previous
    lab's temporary database, and one with its own `db=` leaves the previous file where it is.
    One printed line says which. `fresh=True` deletes the previous temporary data instead.
    """
    global _current
    for name in ("allowed_origins", "allowed_hosts"):
        if name in options:
            options[name] = tuple(options[name])
    config = LabConfig(**options)
    with _lock:
        previous = _current
        if previous is not None and previous.running:
            running_port = previous.port
            if running_port is None:  # a running lab has bound its port
                raise RuntimeError("the running lab server has no port")
            wanted = replace(config, port=running_port) if config.port == 0 else config
            same_port = replace(previous.config, port=running_port)
            if not fresh and (wanted == same_port or config == previous.config):
                return previous
        server = LabServer(config)
        if previous is not None and previous._workdir is not None:  # a temporary database
            old_db = previous.db_path
            if fresh:
                print(f"labkit: fresh=True: the previous lab's data ({old_db}) is deleted.")
            elif not config.db:
                server._workdir, previous._workdir = previous._workdir, None  # handed over
                print(f"labkit: the new lab keeps the previous lab's data ({old_db}); "
                      "lk.start(..., fresh=True) starts empty.")
            else:
                previous.stop(keep_data=True)
                previous._workdir = None
                print(f"labkit: the new lab uses {server.db_path}; the previous lab's data stays "
                      f"in {old_db}.")
        if previous is not None:
            previous.stop()
        _current = server.start()
        return _current


def stop() -> None:
    """Stop the kernel's lab server if one is running."""
    global _current
    with _lock:
        if _current is not None:
            _current.stop()
            _current = None


def current() -> LabServer | None:
    """The running lab server of this kernel, if any."""
    return _current if _current is not None and _current.running else None
