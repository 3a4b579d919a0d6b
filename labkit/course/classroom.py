"""A class on one lab server: `labkit serve --classroom` for the instructor, `lk.join` for students.

Instructor, in a shell on a machine the students can reach:

    labkit serve --classroom --host 0.0.0.0 --port 8765

prints first the join URL (this machine's address, never 0.0.0.0, with the student token), then a QR
code of it, then the instructor token. Students, in any lesson:

    lab = lk.join("http://192.168.1.20:8765/?token=...")     # instead of lab = lk.start()

The handle has what the kit's clients use from a LabServer (`url`, `ws_url`, `host`, `port`), so the
lessons' cells work unchanged and the whole class shares one chat room and one live feed. Its URLs
carry the token as user info (`http://student:<token>@host:port`), which Python's HTTP and WebSocket
clients send as an `Authorization` header; a browser's WebSocket, which cannot set headers, uses
`?token=` (see labkit/server/auth.py). On joining, the handle estimates this machine's clock offset
from the server's (`clock_offset_s`), so staleness measured across machines is corrected.

On a JupyterHub the class server runs as a hub service (`hub_service.py`) and, in a hub kernel,
`lab = lk.join()` joins it with the kernel's own hub token (no class token).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}
"""Bind addresses that mean "every interface": never an address a student can type."""

CLOCK_SAMPLES = 8
"""Round trips `lk.join` makes to estimate the clock offset (the fastest one is used)."""


def new_token() -> str:
    """A random token, 128 bits, URL-safe."""
    return secrets.token_urlsafe(16)


def outward_address(family: int = socket.AF_INET) -> str | None:
    """The address of the interface this machine would use to reach other machines.

    A UDP socket `connect` only chooses a route: no packet is sent. None when there is no route."""
    probe = ("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(probe)
            return sock.getsockname()[0]
    except OSError:
        return None


def join_host(bound_host: str) -> str:
    """The host students should use for a server bound to `bound_host` (never a wildcard)."""
    if bound_host not in WILDCARDS:
        return bound_host
    family = socket.AF_INET6 if ":" in bound_host else socket.AF_INET
    for candidate in (outward_address(family), outward_address(socket.AF_INET)):
        if candidate and candidate not in WILDCARDS:
            return candidate
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def join_url(host: str, port: int, token: str, *, tls: bool = False) -> str:
    """`http(s)://host:port/?token=...` for `lk.join` (and a browser: the index is open)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http{'s' if tls else ''}://{shown}:{port}/?token={quote(token)}"


def qr_text(url: str) -> str:
    """`url` as a QR code drawn with characters, for a terminal or a projector."""
    import qrcode

    code = qrcode.QRCode(border=2)
    code.add_data(url)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


def classroom_config(host: str, port: int, db: str, student_tokens, instructor_token: str,
                     origins=(), tls: bool = False, limits: dict | None = None):
    """The LabConfig of a class server (also accepting the join host in `Host`, where the lab
    checks it)."""
    from labkit.server.config import LabConfig

    options = {"host": host, "port": port, "db": db, "tls": tls,
               "allowed_origins": tuple(origins), "student_tokens": tuple(student_tokens),
               "instructor_token": instructor_token, **(limits or {})}
    if "allowed_hosts" in {f.name for f in fields(LabConfig)}:
        names = {join_host(host), socket.gethostname(), socket.getfqdn()} - WILDCARDS
        options["allowed_hosts"] = tuple(sorted(names))
    return LabConfig(**options)


def _ssl_context(hosts):
    """A server context whose certificate (from the kit's CA) names the join address too."""
    import ssl

    from labkit.net.tls import HOSTS, authority

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority().issue_cert(*dict.fromkeys([*HOSTS, *hosts])).configure_cert(context)
    return context


def default_token_file() -> Path:
    """Where the instructor token is kept by default: $XDG_CONFIG_HOME/labkit/instructor-token
    (~/.config/labkit/instructor-token)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "labkit" / "instructor-token"


def instructor_secret(path: Path) -> str:
    """The instructor token kept in `path`: read it if the file exists, else make one and write it
    with mode 0600 (its folder 0700), so the same token works across restarts of the class server
    and nobody else on the machine can read it. Never printed."""
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = new_token()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)  # also when the file existed, empty, with other bits
    return token


def joined_file() -> Path:
    """Where a student's machine keeps its personal tokens, one per class joined (mode 0600):
    $XDG_CONFIG_HOME/labkit/joined.json."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "labkit" / "joined.json"


def _read_joined(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(data, dict) else {}


def _write_joined(path: Path, known: dict[str, str]) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(known, out)
    except OSError:  # a read-only home: the identity lasts as long as this kernel
        pass


def serve_classroom(host: str, port: int, db: str | None, tokens=(), instructor_token: str | None = None,
                    origins=(), tls: bool = False, *, limits: dict | None = None,
                    instructor_token_file: str | None = None) -> int:
    """Run a class server until Ctrl-C / SIGTERM. First stdout line: the join URL, then its QR
    code: what the projector shows. The instructor's secret is never printed: it is read from (or
    made in) a file only its owner can read (`instructor_secret`)."""
    from labkit.server.app import make_app
    from labkit.server.guard import serve_app

    tokens = tuple(tokens) or (new_token(),)
    token_file = None
    if instructor_token is None:
        token_file = Path(instructor_token_file) if instructor_token_file else default_token_file()
        try:
            instructor_token = instructor_secret(token_file)
        except OSError as exc:
            print(f"labkit serve: cannot keep the instructor token in {token_file}: {exc}",
                  file=sys.stderr)
            return 2
    if instructor_token in tokens:
        print("labkit serve: the instructor token must differ from every student token.",
              file=sys.stderr)
        return 2

    async def _main() -> int:
        workdir = None if db else tempfile.TemporaryDirectory(prefix="labkit-class-")
        path = str(Path(workdir.name) / "lab.db") if workdir is not None else str(db)
        config = classroom_config(host, port, path, tokens, instructor_token, origins, tls, limits)
        where = join_host(host)
        try:
            served = await serve_app(make_app(config), host, port, config=config,
                                     ssl_context=_ssl_context([where]) if tls else None)
        except OSError as exc:
            print(f"labkit serve: cannot bind {host}:{port}: {exc.strerror or exc}.", file=sys.stderr)
            return 2
        bound_port = served.port
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        url = join_url(where, bound_port, tokens[0], tls=tls)
        print(url, flush=True)
        print(qr_text(url), flush=True)
        for extra in tokens[1:]:
            print(f"another student token: {join_url(where, bound_port, extra, tls=tls)}", flush=True)
        print(f"students: lab = lk.join({url!r})", file=sys.stderr)
        if token_file is not None:  # the secret itself is never printed: this is the projector
            print(f"instructor token: in {token_file} (readable only by you)", file=sys.stderr)
        else:
            print("instructor token: the one given with --instructor-token (other users of this "
                  "machine can read a command line: prefer --instructor-token-file)", file=sys.stderr)
        if tls:
            from labkit.net.tls import ca_pem_path

            print(f"TLS: give students the CA file {ca_pem_path()} and lk.join(url, ca=path)",
                  file=sys.stderr)
        if _is_ip(where) and ipaddress.ip_address(where).is_loopback:
            print("note: bound to loopback, only this machine can join (use --host 0.0.0.0)",
                  file=sys.stderr)
        print("labkit classroom server running; Ctrl-C to stop", file=sys.stderr, flush=True)
        await stop.wait()
        await served.close()
        if workdir is not None:
            workdir.cleanup()
        return 0

    return asyncio.run(_main())


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# -- the student's side ------------------------------------------------------------------------
class ClassroomLab:
    """A handle on a class server, used where a lesson uses its own lab (`lab = lk.join(...)`).

    url / ws_url: base URLs with the token as user info (the kit's clients send it); base_url: the
    same without it; headers: `Authorization: Bearer` for other HTTP tools; clock_offset_s: server
    clock minus this machine's clock (s), clock_error_s: its bound (half the fastest round trip).
    """

    def __init__(self, url: str, token: str | None = None, *, ca: str | None = None,
                 sync_clock: bool = True, personal: bool = True):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        token = token or parse_qs(parts.query).get("token", [None])[0] or parts.password
        if not token:
            raise ValueError("lk.join needs the class token: the join URL's ?token=... or token=")
        if parts.hostname is None:
            raise ValueError(f"lk.join needs a URL with a host, got {url!r}")
        self.tls = parts.scheme in ("https", "wss")
        # a public URL may leave the port out (443/80) and carry a path: a class server behind the
        # university's reverse proxy or a JupyterHub service (https://hub.example.edu/services/labkit/)
        self.token, self.host = token, parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        if ca is not None:
            from labkit.net.tls import trust_file

            trust_file(ca)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self._netloc = f"{shown}:{self.port}{self.prefix}"
        self.join_token = token
        if personal:  # the class's join code becomes this kernel's own identity
            self.token = self._personal_token(token)
        self.clock_offset_s = 0.0
        self.clock_error_s = float("nan")
        self.page_path: str | None = None
        """On a JupyterHub: the class service's path relative to the student's Jupyter base URL,
        so the browser widgets reach it on the page's own origin (`hub_service.page_path`)."""
        if sync_clock:
            self.sync_clock()

    def _base(self, scheme: str, credentials: bool = True) -> str:
        auth = f"student:{quote(self.token, safe='')}@" if credentials else ""
        return f"{scheme}{'s' if self.tls else ''}://{auth}{self._netloc}"

    @property
    def url(self) -> str:
        return self._base("http")

    @property
    def ws_url(self) -> str:
        return self._base("ws")

    @property
    def base_url(self) -> str:
        return self._base("http", credentials=False)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def browser_url(self) -> str:
        """The class server as a page reaches it: its own address (no Jupyter proxy in between)."""
        return self.base_url + "/"

    @property
    def running(self) -> bool:
        return True

    def _personal_token(self, join_token: str) -> str:
        """This machine's personal token for this class: the one kept from an earlier join (a
        restarted kernel stays the same identity, with its chat name), or a new one from
        `POST /api/classroom/join`. A server without the exchange keeps the join code."""
        from labkit.clients.rest import RestClient

        kept = joined_file()
        key = hashlib.sha256(f"{self.base_url}|{join_token}".encode()).hexdigest()[:24]
        known = _read_joined(kept)
        if key in known:
            self.token = known[key]
            with RestClient(self) as api:
                if api.get("/api/clock").status == 200:
                    return known[key]
            self.token = join_token  # the class server forgot it (a new --db): join anew
        with RestClient(self) as api:
            reply = api.post("/api/classroom/join")
        if reply.status == 404:
            return join_token
        if reply.status == 200:  # the caller's own token (instructor, roster, personal): kept
            return str(reply.json()["token"])
        if reply.status != 201:
            raise ConnectionError(f"the class server refused to let this kernel join ({reply.status}): "
                                  f"{reply.body[:200].decode(errors='replace')}")
        token = reply.json()["token"]
        known[key] = token
        _write_joined(kept, known)
        return token

    def sync_clock(self, samples: int = CLOCK_SAMPLES) -> float:
        """Estimate `clock_offset_s` from `samples` round trips to GET /api/clock (NTP's offset
        formula on the fastest round trip, Cristian's idea); returns the offset in seconds."""
        from labkit.clients.rest import RestClient
        from labkit.measure import estimate_clock_offset

        rows = []
        with RestClient(self) as api:
            for _ in range(samples + 1):
                t0 = time.time()
                reply = api.get("/api/clock")
                t3 = time.time()
                if reply.status != 200:
                    raise ConnectionError(f"the class server answered {reply.status}: "
                                          f"{reply.body[:200].decode(errors='replace')}")
                data = reply.json()
                rows.append((t0, data["received_ts"], data["sent_ts"], t3))
        estimate = estimate_clock_offset(rows[1:])  # the first one also opened the connection
        self.clock_offset_s, self.clock_error_s = estimate["offset_s"], estimate["error_s"]
        return self.clock_offset_s

    def stop(self) -> None:
        """Leave: nothing to stop here (the class server is the instructor's)."""

    def status(self) -> dict:
        return {"running": True, "url": self.base_url, "clock_offset_s": self.clock_offset_s,
                "clock_error_s": self.clock_error_s}

    def __enter__(self) -> ClassroomLab:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ClassroomLab {self.base_url} (token hidden)>"


def class_name(lab: ClassroomLab) -> str:
    """This kernel's person's name on the class server `lab` (`lk.join`), where the whole class
    shares one chat room and each person has one name (held while away): the JupyterHub user's
    name in a hub kernel, else this machine's user name, each with six characters of the kernel's
    personal token's hash, so two
    students who are both "jovyan" (Binder) differ (two of 60 share a tag about once in 10,000
    classes). A user name that holds a word the room reserves (`validate.reserved_word`) becomes
    "student". Stable across kernel restarts (the personal token is kept)."""
    import getpass
    import hashlib
    import os
    import re

    from labkit.server.validate import reserved_word

    try:
        user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        user = ""
    user = re.sub(r"[^A-Za-z0-9._-]", "", user)[:20].strip("._-")
    if not user or reserved_word(user):
        user = "student"
    return f"{user}-{hashlib.sha256(lab.token.encode()).hexdigest()[:6]}"


def own_lab(lab, why: str = "it restarts or loads the server", **start_options):
    """The lab a cell may restart, load or reconfigure: `lab` itself when it is this kernel's own
    (`lk.start()`), else (a class server joined with `lk.join`) this kernel's own lab, started
    here with `start_options` (as `lk.start(**start_options)`: the same options give the same lab
    back), with one printed line saying so: a student must not restart or load the class server
    everyone shares, and the instructor's server would refuse it anyway (403). The line is printed
    once per lab and reason."""
    if not isinstance(lab, ClassroomLab):
        return lab
    from labkit.server.runner import start

    mine = start(**start_options)
    said = (mine.url, why)
    if said not in _said_own_lab:  # once per lab and reason: a checker may ask again and again
        _said_own_lab.add(said)
        print(f"On a class server this part runs on your own lab at {mine.url} ({why}).")
    return mine


_said_own_lab: set[tuple[str, str]] = set()


def join(url: str | None = None, token: str | None = None, **options) -> ClassroomLab:
    """Join a class server: `lab = lk.join(join_url)` or `lk.join(url, token)`.

    In a kernel of a JupyterHub (JUPYTERHUB_API_TOKEN set), `lk.join()` joins the hub's class
    service (`/services/labkit/`, `hub_service.hub_join_url`) as the hub user, with the kernel's
    hub token: no class token. `lk.join("/services/other/")` names another service path on the
    same hub; a URL that carries a token is joined as everywhere else."""
    from .hub_service import hub_join_url, in_hub, on_this_hub, page_path

    carries_token = bool(url and (parse_qs(urlsplit(url).query).get("token")
                                  or urlsplit(url if "://" in url else f"//{url}").password))
    if in_hub() and token is None and not carries_token and (not url or url.startswith("/")
                                                              or on_this_hub(url)):
        url = hub_join_url(url)
        options.setdefault("personal", False)  # the hub token is this user's identity already
        lab = ClassroomLab(url, os.environ["JUPYTERHUB_API_TOKEN"], **options)
        lab.page_path = page_path(url)
        return lab
    if not url:
        raise ValueError("lk.join needs the join URL the instructor shows (on a JupyterHub with "
                         "the class service, lk.join() finds it by itself)")
    return ClassroomLab(url, token, **options)
