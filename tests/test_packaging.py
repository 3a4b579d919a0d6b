"""The two environment files agree, cover pyproject's dependencies, and `import labkit` stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _names(specs):
    return {re.split(r"[<>=!~ \[]", s.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for s in specs if isinstance(s, str)}


def test_binder_environment_is_identical_to_root():
    assert (ROOT / "binder" / "environment.yml").read_bytes() == (ROOT / "environment.yml").read_bytes()


def test_environment_lists_every_runtime_dependency():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = _names(pyproject["project"]["dependencies"]) | _names(
        pyproject["project"]["optional-dependencies"]["lab"]
    )
    text = (ROOT / "environment.yml").read_text()
    listed = _names(re.findall(r"^\s*-\s+([A-Za-z0-9_.\-]+[^\n#]*)", text, flags=re.M))
    missing = wanted - listed
    assert not missing, f"environment.yml lacks {sorted(missing)}"


def test_binder_build_installs_labkit_after_the_environment():
    """repo2docker's own plan: environment from binder/, then postBuild installs labkit (`-e .`)."""
    postbuild = ROOT / "binder" / "postBuild"
    assert os.access(postbuild, os.X_OK)
    assert re.search(r"pip install .*-e \.$", postbuild.read_text(), flags=re.M)
    r2d = Path(sys.executable).with_name("jupyter-repo2docker")
    out = subprocess.run([str(r2d), "--no-build", "--debug", str(ROOT)], capture_output=True,
                         text=True, timeout=120)
    dockerfile = out.stdout + out.stderr
    env_step = dockerfile.find('env update -p ${NB_PYTHON_PREFIX} --file "binder/environment.yml"')
    copy_step = dockerfile.find("COPY --chown=0:0 src/ ${REPO_DIR}/")
    postbuild_step = dockerfile.find("RUN ./binder/postBuild")
    assert -1 < env_step < copy_step < postbuild_step, dockerfile[-2000:]


def test_import_is_light():
    code = (
        "import sys, labkit; heavy = [m for m in ('pandas', 'plotly', 'aiohttp', 'ipywidgets') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import labkit pulled in: {out.stdout.strip()}"


def test_lazy_names_resolve():
    import labkit

    for name in labkit._LAZY:
        assert getattr(labkit, name) is not None, name
