# Solutions to the exercises of 06-scaling.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, alone, memory_off, series.

# %% exercise 1
# The member on worker 2 received only its own worker's messages: sent by all minus received.
row = alone[alone["worker"] == 2]
answer = int((row["sent_by_all"] - row["received"]).sum())
lk.check.missed_on_worker_2(answer, alone)

# %% exercise 2
# The slope of RSS against connections (not total RSS / connections: the empty worker has a base).
answer = lk.scaling.kib_per_connection(memory_off)
lk.check.idle_connection_kib(answer, memory_off)

# %% exercise 3
# The rows of the one keep-alive connection all name the same worker.
answer = int(series[series["connection"] == "one keep-alive"]["worker"].iloc[0])
lk.check.keepalive_worker(answer, series)
