"""The course's exercises, as the kit defines them: the grader scores these, never what a submitted
notebook happens to contain.

Each exercise has a stable id ("03.2": lesson 03, second exercise), the checker that judges it, its
points, and the ids of its two cells in the lesson as shipped: the code cell where the student
answers (`cell`) and the markdown cell that asks (`prompt`). A verdict counts for an exercise only
when it was given while the grader ran that exercise's own cell: an extra cell that calls a checker
earns nothing, and a deleted exercise cell scores 0. `derive()` computes this table from a lesson
notebook; tests/test_grade.py checks that the table and notebooks/ agree, so a lesson cannot
change its exercises without this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHECKER_CALL = re.compile(r"\blk\.check\.(\w+)\(")


@dataclass(frozen=True)
class Exercise:
    id: str
    checker: str
    cell: str
    """Cell id (nbformat 4.5) of the exercise's code cell in the lesson as shipped."""
    prompt: str
    """Cell id of the markdown cell right above it (where the exercise is asked)."""
    points: int = 1


EXERCISES: dict[str, tuple[Exercise, ...]] = {
    "00": (
        Exercise("00.1", "unknown_route_status", cell="8e564f6f", prompt="36d45210"),
        Exercise("00.2", "sized_reply", cell="74276058", prompt="940bed2d"),
        Exercise("00.3", "binary_echo", cell="470e5e45", prompt="27b5e1d2"),
    ),
    "01": (
        Exercise("01.1", "conditional_get", cell="8909a6f4", prompt="57fedd24"),
        Exercise("01.2", "second_conditional_put", cell="3ff0b9f8", prompt="84a382a9"),
        Exercise("01.3", "recovered_from_412", cell="6fc623f5", prompt="ac32a5ae"),
    ),
    "02": (
        Exercise("02.1", "websocket_accept", cell="89ed99ec", prompt="3d0f71c2"),
        Exercise("02.2", "frame_header_bytes", cell="03aed80f", prompt="5bea0e91"),
        Exercise("02.3", "close_code", cell="ab6e4746", prompt="4748e35f"),
        Exercise("02.4", "rest_vs_websocket_bytes", cell="6da6ef66", prompt="168da426"),
    ),
    "03": (
        Exercise("03.1", "new_connection_prediction", cell="20f6f5cf", prompt="709e90f9"),
        Exercise("03.2", "websocket_break_even", cell="4ccc2090", prompt="88117a1b"),
        Exercise("03.3", "websocket_bytes_saved", cell="a64e09f7", prompt="7a8fd88f"),
        Exercise("03.4", "parallel_prediction", cell="930d7fe5", prompt="90048924"),
    ),
    "04": (
        Exercise("04.1", "poll_staleness", cell="d8b89c05", prompt="a43c500e"),
        Exercise("04.2", "poll_requests_per_event", cell="9f4feb66", prompt="a4d76bac"),
        Exercise("04.3", "long_poll_empty_answers", cell="ac624e9b", prompt="3b31846e"),
    ),
    "05": (
        Exercise("05.1", "poller_median_delay", cell="3ee123a5", prompt="d9651ef6"),
        Exercise("05.2", "empty_message_status", cell="a619642e", prompt="2fdd4364"),
    ),
    "06": (
        Exercise("06.1", "missed_on_worker_2", cell="df81264a", prompt="8ffe3700"),
        Exercise("06.2", "idle_connection_kib", cell="62a742d7", prompt="f2973afc"),
        Exercise("06.3", "keepalive_worker", cell="981bd168", prompt="4b43722e"),
    ),
    "07": (
        Exercise("07.1", "backoff_ceiling", cell="c2e225a4", prompt="a0d15b9e"),
        Exercise("07.2", "notes_after_retries", cell="988b4eec", prompt="df826e4c"),
        Exercise("07.3", "lost_at_most_once", cell="3c323854", prompt="e991080d"),
    ),
    "08": (
        Exercise("08.1", "move_out_of_turn_status", cell="406228fb", prompt="1f3c1e64"),
        Exercise("08.2", "cursor_messages_per_second", cell="b97ebe36", prompt="76d43fde"),
        Exercise("08.3", "optimistic_wrong_seat", cell="f1c22fa8", prompt="96f3e5a7"),
    ),
    "09": (
        Exercise("09.1", "keyed_retries", cell="d825fbf1", prompt="e5269621"),
        Exercise("09.2", "overdraft_status", cell="329797be", prompt="06d3366d"),
        Exercise("09.3", "telemetry_ratio", cell="b8f3f8ac", prompt="f64bcc5b"),
        Exercise("09.4", "big_note_bytes", cell="d676d36c", prompt="dec352ed"),
    ),
    "10": (
        Exercise("10.1", "h1_vs_h2_ratio", cell="4204ed75", prompt="fc6d9181"),
        Exercise("10.2", "h2_streams_held", cell="83a302c2", prompt="db31a119"),
        Exercise("10.3", "hpack_bytes_saved", cell="fb635742", prompt="1318d2cc"),
    ),
}


def derive(notebook: dict, lesson: str) -> tuple[Exercise, ...]:
    """The exercises of a lesson notebook (nbformat JSON as a dict): each checker the code cells
    call, in order, once, with the ids of its cell and of the markdown cell above it."""
    found: list[Exercise] = []
    prompt = ""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            prompt = cell.get("id", "")
            continue
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for name in CHECKER_CALL.findall(source):
            if name not in {e.checker for e in found}:
                found.append(Exercise(f"{lesson}.{len(found) + 1}", name, cell=cell.get("id", ""),
                                      prompt=prompt))
    return tuple(found)
