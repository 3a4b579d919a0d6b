"""Game benchmark: a move's delay to the other player, WebSocket vs REST polling, side by side.

    .venv/bin/python benchmarks/game_delay.py [--moves 120] [--polls 50,250,1000] [--profile loopback]

Two Python players play Connect Four on the lab (lk.game.compare_game_transports): the delay of a
move is the time from one player sending it to the other player holding the new board. Each player
thinks a random time up to the longest poll interval before each move, the same pace for every
transport (so each move falls at a uniformly random point of the pollers' intervals). The transports'
games are played at the same time, each pair in its own game (their delays are waits on the network
and the poll timers, a few messages a second per pair). Printed per transport:
n, median, p99 (n >= 100) or max, requests/s and bytes/s per player, bytes per move, and the ratio of
each polling median to the WebSocket median measured in the same run; through a netem profile, also
the pushed move's floor: two one-way trips (mover -> server -> other player). Numbers only, never
pass/fail.
"""

from __future__ import annotations

import argparse

import labkit as lk
from labkit.clients.game import compare_game_transports, push_delay_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=120)
    parser.add_argument("--polls", default="50,250,1000", help="poll intervals in ms, comma separated")
    parser.add_argument("--profile", default="loopback", help="a netem profile, or loopback")
    args = parser.parse_args()
    polls = tuple(float(p) for p in args.polls.split(","))
    with lk.LabServer() as lab:
        if args.profile == "loopback":
            frame = compare_game_transports(lab, polls, moves=args.moves, label="loopback")
        else:
            with lk.NetemProxy.for_lab(lab, args.profile) as net:
                frame = compare_game_transports(net.url(), polls, moves=args.moves, label=args.profile)
    ws_median = frame[frame.transport == "WebSocket"].delay_ms.median()
    print(f"profile {args.profile}, {args.moves} moves per transport")
    if args.profile != "loopback":
        floor = push_delay_model(args.profile)
        print(f"pushed move's floor: {floor['up_ms']:g} ms up + {floor['down_ms']:g} ms down = "
              f"{floor['floor_ms']:g} ms")
    for transport, part in frame.groupby("transport", sort=False):
        d = part.delay_ms
        tail = f"p99 {d.quantile(0.99):8.2f}" if len(d) >= 100 else f"max {d.max():8.2f}"
        first = part.iloc[0]
        print(f"{transport:>20}: n {len(d):4d}  median {d.median():8.2f} ms  {tail} ms  "
              f"x{d.median() / ws_median:7.1f} of WebSocket  {first.requests_per_s:6.2f} req/s  "
              f"{first.bytes_per_s / 1000:6.2f} kB/s  {first.bytes_per_move:7.0f} B/move")


if __name__ == "__main__":
    main()
