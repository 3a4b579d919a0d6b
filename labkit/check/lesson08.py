"""Checkers for lesson 08 (a multiplayer game and live collaboration)."""

from __future__ import annotations

from ._core import Feedback, as_number, close_to, exercise, verdict

__all__ = ["move_out_of_turn_status", "cursor_messages_per_second", "optimistic_wrong_seat"]


@exercise("a move out of turn", how="POST a move for the seat that is not to play and read the status.")
def move_out_of_turn_status(answer, target) -> Feedback:
    """The status the game answers to a REST move made out of turn: checked by making one."""
    import uuid

    from labkit.clients.rest import RestClient

    name = "a move out of turn"
    game = f"check-{uuid.uuid4().hex[:10]}"
    with RestClient(target) as api:
        api.put(f"/api/games/{game}")  # a game exists once created
        api.post(f"/api/games/{game}/seats", json={"name": "x"})
        o = api.post(f"/api/games/{game}/seats", json={"name": "o"}).json()
        status = api.post(f"/api/games/{game}/moves",
                          json={"seat": o["seat"], "token": o["token"], "column": 0}).status
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give the status code as a number (make such a move and look).", name)
    return verdict(value == status,
                   f"Right: {status} Conflict: the request is well formed and yours, but it clashes "
                   "with the state the server holds (X plays first). Nothing changed on the board.",
                   "Create a game (PUT /api/games/ID), take a seat as O and POST a move before X "
                   "has played; read the status.",
                   name, then="It is not 400 (the JSON is fine), 403 (the token is right) or 422 (the "
                   "column is valid): which status says the request conflicts with the current state?")


@exercise("cursor messages per second", how="Predict a number of messages per second.")
def cursor_messages_per_second(answer, participants: int = 5, tick_hz: float = 20, target=None) -> Feedback:
    """Cursor messages each participant receives per second when `participants` all move their
    cursor `tick_hz` times a second (the server relays each cursor to everyone else). Accepted:
    the nominal rate, or (with `target`, a lab) what the lab's Python participants achieved, which
    the checker measures."""
    name = "cursor messages per second"
    value = as_number(answer)
    if value is None:
        return verdict(False, "", "Give a number of messages per second.", name)
    expected = (participants - 1) * tick_hz
    measured = None
    if target is not None:
        from labkit.clients.game import cursor_bandwidth

        row = cursor_bandwidth(target, (tick_hz,), participants=participants, seconds=1.0).iloc[0]
        measured = float(row["messages_in_per_s"])
    right = close_to(value, expected, rel=0.1) or (measured is not None
                                                   and close_to(value, measured, rel=0.1))
    lab_says = (f" The lab's Python participants just achieved {measured:.1f}/s against the nominal "
                f"{expected:g}/s." if measured is not None else "")
    return verdict(right,
                   f"Yes: {participants - 1} others × {tick_hz:g} updates/s = {expected:g} messages/s "
                   f"coming in; it grows with the room, which is why busy rooms lower the tick rate "
                   f"or batch cursors.{lab_says}",
                   "Who sends you cursor updates? Not you (the server does not echo yours back).",
                   name, then="Count the others in the room, and how often each one sends.")


@exercise("whose optimistic disc can be wrong", how='Answer "X", "O", "both" or "neither".')
def optimistic_wrong_seat(answer, target=None, trials: int = 6) -> Feedback:
    """Both players click the same column at the same instant while it is X's turn, each drawing its
    own disc at once: whose drawing can be wrong? With `target` (a lab) the checker runs the race
    `trials` times (`lk.game.optimistic_race`) and takes the answer from what happened; without,
    from the rules (X's move is valid in either order)."""
    name = "whose optimistic disc can be wrong"
    value = str(answer).strip().lower()
    if value not in ("x", "o", "both", "neither"):
        return verdict(False, "", 'Answer one of "X", "O", "both", "neither".', name)
    expected, seen = "o", ""
    if target is not None:
        from labkit.clients.game import optimistic_race

        race = optimistic_race(target, trials=trials)
        wrong = sorted(set(race.loc[race.outcome != "as shown", "seat"]))
        expected = {0: "neither", 1: wrong[0].lower() if wrong else "", 2: "both"}[len(wrong)]
        counts = race.groupby("seat").outcome.value_counts().to_dict()
        seen = f" The checker just raced {trials} times: {counts}."
    why = ("X's move is valid whenever it arrives, so its drawing always stands. O's is refused if "
           "it arrives first (not O's turn) and lands one row higher if it arrives second: O's "
           "screen was wrong until the server's answer came back." if expected == "o" else
           "That is what the server's order made of the two drawings in this run.")
    return verdict(value == expected, f"Right: {why}{seen}",
                   "Whose turn was it? Which of the two moves can the server accept in either order?",
                   name, then="Play it through: the server takes one move, then judges the other "
                   "against the board the first one made. Whose drawing can that contradict?")
