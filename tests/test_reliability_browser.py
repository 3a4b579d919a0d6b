"""A real EventSource (Debian Chromium through Playwright) recovers across a lab restart: its
reconnect carries Last-Event-ID "<old epoch>:<seq>", the lab answers a `reset` event on a 200
stream (a 4xx would end the EventSource for good), the page re-syncs from a snapshot and goes on."""

from __future__ import annotations

from browser import browser  # noqa: F401 - the module-scoped Chromium fixture
from waiting import wait_until

from labkit.lessons import reliability
from labkit.streaming.hub import HUB

PAGE = """<!doctype html><meta charset="utf-8"><title>feed</title><script>
window.feed = {events: [], resets: [], snapshot: null, errors: 0};
const es = new EventSource("/sse/feed");
window.es = es;
es.onmessage = (e) => { const d = JSON.parse(e.data); feed.events.push([d.epoch, d.seq, e.lastEventId]); };
es.addEventListener("reset", async (e) => {
  const d = JSON.parse(e.data);
  feed.resets.push([d.epoch, d.last_seq, e.lastEventId]);
  const snap = await (await fetch("/api/feed")).json();   // snapshot of the new history
  feed.snapshot = snap.map((x) => [x.epoch, x.seq]);
});
es.onerror = () => { feed.errors += 1; };
</script>"""


def wait_for(page, expression: str, timeout_ms: int = 20_000) -> None:
    page.wait_for_function(expression, timeout=timeout_ms)


def test_an_eventsource_survives_a_lab_restart_through_the_reset_event(lab, browser):  # noqa: F811
    page = browser.new_page()
    page.route(lab.url + "/feed-page", lambda route: route.fulfill(body=PAGE,
                                                                  content_type="text/html"))
    page.goto(lab.url + "/feed-page")
    wait_for(page, "() => window.es.readyState === 1")
    # the lab has the EventSource among the feed's subscribers before the first event is published
    wait_until(lambda: len(lab.app[HUB].topic("feed").subscribers) >= 1, 20, what="the page subscribed")
    old = reliability._publish(lab, 5, 100.0)
    wait_for(page, "() => feed.events.length === 5")
    lab.restart()  # the history is gone; the browser reconnects by itself (retry: 1000 ms)
    new = reliability._publish(lab, 3, 100.0)
    wait_for(page, "() => feed.snapshot !== null")
    reliability._publish(lab, 2, 100.0)
    wait_for(page, "() => feed.events.length === 7")
    state = page.evaluate("() => ({feed: window.feed, ready: window.es.readyState})")
    page.close()
    feed = state["feed"]
    assert state["ready"] != 2  # not CLOSED: it did not give up
    assert [(e, s) for e, s, _ in feed["events"][:5]] == [(old["epoch"], n) for n in range(1, 6)]
    assert feed["events"][0][2] == f"{old['epoch']}:1"  # ids carry the epoch
    assert len(feed["resets"]) == 1 and feed["resets"][0][0] == new["epoch"]
    assert feed["resets"][0][2] == f"{new['epoch']}:{feed['resets'][0][1]}"
    reset_at = feed["resets"][0][1]
    # snapshot + delta: the snapshot holds the new history so far, live events continue after it
    assert feed["snapshot"][:3] == [[new["epoch"], n] for n in (1, 2, 3)]
    live = [(e, s) for e, s, _ in feed["events"][5:]]
    assert live == [(new["epoch"], n) for n in range(reset_at + 1, reset_at + 1 + len(live))]
    assert all(e == new["epoch"] for e, _ in live)  # never an event of the old history after it
