"""Run one command (redis-server) as a child that dies with labkit: `python -m labkit.cluster.guard CMD...`.

The parent keeps this process's stdin open; when the parent ends (stop(), kernel exit, or the
kernel killed with SIGKILL: the kernel then closes the pipe) stdin reaches EOF and the guard
stops the child. SIGTERM / SIGINT stop it too. On Linux the child also gets PR_SET_PDEATHSIG, so it
is signalled even if the guard itself is killed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

from .worker import die_with_parent


def main(argv: list[str]) -> int:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: PLW1509

    def stop(*_args) -> None:
        if child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent is gone or asked us to stop
        stop()

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        return child.wait()
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
