"""Measure, inside the JupyterLab page, how often live widgets update and how long the page's main
thread stalls while they do (tests/test_browser_start_here.py, tests/test_browser_dashboard.py).

Two probes, installed before the widget's cell runs and read after it:

- widget updates: every `comm_msg` the page receives from the kernel (the kernel connection's
  `anyMessage` signal), by comm id, with the page's clock (`performance.now()`). One comm is one
  widget (a plot, a text, a progress bar); its messages are the updates the page has to render.
- stalls: `PerformanceObserver` entries of type 'longtask' (Chromium reports every main-thread task
  over 50 ms, with its duration), and a requestAnimationFrame probe that records the gaps between
  two frames (a frame the page could not paint: what a student sees as a frozen tab).

Why the tests assert counts and not speed: how long a render takes depends on the machine, so a
bound on it would fail on a slow CI machine and pass a real regression on a fast one. How many
updates the kernel sends per second does not: it is the widget's own rate limit, the same on any
machine, and it is what keeps the page responsive (the unthrottled ping meter froze the page for
5.3 s). The stalls (longest main-thread task, longest gap between two frames) are measured and
printed, never asserted (`stalls`).
"""

from __future__ import annotations

UPDATES_PER_S = 10
"""The rate limit the widgets promise (labkit.widgets.REFRESH_S = 0.1 s): per widget, per second.
Counted by the kernel's send time (`header.date`, in ms) in any window of 1,000 ms, which can hold
one more than ten updates 100 ms apart: the tests allow UPDATES_PER_S + 1."""

INSTALL = """() => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const probe = {updates: [], longtasks: [], gaps: [], running: true};
  window.labkitProbe = probe;
  const onMessage = (_, args) => {
    const msg = args.msg;
    if (args.direction === 'recv' && msg.header && msg.header.msg_type === 'comm_msg') {
      const data = msg.content.data || {};
      probe.updates.push([performance.now(), msg.content.comm_id, data.method || '',
                          Date.parse(msg.header.date), Object.keys(data.state || {}).join(',')]);
    }
  };
  kernel.anyMessage.connect(onMessage);
  probe.disconnect = () => kernel.anyMessage.disconnect(onMessage);
  try {
    const observer = new PerformanceObserver(list => {
      for (const e of list.getEntries()) probe.longtasks.push([e.startTime, e.duration]);
    });
    observer.observe({type: 'longtask', buffered: false});
    probe.observer = observer;
  } catch (e) { probe.longtaskError = String(e); }
  let last = performance.now();
  const frame = now => {
    probe.gaps.push([last, now - last]);
    last = now;
    if (probe.running) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  return true;
}"""

READ = """() => {
  const p = window.labkitProbe;
  p.running = false;
  p.disconnect();
  if (p.observer) p.observer.disconnect();
  return {updates: p.updates, longtasks: p.longtasks, gaps: p.gaps,
          longtaskError: p.longtaskError || null};
}"""


def install(page) -> None:
    page.evaluate(INSTALL)


def read(page) -> dict:
    """What the probes saw: per-comm update counts, the most updates any comm received within
    one second (by the kernel's send time, so a page that stalls and then takes a burst of queued
    messages at once does not make the kernel's rate look higher), long tasks, the longest frame
    gap, and the raw records ("raw")."""
    raw = page.evaluate(READ)
    by_comm: dict[str, list[float]] = {}
    for _t, comm, method, sent, _keys in raw["updates"]:
        if method in ("update", "custom", ""):
            by_comm.setdefault(comm, []).append(sent)
    return {
        "updates_per_comm": {c: len(ts) for c, ts in by_comm.items()},
        "max_per_second": max((busiest_second(ts) for ts in by_comm.values()), default=0),
        "longtasks_ms": [d for _, d in raw["longtasks"]],
        "longest_task_ms": max((d for _, d in raw["longtasks"]), default=0.0),
        "longest_frame_gap_ms": max((g for _, g in raw["gaps"]), default=0.0),
        "frames": len(raw["gaps"]),
        "longtask_error": raw["longtaskError"],
        "raw": raw,
    }


def busiest_second(times_ms: list[float]) -> int:
    """The most of `times_ms` that fall within any window of 1,000 ms."""
    times = sorted(times_ms)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1000.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def stalls(seen: dict) -> str:
    """The stall figures of `read()`, for the test's output (printed, never asserted)."""
    return (f"longest main-thread task {seen['longest_task_ms']:.0f} ms, longest gap between two "
            f"frames {seen['longest_frame_gap_ms']:.0f} ms (printed, not asserted: machine-dependent)")
