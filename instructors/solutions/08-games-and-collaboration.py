# Solutions to the exercises of 08-games-and-collaboration.ipynb, one "# %%" section per exercise cell.
# ruff: noqa: F821 - each section runs inside the lesson, which defines lk and lab earlier.

# %% exercise 1
# Create a game, take both seats over REST, then let O move first: the request is well formed and
# the token is right, but it clashes with the state the server holds (X plays first): 409.
api = lk.rest(lab)
game = lk.game.create_game(lab, lk.game.new_game_id("solution"))  # PUT /api/games/{game}
api.post(f"/api/games/{game}/seats", json={"name": "x"})
o = api.post(f"/api/games/{game}/seats", json={"name": "o"}).json()
move = {"seat": o["seat"], "token": o["token"], "column": 0}
answer = api.post(f"/api/games/{game}/moves", json=move).status
lk.check.move_out_of_turn_status(answer, lab)

# %% exercise 2
# The server relays each cursor to everyone else, not back to its sender: 4 others x 20 per second.
answer = (5 - 1) * 20
lk.check.cursor_messages_per_second(answer, participants=5, tick_hz=20, target=lab)

# %% exercise 3
# X's move is valid in either order; O's is refused (first) or lands a row higher (second).
answer = "O"
lk.check.optimistic_wrong_seat(answer, lab)
