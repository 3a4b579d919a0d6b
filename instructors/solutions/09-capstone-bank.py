# Solutions to the exercises of 09-capstone-bank.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, lab, bank, rest_ws and telemetry.

# %% exercise 1
# The key makes every retry replay the first answer: one payment, however many tries.
answer = bank.retry_after_lost_answer(lab, bank.open_account(lab, "me", 10_000)["id"], with_key=True,
                                      attempts=3)["payments_created"]
lk.check.keyed_retries(answer, lab)

# %% exercise 2
# Pay more than a small account holds and read the status.
poor = bank.open_account(lab, "me", 100)["id"]
answer = lk.rest(lab).post("/api/payments", json={"account": poor, "payee": "x", "amount": 500}).status
lk.check.overdraft_status(answer, lab)

# %% exercise 3
per = telemetry.set_index("mode")["bytes_per_reading"]
answer = per["rest"] / per["ws"]
lk.check.telemetry_ratio(answer, telemetry)

# %% exercise 4
# Measure it: every read over the WebSocket carries the whole 20,000-character note.
big = rest_ws.compare_reads(lab, note_bytes=20_000, reads=3).set_index("way")["bytes_per_read"]
answer = big["REST over WebSocket"]
lk.check.big_note_bytes(answer, lab)
