"""Write labkit/data/feed-sample.csv: the price series the feed source can replay.

Synthetic, not market data: a seeded random walk of log-returns whose volatility clusters the
way real prices do (a GARCH(1,1) variance recursion), so calm stretches alternate with busy ones.
Standard library only; the same seed gives the same file byte for byte.

    python data/make_feed_sample.py
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

SEED = 20240601
ROWS = 600
START_PRICE = 100.0
OMEGA, ALPHA, BETA = 2e-7, 0.08, 0.90
"""GARCH(1,1): variance_t = OMEGA + ALPHA * return_{t-1}^2 + BETA * variance_{t-1}; long-run
standard deviation of a step sqrt(OMEGA / (1 - ALPHA - BETA)) = 0.32 %."""

OUT = Path(__file__).resolve().parent.parent / "labkit" / "data" / "feed-sample.csv"


def series(seed: int = SEED, rows: int = ROWS) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    variance = OMEGA / (1 - ALPHA - BETA)
    price, last_return, out = START_PRICE, 0.0, []
    for step in range(rows):
        variance = OMEGA + ALPHA * last_return ** 2 + BETA * variance
        last_return = rng.gauss(0.0, math.sqrt(variance))
        price *= math.exp(last_return)
        out.append((step, round(price, 2)))
    return out


def main() -> None:
    with OUT.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["step", "price"])
        writer.writerows(series())
    print(f"wrote {OUT} ({ROWS} rows)")


if __name__ == "__main__":
    main()
