# Solutions to the exercises of 00-start-here.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, api and ws earlier.

# %% exercise 1
# Ask for a path the lab does not have and read the status it answers.
my_status = api.get("/where-is-this").status
lk.check.unknown_route_status(my_status)

# %% exercise 2
# /api/echo answers a GET with exactly ?size=N bytes.
my_reply = api.get("/api/echo?size=1000")
lk.check.sized_reply(my_reply, 1000)

# %% exercise 3
# Send bytes (not a str): they travel in a binary frame and come back as bytes.
my_answer = ws.echo(b"\x00\xff")[0]
lk.check.binary_echo(my_answer)
