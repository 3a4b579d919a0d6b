# `make lab` and `make test` set up .venv first when pyproject.toml changed, then do their job.
# `make lab` installs only what the lessons need (`.[lab]`); `make test` adds the test tools
# (`.[lab,test]`). Each has its own stamp, so switching between them installs only what is missing.
# Without make (e.g. on Windows): `python -m labkit lab` / `python -m labkit test` do the same.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAB_STAMP := $(VENV)/.installed-lab
LOCK_FILE := requirements/lab-lock.txt
LOCK_STAMP := $(VENV)/.installed-lock
TEST_STAMP := $(VENV)/.installed-test
CHECK_PYTHON := @$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labkit needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'

.PHONY: lab test lint bench doctor clean book lock

$(BIN)/python:
	$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The long step shows pip's progress (no --quiet), so the first minutes do not look hung.
$(LAB_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[lab]'
	touch $(LAB_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[lab,test]'
	touch $(LAB_STAMP) $(TEST_STAMP)

# `make lab LOCK=1`: the exact versions of requirements/lab-lock.txt (one set for a whole term).
$(LOCK_STAMP): $(LOCK_FILE) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -r $(LOCK_FILE)
	$(BIN)/python -m pip install --no-deps -e .
	touch $(LOCK_STAMP)

lab: $(if $(LOCK),$(LOCK_STAMP),$(LAB_STAMP))
	$(BIN)/jupyter lab --ip=127.0.0.1 --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

test: $(TEST_STAMP)
	$(BIN)/ruff check labkit tests benchmarks notebooks
	$(BIN)/mypy labkit
	$(BIN)/python -m pytest -n 4 --dist loadgroup --durations=25

bench: $(LAB_STAMP)
	$(BIN)/python benchmarks/echo_floor.py

doctor: $(LAB_STAMP)
	$(BIN)/labkit doctor

# every lesson run in normal mode (cached in build/book-cache) and rendered with its outputs, plus
# the instructor guide; it needs the lab install and nbclient (the `grade` extra), not the test tools
BOOK_STAMP := $(VENV)/.installed-book
$(BOOK_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[lab,grade]'
	touch $(LAB_STAMP) $(BOOK_STAMP)

book: $(BOOK_STAMP)
	$(BIN)/python -m labkit.course.book --out build/book

# re-resolve the term's lock file in a throw-away venv (needs the package index)
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet --upgrade pip
	build/lock-venv/bin/python -m pip install --quiet '.[lab]'
	{ sed -n '1,3p' $(LOCK_FILE); build/lock-venv/bin/python -m pip freeze | grep -v '^labkit-lessons'; } > $(LOCK_FILE).new
	mv $(LOCK_FILE).new $(LOCK_FILE)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
