# Solutions to the exercises of 02-websocket-push.ipynb, one "# %%" section per exercise cell
# (the first is the "Your turn" cell in the handshake section, then exercises 1-4).
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, base64, hashlib, tap,
# request, ws, closes, rest_bytes and ws_bytes earlier.

# %% your turn: Sec-WebSocket-Accept
# base64(SHA-1(key + the fixed GUID)), with the key read from the handshake the tap recorded.
headers = dict(line.split(": ", 1) for line in request.strip().split("\r\n")[1:])
key = headers["Sec-WebSocket-Key"]
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
my_accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
lk.check.websocket_accept(key, my_accept)

# %% exercise 1
# Open a second connection through the tap, read its fresh key, and compute the accept the same way.
tap.reset()
lk.websocket(tap.url("ws"), "/ws/echo").close()
req, _ = tap.handshake()
key2 = dict(line.split(": ", 1) for line in req.strip().split("\r\n")[1:])["Sec-WebSocket-Key"]
answer = base64.b64encode(hashlib.sha1((key2 + GUID).encode()).digest()).decode()
lk.check.websocket_accept(key2, answer)

# %% exercise 2
# 300 > 125 needs the 16-bit extended length (2 + 2 bytes), plus the 4-byte mask of a client frame;
# the tap measures the real frame to compare.
my_header_bytes = 2 + 2 + 4
tap.reset()
ws.echo(b"y" * 300)
measured = tap.frames().query("direction == 'up' and opcode == 'BINARY'")["header_bytes"].iloc[0]
print("the tap measured", measured, "header bytes")
lk.check.frame_header_bytes(300, masked=True, answer=my_header_bytes)

# %% exercise 3
# The close frame the strict lab sent when the 1025-byte message broke its 1024-byte limit.
answer = int(closes.query("direction == 'down'")["close_code"].iloc[0])
lk.check.close_code("too_big", answer)

# %% exercise 4
# Bytes of one REST echo (request + response) over bytes of one WebSocket echo (frame up + down).
lk.check.rest_vs_websocket_bytes(rest_bytes / ws_bytes)
