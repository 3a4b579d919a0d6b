# Solutions to the exercises of 10-beyond-http1.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk, grid, timeline and headers earlier.

# %% exercise 1
# The two totals on 4G without loss at the largest N: HTTP/1.1 pays a round trip per request.
part = grid[(grid.profile == "4g") & (grid.loss == 0.0) & (grid.n == grid.n.max())].set_index("key")
answer = part.loc["h1 sequential", "total_ms"] / part.loc["h2 multiplexed", "total_ms"]
lk.check.h1_vs_h2_ratio(answer, grid)

# %% exercise 2
# HTTP/2 streams more than one round trip over the fastest: those behind a stalled TCP segment.
answer = int((timeline[timeline.protocol == "HTTP/2"].extra_ms > timeline.attrs["rtt_ms"]).sum())
lk.check.h2_streams_held(answer, timeline)

# %% exercise 3
# Every request's header bytes added up per protocol: HTTP/1.1 minus HTTP/2.
sums = headers.groupby("protocol")["total"].sum()
answer = sums["HTTP/1.1"] - sums["HTTP/2 (HPACK)"]
lk.check.hpack_bytes_saved(answer, headers)
