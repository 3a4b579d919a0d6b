"""Full duplex over an emulated link: ticks arrive while an upload is still going on one WebSocket;
over HTTP/1.1 the response starts only after the request has ended. Order, never durations."""

from __future__ import annotations

from labkit.lessons.duplex import upload_during_push


def test_the_server_pushes_during_a_websocket_upload_and_http_waits(lab):
    lines = []
    run = upload_during_push(lab, "4g", upload_bytes=200_000, progress=lines.append)
    events = run.events
    ws = events[events["protocol"] == "WebSocket"]
    chunks = ws[ws["what"] == "upload chunk"]
    assert chunks["bytes"].sum() > 200_000  # payload plus frame headers
    ticks = ws[ws["what"] == "tick"]
    inside = ticks["t_ms"].between(chunks["t_ms"].min(), chunks["t_end_ms"].max())
    assert inside.any(), "no tick was sent while the upload was arriving"
    assert run.summary["ticks_during_upload"] == int(inside.sum())
    http = events[events["protocol"] == "HTTP/1.1"].set_index("what")
    assert http.loc["response (echo)", "t_ms"] >= http.loc["POST request (upload)", "t_end_ms"]
    assert len(ws[ws["what"] == "ack"]) == len(chunks)
    assert len(lines) == 3 and lines[-1].startswith("done")
