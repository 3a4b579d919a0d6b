"""`labkit serve` and `labkit doctor` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from labkit import doctor


def _serve(tmp_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "labkit.cli", "serve", "--db", str(tmp_path / "s.db"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_first_and_stops_cleanly(tmp_path, sig):
    proc = _serve(tmp_path)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/healthz", timeout=5) as reply:
            assert json.load(reply) == {"status": "ok"}
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_serve_on_a_port_in_use_says_so(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        proc = _serve(tmp_path, "--port", str(blocker.getsockname()[1]))
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "cannot bind" in err and "--port" in err and "Traceback" not in err


def test_doctor_passes_here():
    out = subprocess.run([sys.executable, "-m", "labkit.cli", "doctor"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "anywidget" in out.stdout and "loopback" in out.stdout and "FAILED" not in out.stdout


def test_doctor_fails_when_a_lesson_package_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "REQUIRED", [*doctor.REQUIRED, "no-such-package-labkit"])
    assert doctor.run_doctor() == 1
    assert "no-such-package-labkit is missing" in capsys.readouterr().out


def test_doctor_is_not_ready_without_the_jupyter_proxy_or_an_installed_labkit(monkeypatch, capsys):
    """It used to print "labkit MISSING" (the distribution is labkit-lessons) and then "Ready", and
    "Ready" without jupyter-server-proxy, which the browser widgets need."""
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda name: None if name in (
        "jupyter-server-proxy", doctor.DISTRIBUTION) else real(name))
    assert doctor.run_doctor() == 1
    out = capsys.readouterr().out
    assert "Ready" not in out.replace("Not ready", "")
    assert "jupyter-server-proxy is missing" in out and "not installed" in out


def test_the_version_is_one_everywhere():
    import tomllib

    import labkit

    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    cited = re.search(r"^version: (\S+)$", (root / "CITATION.cff").read_text(), re.M).group(1)
    logged = re.search(r"^## \[Unreleased\] — (\S+)$", (root / "CHANGELOG.md").read_text(), re.M)
    assert labkit.__version__ == declared == cited == (logged.group(1) if logged else declared)
    if logged:  # not released yet: no release date may be cited
        assert "date-released" not in (root / "CITATION.cff").read_text()


def test_doctor_fails_when_a_widget_front_end_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "installed_lab_extensions", lambda: {"anywidget"})
    assert doctor.run_doctor() == 1
    assert "jupyterlab-manager is missing" in capsys.readouterr().out


# -- temporary data folders ---------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="stale-folder cleanup is POSIX only")
def test_a_killed_serve_leaves_a_folder_that_the_next_start_removes(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # an isolated temporary folder for both runs

    def serve_without_db() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
        return proc

    first = serve_without_db()
    folders = list(tmp_path.glob("labkit-data-serve-*"))
    assert len(folders) == 1 and (folders[0] / "owner.pid").read_text() == str(first.pid)
    first.kill()  # no cleanup runs: the folder stays behind
    first.wait()
    assert folders[0].exists()
    second = serve_without_db()
    try:
        assert not folders[0].exists()  # removed at the next start
        assert [f.name for f in tmp_path.glob("labkit-data-serve-*")] != [folders[0].name]
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    assert not list(tmp_path.glob("labkit-data-serve-*"))  # a clean stop removes its own folder


def test_a_folder_whose_owner_is_alive_is_kept(tmp_path, monkeypatch):
    from labkit.server import runner

    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    alive = runner.make_workdir()
    orphan = tmp_path / "labkit-data-orphan"
    orphan.mkdir()
    (orphan / runner.OWNER_FILE).write_text("999999999")  # no such process
    unmarked = tmp_path / "labkit-data-unmarked"
    unmarked.mkdir()
    other = tmp_path / "labkit-cluster-x"  # another labkit folder: not the cleaner's to read
    other.mkdir()
    (other / runner.OWNER_FILE).write_text("999999999")
    assert runner.clean_stale_workdirs() == [orphan]
    assert alive.exists() and unmarked.exists() and other.exists() and not orphan.exists()


def test_serve_allow_host(tmp_path):
    proc = _serve(tmp_path, "--allow-host", "lab.example")
    try:
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        for host, status in (("lab.example", b"200"), ("evil.example", b"403")):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                assert sock.recv(100).split()[1] == status
    finally:
        proc.kill()
        proc.wait()


# -- python -m labkit (the route without make) ---------------------------------------------------------
def test_python_m_labkit_runs_the_labkit_command():
    out = subprocess.run([sys.executable, "-m", "labkit", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "serve" in out.stdout and "doctor" in out.stdout


def test_lab_and_test_install_only_when_pyproject_changed(tmp_path, monkeypatch):
    import labkit.__main__ as entry

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "notebooks").mkdir()
    venv = tmp_path / ".venv"
    python = entry.venv_python(venv)
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    monkeypatch.setattr(entry, "ROOT", tmp_path)
    monkeypatch.setattr(entry, "VENV", venv)
    ran: list[list[str]] = []
    monkeypatch.setattr(entry.subprocess, "run", lambda cmd, **kw: ran.append([str(c) for c in cmd]))
    monkeypatch.setattr(entry.subprocess, "call", lambda cmd, **kw: ran.append([str(c) for c in cmd]) or 0)

    assert entry.main(["lab", "--no-browser"]) == 0
    installs = [cmd for cmd in ran if "install" in cmd and "-e" in cmd]
    assert installs == [[str(python), "-m", "pip", "install", "-e", ".[lab]"]]  # lessons only
    lab = ran[-1]
    assert lab[1:3] == ["-m", "jupyterlab"] and "--ip=127.0.0.1" in lab and lab[-1] == "--no-browser"
    assert any(arg.endswith("notebooks") for arg in lab)

    ran.clear()
    assert entry.main(["lab"]) == 0  # the stamp is newer than pyproject.toml: no install
    assert not [cmd for cmd in ran if "install" in cmd]

    ran.clear()
    assert entry.main(["test", "-k", "x"]) == 0  # the test tools are another stamp
    assert [cmd for cmd in ran if "-e" in cmd] == [[str(python), "-m", "pip", "install", "-e", ".[lab,test]"]]
    assert ran[-1][1:] == ["-m", "pytest", "-n", "4", "--dist", "loadgroup", "--durations=25", "-k", "x"]


def test_python_m_labkit_lab_outside_a_checkout_says_so(tmp_path, monkeypatch):
    import labkit.__main__ as entry

    monkeypatch.setattr(entry, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="checkout"):
        entry.main(["lab"])


def test_python_m_labkit_test_runs_what_make_test_runs():
    """Windows and machines without make use `python -m labkit test`: the same steps as `make test`."""
    from labkit.__main__ import test_commands

    root = Path(__file__).resolve().parent.parent
    recipe = re.search(r"^test: .*?\n((?:\t.*\n)+)", (root / "Makefile").read_text(), re.M).group(1)
    make_steps = []
    for line in recipe.splitlines():
        words = line.strip().replace("$(BIN)/", "").split()
        make_steps.append(words[2:] if words[:2] == ["python", "-m"] else words)
    ours = [step[2:] for step in test_commands(Path("python"), [])]
    assert ours == make_steps
