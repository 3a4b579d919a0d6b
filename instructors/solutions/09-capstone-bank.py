# Solutions to the exercises of 09-capstone-bank.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, lab, bank, telemetry and reads.

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
per = reads.set_index("way")["bytes_per_read"]
answer = "REST" if per["REST with cache (304)"] < per["REST over WebSocket"] else "WebSocket"
lk.check.statement_transport(answer, reads)
