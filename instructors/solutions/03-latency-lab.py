# Solutions to the exercises of 03-latency-lab.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, g4 and loop earlier.

# %% exercise 1
# A new connection pays the TCP handshake on top of the request: compare the two REST medians.
medians = g4.groupby("transport").rtt_ms.median()
answer = round(medians["rest-new"] / medians["rest-keepalive"])
lk.check.new_connection_round_trips(answer, g4)

# %% exercise 2
# Total time for N messages (set-up + N x per message): the first N where the WebSocket is ahead.
t = lk.latency.exchange_totals(g4, messages=range(1, 21))
t = t.pivot(index="messages", columns="transport", values="total_ms")
answer = int((t["websocket"] < t["rest-new"]).idxmax())
lk.check.websocket_break_even(answer, g4)

# %% exercise 3
# Median wire bytes (up + down) per round trip: keep-alive REST minus WebSocket = the HTTP headers.
wire_bytes = (loop.bytes_up + loop.bytes_down).groupby(loop.transport).median()
answer = wire_bytes["rest-keepalive"] - wire_bytes["websocket"]
lk.check.header_bytes_saved(answer, loop)
