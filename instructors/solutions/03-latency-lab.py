# Solutions to the exercises of 03-latency-lab.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, lab, mine, g4 and loop earlier.

# %% exercise 1
# A new connection pays the TCP handshake (one round trip) before the request's own round trip.
answer = 2 * lk.netem.profile("intercontinental").rtt_ms
lk.check.new_connection_prediction(answer, lab, profile="intercontinental")

# %% exercise 2
# Total time for N messages (set-up + N x per message): the first N where the WebSocket is ahead.
t = lk.latency.exchange_totals(g4, messages=range(1, 201))
t = t.pivot(index="messages", columns="transport", values="total_ms")
answer = int((t["websocket"] < t["rest-new"]).idxmax())
lk.check.websocket_break_even(answer, g4)

# %% exercise 3
# Per echo, keep-alive REST minus WebSocket (the HTTP headers), times 100; minus the WebSocket's
# opening handshake (request + 101), measured through a tap: the run does not contain it.
tap = lk.tap(mine)  # the lab `loop` was measured on (your own, also on a class server)
tap.reset()
probe = lk.websocket(tap.url("ws"), "/ws/echo")
handshake = int(tap.settle().http_messages()["wire_bytes"].sum())
probe.close()
per_echo = (loop.bytes_up + loop.bytes_down).groupby(loop.transport).median()
answer = 100 * (per_echo["rest-keepalive"] - per_echo["websocket"]) - handshake
lk.check.websocket_bytes_saved(answer, loop)

# %% exercise 4
# The client waits for each answer before the next request on a connection (it does not
# pipeline, like browsers). 30 requests over 3 connections = 10 rounds, each one round trip of 4G.
answer = 30 / 3 * lk.netem.profile("4g").rtt_ms
lk.check.parallel_prediction(answer, lab, messages=30, connections=3)
