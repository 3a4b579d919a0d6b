# Solutions to the exercises of 05-chat.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk and lab earlier.

# %% exercise 1
# A message lands at a random moment of the poll interval and waits for the next poll: from 0 to
# a whole interval, so half an interval in the middle (plus a request of about a millisecond).
interval_s = 2.0
answer = interval_s * 1000 / 2
lk.check.poller_median_delay(answer, interval_s=interval_s)

# %% exercise 2
# Send an empty message and read the status the room answers.
answer = lk.rest(lab).post("/api/chat/messages", json={"name": "me", "text": ""}).status
lk.check.empty_message_status(answer, lab)
