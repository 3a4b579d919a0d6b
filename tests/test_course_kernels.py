"""The kernels the kit starts itself (grader, book, this suite) talk over Unix socket files in a
private folder, so no other connection can take their ports while they start. A real kernel."""

from __future__ import annotations

import os
import stat

import nbformat
import pytest
from nbclient import NotebookClient

from labkit.course.kernels import IPC, AsyncIpcKernelManager, start_kernel

pytestmark = [pytest.mark.notebook,
              pytest.mark.skipif(not IPC, reason="ZeroMQ's ipc transport needs Unix sockets")]


def test_a_started_kernel_answers_over_socket_files_only_its_user_can_open():
    seen: list = []
    manager, client = start_kernel()
    try:
        info = manager.get_connection_info()
        assert info["transport"] == "ipc"
        folder = os.path.dirname(manager.ip)
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        files = sorted(os.listdir(folder))
        ports = sorted(info[f"{name}_port"] for name in ("shell", "iopub", "stdin", "hb", "control"))
        prefix = os.path.basename(manager.ip)
        assert {f"{prefix}-{port}" for port in ports} <= set(files)
        assert all(stat.S_ISSOCK(os.stat(os.path.join(folder, f"{prefix}-{p}")).st_mode) for p in ports)
        reply = client.execute_interactive("print(6 * 7)", timeout=30,
                                           output_hook=lambda msg: seen.append(msg))
        assert reply["content"]["status"] == "ok"
        assert [m["content"]["text"] for m in seen if m["msg_type"] == "stream"] == ["42\n"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert not [f for f in os.listdir(folder) if f.startswith(prefix)]  # its socket files are gone


def test_nbclient_runs_a_notebook_on_the_ipc_manager():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)")])
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   kernel_manager_class=AsyncIpcKernelManager).execute()
    assert nb.cells[0].outputs[0]["text"] == "ipc\n"  # what the kernel itself was told
