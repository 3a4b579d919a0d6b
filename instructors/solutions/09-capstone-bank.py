# Solutions to the exercises of 09-capstone-bank.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, lab, bank, iot, rest_ws and telemetry.

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
# One reading per device: the WebSocket's handshake and close are paid by that one reading, so a
# lone POST costs fewer bytes (a ratio below 1). Measure both ways with one reading each.
one = {mode: iot.telemetry(lab, mode, devices=10, readings=1)["bytes_per_reading"] for mode in ("rest", "ws")}
answer = one["rest"] / one["ws"]
lk.check.telemetry_ratio(answer, lab, telemetry)

# %% exercise 4
# Measure it: every read over the WebSocket carries the whole 20,000-character note.
big = rest_ws.compare_reads(lab, note_bytes=20_000, reads=3).set_index("way")["bytes_per_read"]
answer = big["REST over WebSocket"]
lk.check.big_note_bytes(answer, lab)
