"""The two environment files agree, cover pyproject's dependencies, and `import labkit` stays light."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from notebook_runner import LESSON_TIMEOUT_S

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


def test_binder_environment_has_the_jupyter_proxy_for_browser_clients():
    """The environment repo2docker installs (the file its plan names) holds jupyter-server-proxy,
    which serves the lab to the student's browser at <Jupyter base URL>proxy/<port>/."""
    r2d = Path(sys.executable).with_name("jupyter-repo2docker")
    out = subprocess.run([str(r2d), "--no-build", "--debug", str(ROOT)], capture_output=True,
                         text=True, timeout=120)
    used = re.search(r'env update -p \$\{NB_PYTHON_PREFIX\} --file "([^"]+)"', out.stdout + out.stderr)
    assert used, (out.stdout + out.stderr)[-2000:]
    listed = re.findall(r"^\s*-\s+([A-Za-z0-9_.\-]+)", (ROOT / used[1]).read_text(), flags=re.M)
    assert "jupyter-server-proxy" in {name.lower().replace("_", "-") for name in listed}
    lab_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "jupyter-server-proxy" in _names(lab_extra["lab"])


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


# -- every runtime dependency is declared ---------------------------------------------------------------
# Two checks, chosen to stay affordable in CI:
# 1. Static, in a second: every module that labkit, the lessons and the instructor solutions import
#    belongs to a declared distribution (lessons and labkit's module-level imports: the core
#    `dependencies`; imports inside functions: `dependencies` or an extra).
# 2. Real: a fresh venv holding only `pip install .` (no extras: what a student's kernel gets) plus
#    its own kernel is where every lesson runs its one run of the test session (the `lesson_kernel`
#    fixture, tests/notebook_runner.py; the checks are in tests/test_notebooks.py). This is what
#    catches a dependency no import statement shows (pandas' DataFrame.style needs jinja2).
#    LABKIT_SKIP_FRESH_VENV=1 runs the lessons in this venv's kernel instead, locally; CI never sets it.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SOLUTION_DIRS = [ROOT / "instructors" / "solutions"]


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set().union(*(_names(specs) for specs in project["optional-dependencies"].values()))
    return _names(project["dependencies"]), extras


def _imports(source: str, *, top_level_only: bool) -> set[str]:
    """Top-level module names imported by `source` (absolute imports only)."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    lines = [line for cell in code for line in cell.splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))  # no magics


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    """module -> the distributions that provide it (third-party modules only)."""
    provided = md.packages_distributions()
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m != "labkit"}
    return {m: {d.lower().replace("_", "-") for d in provided.get(m, [f"<not installed: {m}>"])}
            for m in third_party}


def test_every_import_of_labkit_and_the_lessons_is_declared():
    core, extras = _declared()
    lesson_sources = [_notebook_code(p) for p in NOTEBOOKS]
    lesson_sources += [p.read_text() for d in SOLUTION_DIRS if d.is_dir() for p in d.glob("*.py")]
    package = [p.read_text() for p in (ROOT / "labkit").rglob("*.py")]
    needed_in_core: set[str] = set()
    for source in lesson_sources:
        needed_in_core |= _imports(source, top_level_only=False)
    for source in package:
        needed_in_core |= _imports(source, top_level_only=True)
    anywhere = set().union(*(_imports(s, top_level_only=False) for s in package))
    assert len(needed_in_core) > 20 and "pandas" in needed_in_core
    missing_core = {m: d for m, d in _distributions(needed_in_core).items() if not d & core}
    assert not missing_core, f"imported by the lessons or at labkit's module level, not in dependencies: " \
                             f"{missing_core}"
    missing = {m: d for m, d in _distributions(anywhere).items() if not d & (core | extras)}
    assert not missing, f"imported by labkit, declared nowhere in pyproject.toml: {missing}"


LOCK_FILE = ROOT / "requirements" / "lab-lock.txt"


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and " " not in line, f"not an exact pin: {line!r}"
            assert _canonical(name) not in pins, f"pinned twice: {name}"
            pins[_canonical(name)] = version
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_declared_dependency_within_its_range():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked()
    for spec in [*project["dependencies"], *project["optional-dependencies"]["lab"]]:
        req = Requirement(spec)
        name = _canonical(req.name)
        assert name in pins, f"{req.name} is declared but not in {LOCK_FILE.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK_FILE.name} pins {req.name}=={pins[name]}, outside {req.specifier}")


def test_make_lab_lock_installs_the_lock_then_labkit_without_dependencies():
    plan = subprocess.run(["make", "-n", "-B", "lab", "LOCK=1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True).stdout
    lines = [line for line in plan.splitlines() if "pip install" in line]
    assert lines[-2].endswith(f"pip install -r {LOCK_FILE.relative_to(ROOT)}"), plan
    assert lines[-1].endswith("pip install --no-deps -e ."), plan


@pytest.mark.notebook
@pytest.mark.timeout(LESSON_TIMEOUT_S)
def test_the_fresh_venv_holds_no_extras(lesson_kernel):
    """The venv every lesson runs in (tests/test_notebooks.py): `pip install .`, no extras."""
    if lesson_kernel.jupyter_path is None:
        pytest.skip("LABKIT_SKIP_FRESH_VENV=1: the lessons run in this venv's kernel")
    code = ("import importlib.util as u; "
            "print([m for m in ('jupyterlab', 'pytest', 'schemathesis', 'playwright') "
            "if u.find_spec(m)], u.find_spec('labkit').origin)")
    out = subprocess.run([str(lesson_kernel.python), "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, cwd=lesson_kernel.python.parent)  # not the checkout
    extras, origin = out.stdout.rsplit(" ", 1)
    assert extras == "[]"
    assert "site-packages" in origin and not origin.startswith(str(ROOT / "labkit")), origin
