# Solutions to the exercises of 04-live-updates.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk earlier.

# %% exercise 1
# An event lands uniformly between two polls, so it waits half an interval on average.
interval_s = 0.8
answer = interval_s * 1000 / 2
lk.check.poll_staleness(answer, interval_s=interval_s)

# %% exercise 2
# A short poller pays for time, not for news: 1 / 0.5 s = 2 requests per second, for 1 event per
# second on average: 2 requests per delivered event.
interval_s, rate_hz = 0.5, 1
answer = (1 / interval_s) / rate_hz
lk.check.poll_requests_per_event(answer, interval_s=interval_s, rate_hz=rate_hz)

# %% exercise 3
# Each held request comes back empty after a full wait: count the whole waits in the quiet time.
wait_s, quiet_s = 2, 9
answer = quiet_s // wait_s
lk.check.long_poll_empty_answers(answer, wait_s=wait_s, quiet_s=quiet_s)
