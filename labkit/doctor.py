"""`labkit doctor`: print the stack's versions and check what the lessons need on this machine."""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from pathlib import Path

REQUIRED = ["aiohttp", "websockets", "pandas", "plotly", "ipywidgets", "anywidget", "ipykernel"]
"""Packages every lesson imports (anywidget renders plotly's FigureWidget)."""
FRONT_ENDS = ["jupyterlab", "jupyterlab_widgets", "jupyter-server-proxy"]
"""Front-end packages: widgets show in JupyterLab, and the browser clients of lessons 02, 07 and 08
reach the lab through the student's own Jupyter server (jupyter-server-proxy)."""
DISTRIBUTION = "labkit-lessons"
"""labkit's distribution name (`labkit` on the package index is another project)."""
LAB_EXTENSIONS = ["@jupyter-widgets/jupyterlab-manager", "anywidget"]
"""JupyterLab extensions that render ipywidgets and plotly's FigureWidget (through anywidget)."""


def installed_lab_extensions() -> set[str]:
    """Names of the prebuilt JupyterLab extensions found on Jupyter's data path."""
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError:
        return set()
    found = set()
    for root in map(Path, jupyter_path("labextensions")):
        for manifest in root.glob("**/package.json"):
            if manifest.parent.parent == root or manifest.parent.parent.parent == root:
                found.add(manifest.parent.relative_to(root).as_posix())
    return found


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def loopback_works() -> tuple[bool, str]:
    """Start a lab server, make one REST and one WebSocket round trip, stop it."""
    try:
        from labkit.clients.rest import RestClient
        from labkit.clients.ws import WsClient
        from labkit.server.runner import LabServer

        with LabServer() as lab, RestClient(lab) as api, WsClient(lab, "/ws/echo") as ws:
            ok = api.get("/healthz").json() == {"status": "ok"} and ws.echo("ping")[0] == "ping"
            return ok, f"lab server answered on {lab.url}"
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it never crashes
        return False, f"{type(exc).__name__}: {exc}"


def run_doctor() -> int:
    """Print a report; return 0 when everything a lesson needs is present and loopback works."""
    problems = []
    print(f"{'python':<40} {sys.version.split()[0]} ({platform.system()} {platform.machine()})")
    import labkit

    installed = _version(DISTRIBUTION)
    where = Path(labkit.__file__).resolve().parent
    print(f"{'labkit (' + DISTRIBUTION + ')':<40} {labkit.__version__} from {where}")
    if installed is None:
        problems.append(f"labkit is imported from {where} but not installed: run `make lab` "
                        "(or pip install -e '.[lab]') so kernels and `labkit` find it")
    elif installed != labkit.__version__:
        problems.append(f"labkit {labkit.__version__} is imported, but {installed} is installed: "
                        "reinstall with `make lab`")
    for name in [*REQUIRED, *FRONT_ENDS]:
        version = _version(name)
        print(f"{name:<40} {version or 'MISSING'}")
        if version is None:
            hint = "pip install -e '.[lab]'" if name in FRONT_ENDS else f"pip install {name}"
            problems.append(f"{name} is missing ({hint})")
    extensions = installed_lab_extensions()
    for name in LAB_EXTENSIONS:
        there = name in extensions
        print(f"{'ext ' + name:<40} {'ok' if there else 'MISSING'}")
        if not there:
            problems.append(f"JupyterLab extension {name} is missing: widgets will not show")
    ok, detail = loopback_works()
    print(f"{'loopback':<40} {'ok' if ok else 'FAILED'}: {detail}")
    if not ok:
        problems.append("the lab server could not answer on 127.0.0.1 (a firewall or proxy setting?)")
    if problems:
        print("\nNot ready:", *problems, sep="\n- ")
        return 1
    print("\nReady: every lesson's needs are met.")
    return 0
