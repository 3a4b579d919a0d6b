# Solutions to the exercises of 07-reliability.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk and semantics earlier.

# %% exercise 1
# The ceiling is min(cap, base * 2**n) with n = 0 for the first attempt: the 5th attempt has n = 4,
# so 0.2 s * 16 = 3.2 s, under the 5 s cap. Full jitter draws from 0 up to that.
answer = min(5.0, 0.2 * 2 ** (5 - 1))
lk.check.backoff_ceiling(answer, base_s=0.2, cap_s=5.0, attempt=5)

# %% exercise 2
# With one key the server runs the POST once and replays its answer to the two retries.
answer = 1
lk.check.notes_after_retries(answer, posts=3, with_key=True)

# %% exercise 3
# Lost = the published SEQs the reader never delivered (each SEQ counted once).
published = set(range(semantics.attrs["first_seq"], semantics.attrs["last_seq"] + 1))
answer = len(published - set(semantics.attrs["delivered"]["at_most_once"]))
lk.check.lost_at_most_once(answer, semantics)
