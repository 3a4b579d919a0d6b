# Solutions to the exercises of 02-websocket-push.ipynb, one "# %%" section per exercise cell
# (the first is the "Your turn" cell in the handshake section, then exercises 1-3).
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, base64, hashlib, wire, tap,
# fresh_key and GUID earlier.

# %% your turn: Sec-WebSocket-Accept
# base64(SHA-1(key + the fixed GUID)): the raw 20-byte digest, not its hex text.
my_accept = base64.b64encode(hashlib.sha1((fresh_key + GUID).encode()).digest()).decode()
lk.check.websocket_accept(fresh_key, my_accept)

# %% exercise 1
# 300 > 125 needs the 16-bit extended length (2 + 2 bytes), plus the 4-byte mask of a client frame.
my_header_bytes = 2 + 2 + 4
lk.check.frame_header_bytes(300, masked=True, answer=my_header_bytes)

# %% exercise 2
# Invalid UTF-8 in a text message is "invalid frame payload data"; the lab's close frame confirms it.
tried = wire.send_frames(tap.url(), "/ws/echo", [("text", b"\xff", True)])
print("the lab closed with", tried["close_code"])
my_code = tried["close_code"]
lk.check.close_code("invalid_utf8", my_code)

# %% exercise 3
# Measure both echoes with a 64-byte payload through the tap, both directions each.
big = b"x" * 64
api.post("/api/echo", data=big)
tap.settle().reset()
api.post("/api/echo", data=big)
rest_64 = tap.settle().bytes_up + tap.bytes_down
tap.reset()
ws.echo(big)
ws_64 = tap.settle().bytes_up + tap.bytes_down
my_ratio = rest_64 / ws_64
lk.check.rest_vs_websocket_bytes(my_ratio, payload=b"x" * 64)
