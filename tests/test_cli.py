"""`labkit serve` and `labkit doctor` as a user runs them."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request

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


def test_doctor_fails_when_a_widget_front_end_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "installed_lab_extensions", lambda: {"anywidget"})
    assert doctor.run_doctor() == 1
    assert "jupyterlab-manager is missing" in capsys.readouterr().out
