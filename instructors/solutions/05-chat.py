# Solutions to the exercises of 05-chat.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, lab, api and frame earlier.

# %% exercise 1
# Median delay per kind of member, from the simulated room: pollers minus WebSocket members.
medians = frame.groupby("receiver_kind")["delay_ms"].median()
answer = medians["REST poll"] - medians["WebSocket"]
lk.check.chat_delay_difference(answer, frame)

# %% exercise 2
# Send an empty message and read the status the room answers.
answer = api.post("/api/chat/messages", json={"name": "me", "text": ""}).status
lk.check.empty_message_status(answer, lab)
