"""`python -m labkit lab` / `python -m labkit test`: what `make lab` / `make test` do, without make.

Run from the folder of a labkit checkout (Windows: `py -m labkit lab`). Like the Makefile it keeps
its own environment in `.venv`: created when missing, installed again when pyproject.toml changed
(stamp files `.venv/.installed-lab` and `.venv/.installed-test`, shared with the Makefile), then:

- `lab`: JupyterLab on 127.0.0.1 with the lessons folder open (students need only this);
- `test`: ruff and the test suite (installs the test tools as well).

Extra arguments go to JupyterLab or pytest. Any other command (`serve`, `doctor`, `bench`...) is the
`labkit` command itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
EXTRAS = {"lab": "lab", "test": "lab,test"}
"""What each command installs: `lab` only what the lessons need, `test` the test tools too."""


def venv_python(folder: Path | None = None) -> Path:
    return (folder or VENV) / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def is_checkout() -> bool:
    return (ROOT / "pyproject.toml").is_file() and (ROOT / "notebooks").is_dir()


def ensure_installed(command: str) -> Path:
    """Create .venv and `pip install -e .[extras]` when it is missing or older than pyproject.toml."""
    python, stamp = venv_python(), VENV / f".installed-{command}"
    fresh = stamp.exists() and stamp.stat().st_mtime >= (ROOT / "pyproject.toml").stat().st_mtime
    if python.exists() and fresh:
        return python
    if sys.version_info < (3, 11):  # noqa: UP036 - this may run under an older python
        raise SystemExit("labkit needs Python 3.11 or newer: run this with a newer python.")
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(python), "-m", "pip", "install"]
    subprocess.run([*pip, "--quiet", "--upgrade", "pip"], check=True)
    print(f"installing labkit[{EXTRAS[command]}] into {VENV} (a few minutes the first time) ...",
          flush=True)
    subprocess.run([*pip, "-e", f".[{EXTRAS[command]}]"], check=True, cwd=ROOT)  # pip shows progress
    stamp.touch()
    return python


def lab_command(python: Path, extra: list[str]) -> list[str]:
    command = [str(python), "-m", "jupyterlab", "--ip=127.0.0.1",
               f"--ServerApp.root_dir={ROOT / 'notebooks'}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to run as root without it
    return command + extra


def test_commands(python: Path, extra: list[str]) -> list[list[str]]:
    """What `make test` runs: ruff, mypy, then pytest on four workers (the serial group on one of
    them; four on a 2-core machine because the suite mostly waits: kernels, timeouts, emulated
    links)."""
    return [[str(python), "-m", "ruff", "check", "labkit", "tests", "benchmarks", "notebooks"],
            [str(python), "-m", "mypy", "labkit"],
            [str(python), "-m", "pytest", "-n", "4", "--dist", "loadgroup", "--durations=25", *extra]]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in EXTRAS:
        from .cli import main as cli_main

        return cli_main(argv)
    command, extra = argv[0], argv[1:]
    if not is_checkout():
        raise SystemExit(f"`python -m labkit {command}` runs from a labkit checkout (the folder with "
                         "pyproject.toml and notebooks/).")
    python = ensure_installed(command)
    if command == "lab":
        return subprocess.call(lab_command(python, extra), cwd=ROOT)
    for step in test_commands(python, extra):
        if code := subprocess.call(step, cwd=ROOT):
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
