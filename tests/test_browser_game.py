"""Browser clients through Jupyter's proxy, in headless Chromium, as on a hub.

JupyterLab runs with a hub-like base URL (/user/student/) and is reached under a public,
non-loopback name (hub.example.test, mapped to 127.0.0.1 inside Chromium only), so the lab must
learn that its pages are the student's own before it accepts their WebSockets. Two pages of the
same notebook play a full game of Connect Four through the widgets; a page from another origin
(evil.example.test) is refused on every path to the lab. A second test measures the request
headers a real Chromium puts on the wire, beside the kit's Python clients.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import nbformat
import pytest
from browser import (
    NO_CHROMIUM,
    TRY_SOCKET,
    chromium_path,
    discs,
    host_rules,
    jupyterlab,
    launch,
    open_page,
    run_cell,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

HUB = "hub.example.test"
EVIL = "evil.example.test"
TOKEN = "labkit-hub-test"

CELLS = [
    "import labkit as lk\nlab = lk.start()",
    'x = lk.browser.connect_four(lab, "match", seat="X", name="ann")\nx',
    'o = lk.browser.connect_four(lab, "match", seat="O", name="bob")\n'
    'w = lk.browser.connect_four(lab, "match", role="watch", transport="poll", poll_ms=200)\n'
    'import ipywidgets\nipywidgets.HBox([o, w])',
    'print("frames", len(x.frames), "timed", len(x.timings()), "origins", x.page_origins, lab.browser_url)',
    "lk.browser.lab_link(lab)",
    'import ipywidgets\nipywidgets.HBox([lk.browser.probe(lab, "websocket", count=5),\n'
    '    lk.browser.probe(lab, "fetch", count=3), lk.browser.whiteboard(lab, "room", name="ann")])',
    # the second test: two tabs (two people) of one notebook
    'import labkit as lk\nlab = globals().get("lab") or lk.start()',
    'pair = [lk.browser.connect_four(lab, "pair", seat="X"),\n'
    '        lk.browser.connect_four(lab, "pair", seat="O")]\n'
    'lk.browser.row(*pair, lk.browser.connect_four(lab, "pair", role="watch"),\n'
    '               lk.browser.connect_four(lab, "pair", role="watch", transport="poll"))',
    "lk.browser.row(*pair)",
    'lk.browser.connect_four(lab, "duo")',
    'lk.browser.whiteboard(lab, "tabs")',
]


@pytest.fixture(scope="module")
def hub_lab(tmp_path_factory):
    """JupyterLab at /user/student/, as a JupyterHub single-user server runs it."""
    if chromium_path() is None:
        pytest.skip(NO_CHROMIUM)
    workdir = tmp_path_factory.mktemp("hub")
    (workdir / "nb").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, workdir / "nb" / "game.ipynb")
    with jupyterlab(workdir, workdir / "nb", TOKEN, "--ServerApp.allow_remote_access=True",
                    base_url="/user/student/") as port:
        yield {"port": port, "base": f"http://{HUB}:{port}/user/student/", "workdir": workdir}


@pytest.fixture(scope="module")
def chromium():
    with launch([host_rules(HUB, EVIL)]) as browser:
        yield browser


@pytest.fixture(scope="module")
def evil_site():
    """A page on another origin that tries to reach the lab (and reports what happened)."""
    page = b"<!doctype html><title>elsewhere</title><p>another site</p>"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{EVIL}:{server.server_address[1]}/"
    server.shutdown()


def _open(browser, hub_lab):
    return open_page(browser, f"{hub_lab['base']}lab/tree/game.ipynb?token={TOKEN}")


def _cell_output(page, index: int, timeout_ms: int = 30_000) -> str:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-OutputArea-output").first.wait_for(timeout=timeout_ms)
    return cell.locator(".jp-OutputArea-output").first.inner_text()


def _board(page, which: int = 0) -> list[str]:
    return discs(page.locator(".lk-game").nth(which))


def test_two_pages_play_a_full_game_through_the_proxy(chromium, hub_lab, evil_site):
    first = _open(chromium, hub_lab)
    run_cell(first, 0)
    run_cell(first, 1)
    x = first.locator(".lk-game[data-seat='X'][data-connected='true']")
    x.wait_for(timeout=60_000)
    base = x.get_attribute("data-base")
    lab_port = int(base.rstrip("/").rsplit("/", 1)[1])
    assert base == f"{hub_lab['base']}proxy/{lab_port}/"  # through Jupyter's proxy, under the hub's name

    second = _open(chromium, hub_lab)  # the same notebook, so the same kernel and the same lab
    run_cell(second, 2)
    o = second.locator(".lk-game[data-seat='O'][data-connected='true']")
    o.wait_for(timeout=60_000)
    poller = second.locator(".lk-game").nth(1)  # a spectator that polls GET /api/games/match

    plan = [(first, 0), (second, 1), (first, 0), (second, 1), (first, 0), (second, 1), (first, 0)]
    for n, (page, column) in enumerate(plan, start=1):
        page.locator(".lk-game").first.locator(f".lk-cell[data-row='0'][data-col='{column}']").click()
        for p in (first, second):
            p.locator(f".lk-game[data-moves='{n}']").first.wait_for(timeout=20_000)
    poller.and_(second.locator(".lk-game[data-moves='7']")).wait_for(timeout=20_000)
    assert _board(first) == _board(second) == _board(second, 1)
    assert _board(first).count("X") == 4 and _board(first).count("O") == 3
    for game in (first.locator(".lk-game"), second.locator(".lk-game").first, poller):
        assert game.get_attribute("data-winner") == "X"
        assert "X wins" in game.locator(".lk-status").inner_text()
    # once nothing changes, the poller's next GET (If-None-Match) is answered 304, without a body
    poller.locator(".lk-frame td:nth-child(3)").filter(has_text="304").first.wait_for(timeout=10_000)
    polls = poller.locator(".lk-frame").evaluate_all("rows => rows.map(r => r.children[2].textContent)")
    assert "GET /" in polls and "200" in polls
    # a click after the end is refused by the server, and the boards stay as they are
    second.locator(".lk-game").first.locator(".lk-cell[data-row='0'][data-col='5']").click()
    second.locator(".lk-game[data-last-error]").wait_for(timeout=10_000)
    assert "game is over" in second.locator(".lk-game").first.get_attribute("data-last-error")
    assert _board(first) == _board(second)

    # the frame log shows the frames: moves sent, states received, with sizes
    log = first.locator(".lk-game .lk-log .lk-frame")
    rows = log.evaluate_all("rows => rows.map(r => [...r.children].map(td => td.textContent))")
    sent = [r for r in rows if r[1] == "↑" and r[2] == "move"]
    received = [r for r in rows if r[1] == "↓" and r[2] == "state"]
    assert len(sent) == 4 and len(received) >= 7
    assert all(int(r[3]) > 0 for r in sent + received)
    screenshot(first, "lesson-08-game")

    # the page's rows and timings reached Python
    run_cell(first, 3)
    out = _cell_output(first, 3)
    frames, timed = int(out.split()[1]), int(out.split()[3])
    assert frames >= len(rows) and timed >= 4 and f"http://{HUB}:{hub_lab['port']}" in out
    # the kernel found its Jupyter server (its parent) and the proxied address of the lab
    assert out.split()[-1] == f"http://127.0.0.1:{hub_lab['port']}/user/student/proxy/{lab_port}/"

    # the lab's HTML index opens through the proxy (Host is the hub's name: learnt, so accepted)
    run_cell(first, 4)
    link = first.locator("a.lk-anchor")
    link.wait_for(timeout=30_000)
    index = first.context.new_page()
    index.goto(link.get_attribute("href"))
    assert "labkit lab server" in index.content()
    index.close()

    # probes (WebSocket echoes, fetches) and a whiteboard stroke, from the page through the proxy
    run_cell(first, 5)
    first.locator(".lk-probe[data-done='5']").wait_for(timeout=30_000)
    first.locator(".lk-probe[data-done='3']").wait_for(timeout=30_000)
    canvas = first.locator(".lk-whiteboard canvas")
    canvas.wait_for(timeout=30_000)
    first.locator(".lk-whiteboard[data-strokes='0']").wait_for(timeout=20_000)  # joined the room
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    first.mouse.move(box["x"] + 20, box["y"] + 20)
    first.mouse.down()
    first.mouse.move(box["x"] + 120, box["y"] + 80, steps=5)
    first.mouse.up()
    first.locator(".lk-whiteboard[data-strokes='1']").wait_for(timeout=20_000)
    echoes = first.locator(".lk-probe").first.locator(".lk-frame").count()
    assert echoes >= 10  # five texts up, five echoes down (plus open/close events)

    # the same page may open a socket to the lab through the proxy ...
    proxied = f"ws://{HUB}:{hub_lab['port']}/user/student/proxy/{lab_port}/ws/echo"
    assert first.evaluate(TRY_SOCKET, proxied) == "opened"
    # ... a foreign page may not: not through Jupyter's proxy, not straight to the lab, not by
    # rebinding its own name to the lab's address
    evil = chromium.new_page()
    evil.goto(evil_site)
    for url in (proxied, f"ws://127.0.0.1:{lab_port}/ws/echo", f"ws://{EVIL}:{lab_port}/ws/echo"):
        assert evil.evaluate(TRY_SOCKET, url).startswith("refused"), url
    evil.close()
    first.context.close()
    second.context.close()


def test_real_chromium_request_headers_beside_the_python_client(chromium):
    import labkit as lk
    from labkit.browser import python_request_heads, request_heads
    from labkit.server.runner import LabServer

    with LabServer() as lab:
        tap = lk.tap(lab)
        try:
            page = chromium.new_page()
            page.goto(tap.url() + "/")  # the lab's own index page, a loopback origin
            page.evaluate("() => fetch('/api/games', {cache: 'no-store'}).then(r => r.text())")
            assert page.evaluate(TRY_SOCKET, tap.url("ws") + "/ws/echo") == "opened"
            page.close()
            browser_rows = request_heads(tap, "Chromium")
        finally:
            tap.stop()
        python_rows = python_request_heads(lab, lk.tap)
    browser_rows = browser_rows[browser_rows.target.isin(["/api/games", "/ws/echo"])]
    both = {(r.client, r.kind): r for r in [*browser_rows.itertuples(), *python_rows.itertuples()]}
    print(json.dumps({f"{c} {k}": r.header_bytes for (c, k), r in both.items()}))
    assert set(both) == {("Chromium", "poll"), ("Chromium", "upgrade"),
                         ("labkit Python client", "poll"), ("labkit Python client", "upgrade")}
    chrome_poll, chrome_upgrade = both["Chromium", "poll"], both["Chromium", "upgrade"]
    assert "user-agent" in chrome_poll.header_names.lower()
    assert "origin" in chrome_upgrade.header_names.lower()
    assert "sec-websocket-extensions" in chrome_upgrade.header_names.lower()
    assert chrome_poll.header_bytes > both["labkit Python client", "poll"].header_bytes
    assert chrome_upgrade.header_bytes > both["labkit Python client", "upgrade"].header_bytes


def test_a_second_tab_is_another_person_who_can_join(chromium, hub_lab):
    """Lesson 08 in two tabs: the first tab's X and O boards hold both seats, so the same boards
    shown in a second tab watch (and say why) instead of failing with 1006; a board with no seat
    asked for takes X in one tab and O in the other, and they play; whiteboard cursors carry their
    owner's name, never "you"; four boards wrap instead of being clipped; and stopping the kernel
    with boards open raises no page error ("Cannot send")."""
    first, second = _open(chromium, hub_lab), _open(chromium, hub_lab)
    errors = {id(p): [] for p in (first, second)}
    for page in (first, second):
        page.on("pageerror", lambda err, page=page: errors[id(page)].append(str(err)))
    run_cell(first, 6)
    run_cell(first, 7)
    for seat in "XO":
        first.locator(f".lk-game[data-seat='{seat}'][data-connected='true']").wait_for(timeout=60_000)
    first.locator(".lk-game[data-version]").nth(3).wait_for(timeout=30_000)  # the poller drew too
    area = first.locator(".jp-Notebook .jp-Cell").nth(7).locator(".jp-OutputArea-output").first
    right = area.bounding_box()["x"] + area.bounding_box()["width"]
    boards = first.locator(".jp-Notebook .jp-Cell").nth(7).locator(".lk-game")
    assert boards.count() == 4
    for i in range(4):
        box = boards.nth(i).bounding_box()
        assert box["x"] + box["width"] <= right + 1, f"board {i + 1} is clipped"

    run_cell(second, 8)  # the same two boards in a second tab, as a saved notebook shows them
    second.locator(".lk-game[data-connected='true'][data-version]").nth(1).wait_for(timeout=60_000)
    for i in range(2):
        game = second.locator(".lk-game").nth(i)
        assert game.get_attribute("data-seat") == ""
        assert game.get_attribute("data-notice") == "both seats are held by other pages: you watch"
        assert "could not join" not in game.locator(".lk-status").inner_text()

    run_cell(first, 9)
    mine = first.locator(".jp-Notebook .jp-Cell").nth(9).locator(".lk-game[data-seat='X']")
    mine.wait_for(timeout=60_000)
    run_cell(second, 9)
    theirs = second.locator(".jp-Notebook .jp-Cell").nth(9).locator(".lk-game[data-seat='O']")
    theirs.wait_for(timeout=60_000)
    mine.locator(".lk-cell[data-row='0'][data-col='3']").click()
    theirs.and_(second.locator(".lk-game[data-moves='1']")).wait_for(timeout=20_000)
    theirs.locator(".lk-cell[data-row='0'][data-col='4']").click()
    mine.and_(first.locator(".lk-game[data-moves='2']")).wait_for(timeout=20_000)
    assert discs(mine) == discs(theirs) and sorted(d for d in discs(mine) if d) == ["O", "X"]

    run_cell(first, 10)
    run_cell(second, 10)
    boards = [p.locator(".lk-whiteboard[data-me]") for p in (first, second)]
    for board in boards:
        board.wait_for(timeout=60_000)
    me, them = (b.get_attribute("data-me") for b in boards)
    assert me != them and me.startswith("guest-") and them.startswith("guest-")
    canvas = second.locator(".lk-whiteboard canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for step in range(5):
        second.mouse.move(box["x"] + 40 + 20 * step, box["y"] + 40)
        time.sleep(0.15)
    first.locator(f".lk-whiteboard[data-cursors='{them}']").wait_for(timeout=20_000)
    assert them in first.locator(".lk-whiteboard .lk-status").inner_text()

    # the kernel stops (a restart) with every board open: the pages go on quietly (before, each
    # board's report threw "Cannot send" into the page)
    first.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    second.locator(".lk-game[data-connected='false']").first.wait_for(timeout=60_000)
    time.sleep(2)
    for page in (first, second):
        assert not [e for e in errors[id(page)] if "Cannot send" in e], errors[id(page)]
    first.context.close()
    second.context.close()

