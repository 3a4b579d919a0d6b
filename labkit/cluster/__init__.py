"""A lab of several worker processes behind one front door: `lk.start_cluster(workers=3)`.

    cluster = lk.start_cluster(workers=3, backplane="redis")   # or None, or "redis://host:port"
    lk.rest(cluster).get("/api/cluster")                       # same clients as for lk.start()
    cluster.kill(2)                                            # SIGKILL worker 2
    cluster.stop()

Each worker is `python -m labkit.cluster.worker`: the same app as `lk.start()`, on its own
loopback port, sharing one SQLite file (REST state) and, with a backplane, one Redis (events).
The front door (`FrontDoor`, an L4 balancer on labkit's TcpProxy) is the one URL clients use.
Everything stops on `stop()`, at interpreter exit, and when the kernel dies: workers and the
redis-server guard watch a pipe from this process and end when it closes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from labkit.server.listen import Limits

from .frontdoor import MODES, Backend, FrontDoor
from .redis_server import INSTALL_HELP, RedisMissing, RedisServer, available

START_TIMEOUT_S = 20.0

__all__ = ["INSTALL_HELP", "MODES", "Cluster", "RedisMissing", "Worker", "available",
           "start_cluster", "stop_clusters"]


@dataclass
class Worker:
    """One worker process: its number, process and port."""

    id: int
    process: subprocess.Popen
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def url(self) -> str:
        """The worker's own URL (bypassing the front door)."""
        return f"http://127.0.0.1:{self.port}"


class Cluster:
    """N lab workers behind one front door. `url` / `ws_url` work with every labkit client."""

    def __init__(self, workers: int = 2, backplane: str | None = None,
                 balance: str = "connection", *, host: str = "127.0.0.1", port: int = 0,
                 db: str | None = None, limits: dict | None = None):
        if not 1 <= int(workers) <= 32:
            raise ValueError("workers must be between 1 and 32")
        if balance not in MODES:
            raise ValueError(f"balance must be one of {MODES}, not {balance!r}")
        if backplane not in (None, "redis") and not str(backplane).startswith(("redis://", "unix://")):
            raise ValueError('backplane must be None, "redis", a redis://host:port URL or a '
                             'unix:///path/to/redis.sock URL')
        self.size, self.backplane, self.balance = int(workers), backplane, balance
        self.limits = dict(limits or {})
        """Connection limits (`labkit.server.config.LIMIT_FIELDS`) for the workers and, for
        max_connections and per_peer_share, the front door."""
        self.host, self._port, self._db = host, port, db
        self.workers: list[Worker] = []
        self.redis: RedisServer | None = None
        self.redis_url: str | None = None
        self.front: FrontDoor | None = None
        self.folder: Path | None = None
        self._lock = threading.RLock()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        return self.front.port if self.front else None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return Path(self._db) if self._db else self._started_folder() / "lab.db"

    def _started_folder(self) -> Path:
        """The temporary folder of a started cluster (worker logs, cluster.json, the default db)."""
        if self.folder is None:
            raise RuntimeError("the cluster has no folder before start()")
        return self.folder

    @property
    def running(self) -> bool:
        return self.front is not None

    def worker(self, worker_id: int) -> Worker:
        return next(w for w in self.workers if w.id == worker_id)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Cluster:
        with self._lock:
            if self.running:
                return self
            try:
                self._start()
            except BaseException:
                self.stop()
                raise
            _alive.add(self)
            return self

    def _start(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="labkit-cluster-"))
        if self.backplane == "redis":
            self.redis = RedisServer().start()
            self.redis_url = self.redis.local_url  # its Unix socket where there is one
        elif self.backplane:
            self.redis_url = self.backplane
        cluster_file = self.folder / "cluster.json"
        for n in range(1, self.size + 1):
            self.workers.append(self._spawn(n, cluster_file))
        for worker in self.workers:
            worker.port = self._read_port(worker)
        cluster_file.write_text(json.dumps({"workers": [
            {"id": w.id, "pid": w.pid, "port": w.port} for w in self.workers]}))
        front_limits = Limits(**{k: v for k, v in self.limits.items()
                                 if k in ("max_connections", "per_peer_share")})
        self.front = FrontDoor([Backend(w.id, w.port, self._alive_check(w)) for w in self.workers],
                               self.balance, host=self.host, port=self._port,
                               limits=front_limits).start()

    @staticmethod
    def _alive_check(worker: Worker):
        return lambda: worker.alive

    def _spawn(self, n: int, cluster_file: Path) -> Worker:
        cmd = [sys.executable, "-m", "labkit.cluster.worker", "--id", str(n),
               "--db", str(self.db_path), "--host", "127.0.0.1",
               "--cluster-file", str(cluster_file), "--balance", self.balance]
        if self.redis_url:
            cmd += ["--backplane", self.redis_url]
        for name, value in self.limits.items():
            cmd += ["--limit", f"{name}={value}"]
        log = open(self._started_folder() / f"worker-{n}.log", "wb")  # noqa: SIM115 - the child keeps it
        try:
            process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        return Worker(n, process)

    def _read_port(self, worker: Worker) -> int:
        stdout = worker.process.stdout
        if stdout is None:  # _spawn starts every worker with stdout=PIPE
            raise RuntimeError(f"worker {worker.id} has no stdout pipe")
        ready, _, _ = select.select([stdout], [], [], START_TIMEOUT_S)
        line = stdout.readline().decode().strip() if ready else ""
        if not line.isdigit():
            log = (self._started_folder() / f"worker-{worker.id}.log").read_text()[-1500:]
            raise RuntimeError(f"worker {worker.id} did not start:\n{log}")
        return int(line)

    def kill(self, worker_id: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL: no goodbye, sockets cut) to worker `worker_id` and wait for it."""
        worker = self.worker(worker_id)
        if worker.alive:
            os.kill(worker.pid, sig)
            worker.process.wait(10)

    def stop(self) -> None:
        """Stop the front door, every worker and the redis-server started here; safe twice."""
        with self._lock:
            if self.front is not None:
                self.front.stop()
                self.front = None
            for worker in self.workers:
                _end(worker.process)
            self.workers = []
            if self.redis is not None:
                self.redis.stop()
                self.redis = None
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None
            _alive.discard(self)

    def processes(self) -> list[dict]:
        """What this process knows of its workers: id, pid, port, alive, and front-door
        connections (open now, given so far)."""
        counts = self.front.counts() if self.front else {}
        return [{"id": w.id, "pid": w.pid, "port": w.port, "alive": w.alive,
                 "open": counts.get(w.id, {}).get("open", 0),
                 "total": counts.get(w.id, {}).get("total", 0)} for w in self.workers]

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.url}, {len(self.workers)} workers" if self.running else "stopped"
        return f"<Cluster {state}, backplane={self.redis_url or None}, balance={self.balance}>"


def _end(process: subprocess.Popen) -> None:
    """Ask a child to stop (EOF on its stdin, then SIGTERM), kill it if it will not, reap it."""
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


_alive: weakref.WeakSet[Cluster] = weakref.WeakSet()
_current: dict[str, Cluster] = {}
_current_lock = threading.Lock()


@atexit.register
def stop_clusters() -> None:
    """Stop every cluster still running (at interpreter exit, or from a cell)."""
    for cluster in list(_alive):
        cluster.stop()


def start_cluster(workers: int = 2, backplane: str | None = None, balance: str = "connection",
                  *, name: str = "default", **options) -> Cluster:
    """Start `workers` lab processes behind one front door (see `Cluster`). The kernel keeps one
    cluster per `name`: running the cell again returns it when the settings are the same (and
    all its workers live), else it is stopped and a new one started.

    backplane: None (each worker its own Hub), "redis" (start a redis-server here; raises
    RedisMissing with the install command if there is none) or "redis://host:port" (use that one).
    balance: "connection" (round robin per new TCP connection) or "sticky" (per client address).
    """
    with _current_lock:
        running = _current.get(name)
        if running is not None and running.running:
            same = (running.size, running.backplane, running.balance) == (
                int(workers), backplane, balance) and not options
            if same and all(w.alive for w in running.workers):
                return running
            running.stop()
        _current[name] = Cluster(workers, backplane, balance, **options).start()
        return _current[name]

def serve(workers: int, backplane: str | None = None, balance: str = "connection",
          host: str = "127.0.0.1", port: int = 0, db: str | None = None,
          limits: dict | None = None) -> int:
    """`labkit serve --workers N`: run a cluster in the foreground until Ctrl-C or SIGTERM; the
    front door's URL is the first line of stdout."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster = Cluster(workers, backplane, balance, host=host, port=port, db=db,
                          limits=limits).start()
    except RedisMissing as exc:
        print(f"labkit serve: {exc}", file=sys.stderr)
        return 2
    try:
        print(cluster.url, flush=True)
        print(f"labkit cluster: {workers} workers, backplane={cluster.redis_url or 'none'}, "
              f"balance={balance}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cluster.stop()
    return 0
