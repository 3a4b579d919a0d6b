# Solutions to the exercises of 04-live-updates.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk and run earlier.

# %% exercise 1
# An event lands uniformly between two polls, so it waits half an interval on average.
interval_s = 0.5
answer = interval_s * 1000 / 2
lk.check.poll_staleness(answer, interval_s=interval_s)

# %% exercise 2
# Requests the short poller made divided by the events it delivered, from the run's summary.
row = run.summary.set_index("transport").loc["short poll"]
answer = row["requests"] / row["events"]
lk.check.requests_per_event(answer, run.summary, "short poll")

# %% exercise 3
# Each held request comes back empty after a full wait: count the whole waits in the quiet time.
wait_s, quiet_s = 2, 9
answer = quiet_s // wait_s
lk.check.long_poll_empty_answers(answer, wait_s=wait_s, quiet_s=quiet_s)
