"""The class server as a JupyterHub managed service, against a real JupyterHub on loopback.

One JupyterHub (from PyPI) with configurable-http-proxy (from npm), the DummyAuthenticator with a
password, SimpleLocalProcessSpawner, and the class server started by the hub from
instructors/jupyterhub_config.py itself (this test only adds ports, the authenticator, the spawner
and an admin service token it uses to start servers and make tokens). Every port is a free one
chosen at start; the hub's database, cookie secret, state and home folders live in a temporary
folder. Then:

- two students log in with the hub's login form and reach the service through the hub's proxy;
- each gets a real single-user server and kernel; in the kernel `lk.join()` (no token: the
  kernel's JUPYTERHUB_API_TOKEN) joins the service and lesson 05's `lk.chat_ws` talks in the
  class's room: each student sees the other's message;
- the instructor (a hub user in the group labkit-instructors, logged in by the form) sees both
  students' chat sockets and names in `GET /api/classroom`;
- no credentials get 401 (a browser page a redirect to the hub's login), a student gets 403 on the
  instructor's routes, a forged token, a token without access to the service and another
  service's token get 401, and one student cannot take the other's chat name.

In Chromium, a page of the hub does what a browser widget's page does (its WebSocket is refused
until one fetch of the service's oauth_login, then works). Without a hub, the service alone
checks the prefix, Location, Host and Origin rules for the hub's public name.

configurable-http-proxy is looked for in .cache/npm (where .ci/run installs it) and on PATH; when
only node and npm are there it is installed into .cache/npm first. Without node the test is
skipped with that reason. Every process (hub, proxy, service, single-user servers, kernels) is
stopped at the end, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin

import pytest

pytestmark = [pytest.mark.xdist_group("serial"), pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "instructors" / "jupyterhub_config.py"
NPM_DIR = ROOT / ".cache" / "npm"
PASSWORD = "class-of-" + uuid.uuid4().hex[:8]
ADMIN_TOKEN = uuid.uuid4().hex
STARTUP_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_proxy() -> str:
    """configurable-http-proxy from .cache/npm or PATH, installed into .cache/npm if only npm is here."""
    if sys.platform == "win32":
        pytest.skip("JupyterHub does not run on Windows")
    if shutil.which("node") is None:
        pytest.skip("node is not installed: configurable-http-proxy (JupyterHub's proxy) needs it "
                    "(.ci/run installs nodejs and npm)")
    local = NPM_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    on_path = shutil.which("configurable-http-proxy")
    if on_path:
        return on_path
    npm = shutil.which("npm")
    assert npm, "node is installed but npm is not: install npm (or configurable-http-proxy)"
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    major = subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"], text=True,
                           capture_output=True, check=True).stdout.strip()
    wanted = "^5" if int(major) >= 20 else "^4.6"  # 5.x needs node 20 (as .ci/run chooses)
    subprocess.run([npm, "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund",
                    f"configurable-http-proxy@{wanted}"], check=True, timeout=300)
    assert local.exists(), "npm did not install configurable-http-proxy"
    return str(local)


class Hub:
    """A running JupyterHub and what the test needs to talk to it."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.proxy_port, self.hub_port, self.api_port, self.service_port = (free_port() for _ in range(4))
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        self.service = f"{self.url}/services/labkit"
        self.log = tmp / "hub.log"
        self.proc: subprocess.Popen | None = None

    def config(self, chp: str) -> Path:
        wrapper = self.tmp / "jupyterhub_config.py"
        root_args = ["--allow-root"] if os.geteuid() == 0 else []
        wrapper.write_text(textwrap.dedent(f"""
            load_subconfig({str(RECIPE)!r})   # the recipe instructors copy, as it is
            c.JupyterHub.bind_url = {self.url!r}
            c.JupyterHub.hub_bind_url = "http://127.0.0.1:{self.hub_port}"
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
            c.ConfigurableHTTPProxy.command = [{chp!r}]
            c.ConfigurableHTTPProxy.pid_file = {str(self.tmp / "proxy.pid")!r}
            c.JupyterHub.db_url = "sqlite:///{self.tmp / 'hub.sqlite'}"
            c.JupyterHub.cookie_secret_file = {str(self.tmp / "cookie_secret")!r}
            c.JupyterHub.authenticator_class = "dummy"
            c.DummyAuthenticator.password = {PASSWORD!r}
            c.Authenticator.allow_all = True
            c.JupyterHub.spawner_class = "simple"
            c.SimpleLocalProcessSpawner.home_dir_template = {str(self.tmp / "home" / "{username}")!r}
            c.Spawner.cmd = [{sys.executable!r}, "-m", "jupyterhub.singleuser"]
            c.Spawner.args = {root_args!r}
            c.Spawner.start_timeout = 60
            c.Spawner.http_timeout = 60
            c.JupyterHub.services.append({{"name": "test-admin", "api_token": {ADMIN_TOKEN!r}}})
            c.JupyterHub.load_roles.append({{"name": "test-admin", "services": ["test-admin"],
                "scopes": ["admin:users", "admin:servers", "access:servers", "tokens", "read:users"]}})
        """))
        return wrapper

    def start(self, chp: str) -> None:
        env = {**os.environ, "LABKIT_SERVICE_PORT": str(self.service_port),
               "LABKIT_STATE_DIR": str(self.tmp / "state"), "LABKIT_INSTRUCTORS": "teacher",
               "LABKIT_HUB_PUBLIC_URL": self.url,
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        for name in [n for n in env if n.startswith("JUPYTERHUB_")]:
            del env[name]
        (self.tmp / "home").mkdir()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f",
                                          str(self.config(chp))], cwd=self.tmp, env=env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no hub log)"

    def stop(self) -> None:
        """Stop the hub and every process it started (proxy, service, servers, kernels)."""
        import psutil

        if self.proc is None:
            return
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        # also what outlived a hub that died: the proxy (its pid file), and every process working
        # in or named after this test's own temporary folder (service, servers, kernels)
        mine = str(self.tmp)
        for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
            cwd, cmdline = proc.info["cwd"] or "", " ".join(proc.info["cmdline"] or ())
            if proc.pid != os.getpid() and (cwd.startswith(mine) or mine in cmdline):
                family.append(proc)
        with contextlib.suppress(OSError, ValueError, psutil.NoSuchProcess):
            family.append(psutil.Process(int((self.tmp / "proxy.pid").read_text())))
        family = list({proc.pid: proc for proc in family}.values())
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(family, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)


def _admin(hub: Hub, method: str, path: str, **kwargs):
    import requests

    return requests.request(method, f"{hub.url}/hub/api{path}", timeout=30,
                            headers={"Authorization": f"token {ADMIN_TOKEN}"}, **kwargs)


def wait_for(what: str, check, hub: Hub, timeout: float = STARTUP_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if hub.proc is not None and hub.proc.poll() is not None:
            pytest.fail(f"the hub exited ({hub.proc.returncode}) while waiting for {what}:\n{hub.tail()}")
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{what} not within {timeout:.0f} s (last: {last!r}):\n{hub.tail()}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    chp = find_proxy()
    import requests

    hub = Hub(tmp_path_factory.mktemp("hub"))
    try:
        hub.start(chp)
        wait_for("the class service behind the hub's proxy",
                 lambda: requests.get(f"{hub.service}/healthz", timeout=5).status_code == 200, hub)
        yield hub
    finally:
        hub.stop()


def browser_login(hub: Hub, user: str):
    """A requests session logged in with the hub's login form, then to the service (OAuth)."""
    import requests

    session = requests.Session()
    page = session.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    form = {"username": user, "password": PASSWORD, **({"_xsrf": xsrf[1]} if xsrf else {})}
    reply = session.post(f"{hub.url}/hub/login", data=form, timeout=30)
    assert reply.status_code == 200 and "/hub/login" not in reply.url, reply.text[:500]
    stranger = requests.Session()  # the password matters: a wrong one logs nobody in
    token = re.search(r'name="_xsrf" value="([^"]+)"', stranger.get(f"{hub.url}/hub/login", timeout=30).text)
    stranger.post(f"{hub.url}/hub/login", timeout=30,
                  data={**form, "password": "not-it", **({"_xsrf": token[1]} if token else {})})
    assert "/hub/login" in stranger.get(f"{hub.url}/hub/home", timeout=30).url
    # the service's own login: hub OAuth, no confirmation page (oauth_no_confirm), an HttpOnly cookie
    reply = session.get(f"{hub.service}/oauth_login", timeout=30)
    assert reply.status_code == 200, (reply.status_code, reply.text[:300])
    hops = [r.headers.get("Location", "") for r in reply.history]
    assert any("/hub/api/oauth2/authorize" in h for h in hops), hops
    assert any("/services/labkit/oauth_callback" in h for h in hops), hops
    assert session.cookies.get("labkit-hub-labkit", path="/services/labkit/")
    return session


class Kernel:
    """A kernel of a user's real single-user server, driven over Jupyter's kernel WebSocket."""

    def __init__(self, hub: Hub, user: str):
        self.hub, self.user = hub, user
        reply = _admin(hub, "POST", f"/users/{user}/server")  # (logging in may have started it)
        assert reply.status_code in (201, 202) or "already running" in reply.text, reply.text
        wait_for(f"{user}'s server", lambda: _admin(hub, "GET", f"/users/{user}").json()
                 ["servers"].get("", {}).get("ready"), hub)
        import requests

        base = f"{hub.url}/user/{user}"
        reply = requests.post(f"{base}/api/kernels", json={"name": "python3"}, timeout=60,
                              headers={"Authorization": f"token {ADMIN_TOKEN}"})
        assert reply.status_code == 201, reply.text
        self.kernel_id = reply.json()["id"]
        from websockets.sync.client import connect

        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(
            f"ws://127.0.0.1:{hub.proxy_port}/user/{user}/api/kernels/{self.kernel_id}/channels",
            additional_headers={"Authorization": f"token {ADMIN_TOKEN}"}, open_timeout=30,
            max_size=None))
        self.session = uuid.uuid4().hex

    def run(self, code: str, timeout: float = 60.0) -> str:
        """Execute `code`; its stdout, or a failure with the kernel's traceback."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": self.user, "session": self.session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        out, replied, idle = [], None, False
        deadline = time.monotonic() + timeout
        while replied is None or not idle:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                replied = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        text = "".join(out)
        assert replied == "ok", re.sub(r"\x1b\[[0-9;]*m", "", text)
        return text

    def close(self) -> None:
        self.stack.close()


def test_two_students_chat_through_the_hub_service_and_the_instructor_sees_both(hub):
    import requests

    svc = hub.service
    # -- no credentials: the class server's 401 (problem+json); a browser page goes to the hub's login
    bare = requests.get(f"{svc}/api/clock", headers={"Accept": "application/json"}, timeout=30)
    assert bare.status_code == 401
    assert bare.headers["Content-Type"].startswith("application/problem+json")
    page = requests.get(f"{svc}/api/clock", headers={"Accept": "text/html"}, timeout=30,
                        allow_redirects=False)
    assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["Location"]
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{hub.proxy_port}/services/labkit/ws/chat?name=nobody", open_timeout=30)
    assert refused.value.response.status_code == 401

    # -- two students log in with the hub's form; the teacher too (group labkit-instructors)
    ann_web, bob_web, teacher_web = (browser_login(hub, u) for u in ("ann", "bob", "teacher"))
    assert ann_web.get(f"{svc}/api/clock", timeout=30).status_code == 200

    kernels = []
    try:
        # -- real servers and kernels: lk.join() with no token, lesson 05's chat client
        for user in ("ann", "bob"):
            kernels.append(Kernel(hub, user))
        ann, bob = kernels
        for kernel, user in ((ann, "ann"), (bob, "bob")):
            out = kernel.run(textwrap.dedent(f"""
                import os, json, labkit as lk
                assert "JUPYTERHUB_API_TOKEN" in os.environ and os.environ["JUPYTERHUB_USER"] == {user!r}
                lab = lk.join()
                assert lab.token == os.environ["JUPYTERHUB_API_TOKEN"]  # the kernel's own hub token
                me = lk.chat_ws(lab, {user!r})
                who = lk.rest(lab).get("/api/hub")
                from labkit.browser.widgets import lab_link
                page = lab_link(lab)  # a browser widget: where its page will go
                print(json.dumps({{"url": lab.base_url, "status": who.status,
                                  "welcome": me.welcome["type"], "widget": [page.proxy_path,
                                  page.login_path, page.direct_url]}}))
            """))
            seen = json.loads(out.strip().splitlines()[-1])
            assert seen == {"url": svc, "status": 200, "welcome": "welcome",
                            "widget": ["../../services/labkit/", "oauth_login", svc + "/"]}, seen
            # the page appends proxy_path to its Jupyter base URL: the service on the hub's origin
            assert urljoin(f"{hub.url}/user/{user}/", seen["widget"][0]) == svc + "/"
        ann.run('me.send("hello from ann")')
        bob.run('me.send("hello from bob")')
        wait = textwrap.dedent("""
            import time
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len({m["data"]["text"] for m in me.messages} &
                                                      {"hello from ann", "hello from bob"}) < 2:
                time.sleep(0.1)
            print(json.dumps([[m["data"]["name"], m["data"]["text"]] for m in me.messages]))
        """)
        for kernel in kernels:
            got = json.loads(kernel.run(wait).strip().splitlines()[-1])
            ours = [m for m in got if m[1].startswith("hello from")]
            assert ours == [["ann", "hello from ann"], ["bob", "hello from bob"]], got

        # -- the instructor sees both students: their WebSockets and names, by hub identity
        stats = teacher_web.get(f"{svc}/api/classroom", timeout=30)
        assert stats.status_code == 200, stats.text
        body = stats.json()
        chats = sorted((c["principal"], c["name"]) for c in body["connections"]
                       if c["transport"] == "WebSocket" and c["path"] == "/ws/chat")
        assert chats == [("hub:ann", "ann"), ("hub:bob", "bob")], body["connections"]
        assert {"ann", "bob"} <= set(body["chat_members"])
        history = teacher_web.get(f"{svc}/api/chat/messages", timeout=30).json()
        texts = [(m["data"]["name"], m["data"]["text"]) for m in history
                 if m["data"]["text"].startswith("hello from")]
        assert texts == [("ann", "hello from ann"), ("bob", "hello from bob")]

        # -- a browser widget's page: same origin, the service cookie from oauth_login, Origin checked
        cookie = {"Cookie": f"labkit-hub-labkit={ann_web.cookies.get('labkit-hub-labkit')}"}
        with connect(f"ws://127.0.0.1:{hub.proxy_port}/services/labkit/ws/echo", open_timeout=30,
                     additional_headers={**cookie, "Origin": hub.url}) as page_ws:
            page_ws.send("from the page")
            assert page_ws.recv(timeout=30) == "from the page"
        with pytest.raises(InvalidStatus) as foreign:
            connect(f"ws://127.0.0.1:{hub.proxy_port}/services/labkit/ws/echo", open_timeout=30,
                    additional_headers={**cookie, "Origin": "https://evil.example"})
        assert foreign.value.response.status_code == 403

        # -- the cookie acts only for pages of the hub (XSRF): an unsafe method from another origin, or
        #    with no Origin, is refused before anything happens, even the instructor's
        allow = f"{svc}/api/chat/members/hub:mallory/allow"
        simple = {"Content-Type": "text/plain"}  # a "simple" request: no CORS preflight
        forged = teacher_web.post(allow, data="x", timeout=30,
                                  headers={**simple, "Origin": "https://mallory.hub.example.edu"})
        assert forged.status_code == 403, forged.text
        assert forged.headers["Content-Type"].startswith("application/problem+json")
        assert teacher_web.post(allow, data="x", headers=simple, timeout=30).status_code == 403
        same = teacher_web.post(allow, data="x", headers={**simple, "Origin": hub.url}, timeout=30)
        assert same.status_code == 404 and "nobody" in same.json()["detail"], same.text
        # a token in a header needs no Origin: only the ambient cookie is a browser's
        teacher_token = _admin(hub, "POST", "/users/teacher/tokens",
                               json={"scopes": ["access:services!service=labkit"],
                                     "expires_in": 600}).json()["token"]
        assert requests.post(allow, data="x", timeout=30, headers={
            **simple, "Authorization": f"token {teacher_token}"}).status_code == 404

        # -- a student is not the instructor: 403 on the instructor's routes, by token and by cookie
        ann_token = _admin(hub, "POST", "/users/ann/tokens",
                           json={"scopes": ["access:services!service=labkit"], "expires_in": 600}).json()
        student = {"Authorization": f"Bearer {ann_token['token']}"}
        assert requests.get(f"{svc}/api/clock", headers=student, timeout=30).status_code == 200
        assert requests.get(f"{svc}/api/classroom", headers=student, timeout=30).status_code == 403
        assert ann_web.get(f"{svc}/api/classroom", timeout=30).status_code == 403
        assert requests.post(f"{svc}/api/feed/source", headers=student, json={"rate": 5},
                             timeout=30).status_code == 403
        # one identity per hub user: ann cannot speak as bob
        taken = requests.post(f"{svc}/api/chat/messages", headers=student, timeout=30,
                              json={"name": "bob", "text": "i am bob"})
        assert taken.status_code == 409, taken.text

        # -- refused tokens: forged, without access to the service, another service's
        no_access = _admin(hub, "POST", "/users/bob/tokens",
                           json={"scopes": ["read:users:name!user"], "expires_in": 600}).json()
        for token in ("forged-" + uuid.uuid4().hex, no_access["token"], ADMIN_TOKEN):
            reply = requests.get(f"{svc}/api/clock", headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)
            assert reply.status_code == 401, (token[:8], reply.status_code, reply.text)
            assert reply.headers["Content-Type"].startswith("application/problem+json")
    finally:
        for kernel in kernels:
            kernel.close()


def test_the_guide_shows_the_recipe_file_as_it_is():
    page = (ROOT / "instructors" / "jupyterhub.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert RECIPE.read_text(encoding="utf-8") in blocks


def test_lk_join_in_a_hub_kernel_finds_the_service_and_sends_the_hub_token_only_there():
    from labkit.course.hub_service import hub_join_url, in_hub, on_this_hub, page_path

    env = {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
           "JUPYTERHUB_PUBLIC_URL": "https://hub.example.edu/user/ann/",
           "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": "/user/ann/"}
    assert in_hub(env) and not in_hub({})
    assert hub_join_url(None, env) == "https://hub.example.edu/services/labkit/"
    assert hub_join_url("/services/other", env) == "https://hub.example.edu/services/other/"
    assert hub_join_url(None, {**env, "JUPYTERHUB_BASE_URL": "/jupyter/"}) == \
        "https://hub.example.edu/jupyter/services/labkit/"
    inside = {**env, "LABKIT_CLASS_URL": "http://proxy-public/services/labkit/"}
    assert hub_join_url(None, inside) == "http://proxy-public/services/labkit/"
    assert on_this_hub("https://hub.example.edu/services/labkit/", env)
    assert on_this_hub("HTTPS://Hub.Example.edu/services/labkit/", env)
    # the same host over plain http would carry the kernel's hub token in clear: not the hub
    assert not on_this_hub("http://hub.example.edu/services/labkit/", env)
    assert not on_this_hub("http://proxy-public/services/labkit/", env)
    assert on_this_hub("http://proxy-public/services/labkit/",
                       {**env, "LABKIT_CLASS_URL": "http://proxy-public/services/labkit/"})
    assert not on_this_hub("https://elsewhere.example/services/labkit/", env)
    assert not on_this_hub("/services/labkit/", env)
    assert page_path("https://hub.example.edu/services/labkit/", env) == "../../services/labkit/"
    assert page_path("https://hub.example.edu/services/labkit/",
                     {**env, "JUPYTERHUB_SERVICE_PREFIX": "/user/ann/lab2/"}) == "../../../services/labkit/"
    assert page_path("https://elsewhere.example/services/labkit/", env) is None
    with pytest.raises(ValueError, match="public_url"):
        hub_join_url(None, {"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_API_URL": "http://h/hub/api"})


def test_the_hub_answers_are_kept_briefly_and_boundedly():
    import asyncio

    from labkit.course.hub_service import HubIdentities, hub_settings

    settings = hub_settings({"JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
                             "JUPYTERHUB_API_TOKEN": "s", "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:2"})
    assert settings.prefix == "/services/labkit/" and settings.client_id == "service-labkit"

    class Counting(HubIdentities):
        async def ask_hub(self, token):
            self.asked += 1
            model = {"kind": "user", "name": token, "admin": token == "boss",
                     "groups": ["labkit-instructors"] if token == "tutor" else [],
                     "scopes": [] if token == "outsider" else ["access:services!service=labkit"]}
            return self.who(model)

    hub = Counting(settings, ttl=60, size=3)

    async def run():
        seen = [await hub.identify_token(t) for t in ("ann", "ann", "boss", "tutor", "outsider")]
        assert seen == [("student", "hub:ann"), ("student", "hub:ann"), ("instructor", "hub:boss"),
                        ("instructor", "hub:tutor"), None]
        assert hub.asked == 4 and len(hub.cache) == 3 and len(hub.refused) == 1
        await hub.identify_token("cid")  # a fourth accepted token: "ann" goes (size 3)
        await hub.identify_token("ann")
        assert hub.asked == 6
        hub.ttl = 0.0
        await hub.identify_token("x")
        await hub.identify_token("x")
        assert hub.asked == 8  # nothing kept past its time

    asyncio.run(run())


def test_unknown_tokens_cost_the_hub_one_call_each_at_most_a_bounded_rate_and_evict_nobody():
    """Against a stand-in for the hub's whoami on a real socket (127.0.0.1, port 0): concurrent
    checks of one token share one call; distinct unknown tokens beyond the bucket's burst get 503
    without a call; refused tokens, however many, leave the accepted ones in the cache."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from labkit.course.hub_service import HubIdentities, hub_settings
    from labkit.server.problem import ProblemError

    calls: list[str] = []
    gate: list[asyncio.Event] = []

    async def whoami(request):
        token = request.headers["Authorization"].removeprefix("token ")
        calls.append(token)
        await gate[0].wait()
        if not token.startswith("user-"):
            return web.json_response({"status": 403}, status=403)
        return web.json_response({"kind": "user", "name": token[5:], "admin": False, "groups": [],
                                  "scopes": ["access:services!service=labkit"]})

    async def run():
        app = web.Application()
        gate.append(asyncio.Event())
        app.router.add_get("/hub/api/user", whoami)
        async with TestServer(app, host="127.0.0.1") as server:
            settings = hub_settings({"JUPYTERHUB_API_URL": str(server.make_url("/hub/api")),
                                     "JUPYTERHUB_API_TOKEN": "s",
                                     "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:2"})
            hub = HubIdentities(settings, ttl=60, size=8, refused_size=4, rate=0.001, burst=6)
            try:
                # ten concurrent checks of one token: one call, ten answers
                waiting = [asyncio.ensure_future(hub.identify_token("user-ann")) for _ in range(10)]
                await asyncio.sleep(0.05)
                gate[0].set()
                assert await asyncio.gather(*waiting) == [("student", "hub:ann")] * 10
                assert calls == ["user-ann"] and hub.asked == 1 and not hub.pending
                # forged tokens: each distinct one is a call until the bucket is empty, then 503
                outcomes = []
                for n in range(8):
                    try:
                        outcomes.append(await hub.identify_token(f"forged-{n}"))
                    except ProblemError as exc:
                        outcomes.append((exc.status, exc.headers["Retry-After"]))
                assert outcomes == [None] * 5 + [(503, "1")] * 3
                assert len(calls) == 6 and hub.throttled == 3
                # the refusals filled their own cache (4), not the accepted one: ann is still kept
                assert len(hub.refused) == 4 and len(hub.cache) == 1
                assert await hub.identify_token("user-ann") == ("student", "hub:ann")
                assert await hub.identify_token("forged-4") is None  # a repeated refusal is kept
                assert len(calls) == 6
            finally:
                await hub.close()

    asyncio.run(run())


@pytest.mark.browser
def test_a_hub_page_in_chromium_logs_in_to_the_service_and_opens_its_websocket(hub):
    """What a browser widget's page does on the hub, in a real browser: no service cookie, so its
    WebSocket is refused; one same-origin fetch of oauth_login (the hub's OAuth, followed in the
    background) sets it; then fetch() and the WebSocket reach the service as this hub user."""
    from browser import launch

    with launch() as browser:
        page = browser.new_page()
        page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")  # home: no server is spawned
        page.fill("input[name=username]", "carol")
        page.fill("input[name=password]", PASSWORD)
        page.click("[type=submit]")
        page.wait_for_url("**/hub/home")
        seen = page.evaluate("""async () => {
            const base = new URL("/services/labkit/", location.href).href;
            const echo = () => new Promise((resolve) => {
                const ws = new WebSocket(base.replace(/^http/, "ws") + "ws/echo");
                ws.onopen = () => ws.send("from chromium");
                ws.onmessage = (event) => { resolve(event.data); ws.close(); };
                ws.onclose = (event) => resolve("closed " + event.code);
            });
            const before = await echo();
            const login = await fetch(base + "oauth_login", { cache: "no-store" });
            const clock = await fetch(base + "api/clock", { headers: { Accept: "application/json" } });
            return { before, login: login.status, landed: new URL(login.url).pathname,
                     clock: clock.status, after: await echo() };
        }""")
    assert seen == {"before": "closed 1006", "login": 200, "landed": "/services/labkit/",
                    "clock": 200, "after": "from chromium"}, seen


def test_the_service_answers_under_its_prefix_for_the_hubs_public_name_only(tmp_path):
    """The service alone (no hub: only the instructor token works), as the hub would start it with
    a public URL: the prefix is stripped and put back on Location, the hub's public name passes the
    Host and Origin checks, another name does not."""
    import requests
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")},
           "JUPYTERHUB_SERVICE_NAME": "labkit", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
           "JUPYTERHUB_SERVICE_PREFIX": "/services/labkit/", "JUPYTERHUB_API_TOKEN": "service-token",
           "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
           "JUPYTERHUB_PUBLIC_URL": "https://hub.example.edu/services/labkit/"}
    token_file = tmp_path / "instructor-token"
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--classroom", "--hub-service",
                             "--db", str(tmp_path / "class.db"), "--instructor-token-file",
                             str(token_file)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(proc.stderr.readline())
        assert started["prefix"] == "/services/labkit/" and started["port"] == port
        base = f"http://127.0.0.1:{port}/services/labkit"
        teacher = {"Authorization": f"token {token_file.read_text().strip()}"}
        public = {**teacher, "Host": "hub.example.edu"}
        assert requests.get(f"{base}/healthz", headers={"Host": "hub.example.edu"}, timeout=10).json() \
            == {"status": "ok"}
        assert requests.get(f"{base}/healthz", headers={"Host": "evil.example"},
                            timeout=10).status_code == 403
        made = requests.post(f"{base}/api/notes", headers=public, json={"title": "t", "body": "b"},
                             timeout=10)
        assert made.status_code == 201, made.text
        assert made.headers["Location"].startswith("/services/labkit/api/notes/")
        # the hub is not there: a token the class does not know cannot be checked (503, not 401)
        unknown = requests.get(f"{base}/api/clock", headers={"Authorization": "Bearer x"}, timeout=30)
        assert unknown.status_code == 503 and unknown.headers["Retry-After"]
        ws_url = "ws://hub.example.edu/services/labkit/ws/echo"  # Host: the hub's; socket: the service

        def handshake(origin: str):
            return connect(ws_url, sock=socket.create_connection(("127.0.0.1", port)), open_timeout=10,
                           additional_headers={**teacher, "Origin": origin})

        with handshake("https://hub.example.edu") as ws:
            ws.send("ok")
            assert ws.recv(timeout=10) == "ok"
        with pytest.raises(InvalidStatus) as refused:
            handshake("https://evil.example")
        assert refused.value.response.status_code == 403

        # the service's cookie (XSRF): the hub is not there, so a request that passes the origin
        # rule asks it and gets 503; one that does not is refused (403) before the hub is asked
        cookie = {"Cookie": "labkit-hub-labkit=some-access-token", "Host": "hub.example.edu"}
        allow = f"{base}/api/chat/members/hub:mallory/allow"

        def cookie_post(**headers) -> int:
            return requests.post(allow, data="x", timeout=30, headers={
                **cookie, "Content-Type": "text/plain", **headers}).status_code

        assert cookie_post(Origin="https://mallory.hub.example.edu") == 403
        assert cookie_post(Origin="http://hub.example.edu") == 403  # the hub is https
        assert cookie_post(Origin="null") == 403
        assert cookie_post() == 403  # no Origin
        assert cookie_post(Origin="https://hub.example.edu") == 503
        assert cookie_post(Origin="https://HUB.example.edu:443") == 503
        for method in ("GET", "HEAD"):  # safe methods pass whatever their Origin
            assert requests.request(method, f"{base}/api/clock", timeout=30, headers={
                **cookie, "Origin": "https://evil.example"}).status_code == 503
        for origin, status in (("https://evil.example", 403), (None, 403),
                               ("https://hub.example.edu", 503)):
            with pytest.raises(InvalidStatus) as shaken:
                connect(ws_url, sock=socket.create_connection(("127.0.0.1", port)), open_timeout=10,
                        additional_headers={"Cookie": cookie["Cookie"],
                                            **({"Origin": origin} if origin else {})})
            assert shaken.value.response.status_code == status, origin
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_the_service_gives_the_hubs_proxy_the_whole_connection_cap(tmp_path):
    """Every connection reaches the service from the hub's proxy (one address), so the per-address
    share is off there: with a cap of 8, one address holds all 8 (the lab's default share, 0.5,
    would refuse the 5th with 503); the 9th gets the cap's 503."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")},
           "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}", "JUPYTERHUB_API_TOKEN": "s",
           "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api"}
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--classroom", "--hub-service",
                             "--db", str(tmp_path / "class.db"), "--instructor-token-file",
                             str(tmp_path / "token"), "--limit", "max_connections=8"],
                            env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    socks: list[socket.socket] = []
    try:
        assert json.loads(proc.stderr.readline())["port"] == port
        statuses = []
        for _ in range(9):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(sock)
            sock.sendall(b"GET /services/labkit/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = sock.recv(4096).decode("latin-1")
            statuses.append(int(head.split(" ", 2)[1]))
        assert statuses == [200] * 8 + [503], statuses
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        assert proc.wait(timeout=20) == 0
