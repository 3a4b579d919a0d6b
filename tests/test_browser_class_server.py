"""Lesson 08's boards on a laptop class server, in headless Chromium: the page talks to the class
server directly, with the student's token, across origins.

A real `labkit serve --classroom` runs on one loopback port with `--allow-origin` for the students'
Jupyter origin; JupyterLab runs on another port and is reached under two names mapped to 127.0.0.1
inside Chromium only: `jupyter.test` (the allowed origin) and `other.test` (an origin the class
server was not told about). The notebook's kernel joins the class server (`lk.join`), so its
widgets get the student's personal token and the class server's own address (`via="direct"`).

From the allowed origin two tabs play a whole game: one board over a WebSocket (`?token=`), the
other polling with fetch (`Authorization: Bearer`, preflighted, If-None-Match/ETag read across
origins), a whiteboard stroke and probes through a wire tap in the kernel work the same way.
From the other origin the same board is refused: its fetch is blocked (no CORS header)
and its WebSocket is refused by the Origin rule, and the class server holds no seat for it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
import requests
from browser import (
    NO_CHROMIUM,
    TRY_SOCKET,
    chromium_path,
    discs,
    free_port,
    host_rules,
    jupyterlab,
    launch,
    open_page,
    run_cell,
    screenshot,
    stop,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

ALLOWED, OTHER = "jupyter.test", "other.test"
TOKEN = "labkit-class-browser-test"


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """The class server (allowing http://jupyter.test:<Jupyter port>) and JupyterLab, whose
    notebook joins it."""
    if chromium_path() is None:
        pytest.skip(NO_CHROMIUM)
    workdir = tmp_path_factory.mktemp("classbrowser")
    jport = free_port()
    page_origin = f"http://{ALLOWED}:{jport}"
    server = subprocess.Popen(
        [sys.executable, "-m", "labkit.cli", "serve", "--classroom", "--host", "127.0.0.1", "--port", "0",
         "--allow-origin", page_origin, "--instructor-token-file", str(workdir / "instructor-token")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    join_url = server.stdout.readline().strip()
    assert join_url.startswith("http://127.0.0.1:"), join_url
    class_base = join_url.split("/?")[0]
    cells = [
        f"import labkit as lk\nlab = lk.join({join_url!r})\nprint(lab.base_url)",
        'x = lk.browser.connect_four(lab, "cors", seat="X", name="ann")\nx',
        'o = lk.browser.connect_four(lab, "cors", seat="O", name="bob", transport="poll", poll_ms=200)\no',
        'lk.browser.connect_four(lab, "elsewhere", seat="X", name="eve")',
        'lk.browser.whiteboard(lab, "cors-room", name="ann")',
        'tap = lk.tap(lab)\nlk.browser.row(lk.browser.probe(lab, "fetch", path="/api/games", count=2, '
        'port=tap.port),\n               lk.browser.probe(lab, "websocket", count=3, port=tap.port))',
    ]
    (workdir / "nb").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, workdir / "nb" / "class.ipynb")
    try:
        with jupyterlab(workdir, workdir / "nb", TOKEN, "--ServerApp.allow_remote_access=True",
                        env={"XDG_CONFIG_HOME": str(workdir / "xdg")}, port=jport):
            yield {"jport": jport, "class_base": class_base, "origin": page_origin,
                   "joined": workdir / "xdg" / "labkit" / "joined.json",
                   "instructor": (workdir / "instructor-token").read_text().strip()}
    finally:
        stop(server)


@pytest.fixture(scope="module")
def chromium():
    with launch([host_rules(ALLOWED, OTHER)]) as browser:
        yield browser


def _open(browser, host: str, port: int):
    return open_page(browser, f"http://{host}:{port}/lab/tree/class.ipynb?token={TOKEN}")


TRY_FETCH = """([url, token]) => fetch(url, {headers: {Authorization: 'Bearer ' + token}})
    .then(r => 'read ' + r.status).catch(err => 'blocked: ' + err.name)"""


def test_a_board_plays_across_origins_with_the_students_token(chromium, setting):
    jport, class_base = setting["jport"], setting["class_base"]
    first = _open(chromium, ALLOWED, jport)
    errors: list[str] = []
    first.on("pageerror", lambda err: errors.append(str(err)))
    run_cell(first, 0)
    run_cell(first, 1)
    x = first.locator(".lk-game[data-seat='X'][data-connected='true']")
    x.wait_for(timeout=60_000)
    assert x.get_attribute("data-base") == class_base + "/"  # straight to the class server

    second = _open(chromium, ALLOWED, jport)  # the same notebook: the same kernel, the same student
    run_cell(second, 2)
    o = second.locator(".lk-game[data-seat='O'][data-version]")
    o.wait_for(timeout=60_000)

    plan = [(x, 0), (o, 1), (x, 0), (o, 1), (x, 0), (o, 1), (x, 0)]
    for n, (board, column) in enumerate(plan, start=1):
        board.locator(f".lk-cell[data-row='0'][data-col='{column}']").click()
        for page in (first, second):
            page.locator(f".lk-game[data-moves='{n}']").first.wait_for(timeout=20_000)
    assert discs(x) == discs(o)
    assert discs(x).count("X") == 4 and discs(x).count("O") == 3
    assert x.get_attribute("data-winner") == o.get_attribute("data-winner") == "X"
    # the poller read ETag across origins: once nothing changes, its GETs are answered 304
    o.locator(".lk-frame td:nth-child(3)").filter(has_text="304").first.wait_for(timeout=10_000)
    sent = o.locator(".lk-frame").evaluate_all("rows => rows.map(r => r.children[2].textContent)")
    assert "PUT game" in sent and "POST /seats" in sent and sent.count("POST /moves") == 3
    screenshot(first, "class-server-board")

    # the class server holds the game: the instructor sees every move the pages made
    state = requests.get(f"{class_base}/api/games/cors",
                         headers={"Authorization": f"Bearer {setting['instructor']}"}, timeout=10).json()
    assert state["moves"] == 7 and state["winner"] == "X" and state["board"] == [
        discs(x)[r * 7:(r + 1) * 7] for r in range(6)]

    # the whiteboard joins the class server's room and a stroke comes back numbered by it
    run_cell(first, 4)
    canvas = first.locator(".lk-whiteboard canvas")
    first.locator(".lk-whiteboard[data-strokes='0'][data-me='ann']").wait_for(timeout=30_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    first.mouse.move(box["x"] + 20, box["y"] + 20)
    first.mouse.down()
    first.mouse.move(box["x"] + 120, box["y"] + 80, steps=5)
    first.mouse.up()
    first.locator(".lk-whiteboard[data-strokes='1']").wait_for(timeout=20_000)
    room = requests.get(f"{class_base}/api/collab/cors-room",
                        headers={"Authorization": f"Bearer {setting['instructor']}"}, timeout=10).json()
    assert len(room["strokes"]) == 1
    # probes through a wire tap in the kernel (lesson 08's header cell): straight to the tap
    run_cell(first, 5)
    probes = first.locator(".jp-Notebook .jp-Cell").nth(5).locator(".lk-probe")
    probes.first.wait_for(timeout=30_000)
    first.locator(".lk-probe[data-done='2']").wait_for(timeout=30_000)
    first.locator(".lk-probe[data-done='3']").wait_for(timeout=30_000)
    through = probes.first.get_attribute("data-base")
    assert through.startswith("http://127.0.0.1:") and through != class_base + "/"  # the tap's port
    statuses = probes.first.locator(".lk-frame").evaluate_all(
        "rows => rows.map(r => r.children[2].textContent)")
    assert statuses.count("200") == 2

    # a page of an origin the class server was not told about: the same board is refused
    other = _open(chromium, OTHER, jport)
    run_cell(other, 3)
    refused = other.locator(".lk-game[data-last-error]")
    refused.wait_for(timeout=60_000)
    assert "could not create the game" in refused.locator(".lk-status").inner_text()
    assert refused.get_attribute("data-connected") is None
    personal = _personal_token(setting)
    assert other.evaluate(TRY_FETCH, [f"{class_base}/api/games", personal]).startswith("blocked")
    ws = class_base.replace("http", "ws") + f"/ws/echo?token={personal}"
    assert other.evaluate(TRY_SOCKET, ws).startswith("refused")
    # ... while the allowed page reads the same answer and opens the same socket
    assert first.evaluate(TRY_FETCH, [f"{class_base}/api/games", personal]) == "read 200"
    assert first.evaluate(TRY_SOCKET, ws) == "opened"
    missing = requests.get(f"{class_base}/api/games/elsewhere",
                           headers={"Authorization": f"Bearer {setting['instructor']}"}, timeout=10)
    assert missing.status_code == 404  # the refused page's PUT never reached a handler
    assert not errors, errors
    for page in (first, second, other):
        page.context.close()


def _personal_token(setting) -> str:
    """The token the kernel was given when it joined (kept in its joined.json)."""
    tokens = json.loads(setting["joined"].read_text())
    assert len(tokens) == 1
    return next(iter(tokens.values()))
