"""Kernels the kit starts itself (the grader's, the book's, the test suite's) talk to their client
over Unix sockets in a private folder (ZeroMQ's `ipc` transport) where the system has them.

Why: over TCP, jupyter_client picks the kernel's five ports by binding port 0 and letting go, and
the kernel binds them a moment later. Any connection opened on the machine in between may be given
one of them as its own port, and the kernel dies with "Address already in use" (a test run with
four workers, thousands of loopback connections among them, saw it). Socket files in a folder only
this user can open have no such race, and no other user can connect to them. Windows has no
`ipc`: TCP there. (Kernels that JupyterLab or JupyterHub start are theirs, on TCP.)
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager

IPC = os.name == "posix"
_folder: str | None = None


def _ipc(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with the ipc transport and a socket-file prefix of its own (on POSIX)."""
    global _folder
    if not IPC:
        return kwargs
    if kwargs.setdefault("transport", "ipc") != "ipc":
        return kwargs
    if _folder is None:  # one folder (mode 700) per process, removed when the process ends
        # A socket's path has at most 104 bytes (macOS; 108 on Linux): a long $TMPDIR is skipped.
        short = len(tempfile.gettempdir()) > 60 and os.path.isdir("/tmp")
        _folder = tempfile.mkdtemp(prefix="labkit-kernels-", dir="/tmp" if short else None)
        atexit.register(shutil.rmtree, _folder, ignore_errors=True)
    kwargs.setdefault("ip", os.path.join(_folder, uuid.uuid4().hex[:12]))
    return kwargs


class IpcKernelManager(KernelManager):
    """jupyter_client's KernelManager on the ipc transport (see the module's docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_ipc(kwargs))


class AsyncIpcKernelManager(AsyncKernelManager):
    """The async one, for nbclient's `NotebookClient(kernel_manager_class=...)`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_ipc(kwargs))


def start_kernel(kernel_name: str = "python3", startup_timeout: float = 60,
                 **kwargs: Any) -> tuple[KernelManager, BlockingKernelClient]:
    """jupyter_client's `start_new_kernel` on an IpcKernelManager: the kernel started with
    `kwargs` (env, cwd), its client's channels open and the kernel answering."""
    manager = IpcKernelManager(kernel_name=kernel_name)
    manager.start_kernel(**kwargs)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=startup_timeout)
    except RuntimeError:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        raise
    return manager, client
