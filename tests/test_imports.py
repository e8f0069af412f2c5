"""Every module of eet_like imports alone, in a fresh interpreter (no import cycle, no
dependence on what was imported before), and the library never imports the applications
(eet_like.app)."""
import importlib.util
import os
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

PACKAGE = "eet_like"
APP = "eet_like.app"
# The optional third-party dependencies a module imports when it is imported (not lazily).
NEEDS = {
    "eet_like.fairseq": ["fairseq"],
    "eet_like.integrations.fairseq": ["fairseq"],
    "eet_like.ray": ["ray", "pyarrow"],
    "eet_like.app.ray_cli": ["ray", "pyarrow"],
    "eet_like.server.http": ["starlette"],
    "eet_like.server.metrics": ["prometheus_client"],
}
# Running it runs the command: checked as `python -m eet_like --help` instead.
NOT_IMPORTED = {"eet_like.__main__"}


def _modules():
    """Every module of the installed (or PYTHONPATH) eet_like, found on disk without importing
    any of it; the compiled extension _C is left out (eet_like itself imports it)."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations, "eet_like is not importable"
    found = [PACKAGE]

    def walk(paths, prefix):
        for info in pkgutil.iter_modules(paths):
            name = f"{prefix}.{info.name}"
            if info.name == "_C" or name in NOT_IMPORTED:
                continue
            found.append(name)
            if info.ispkg:
                walk([os.path.join(info.module_finder.path, info.name)], name)

    walk(list(spec.submodule_search_locations), PACKAGE)
    return sorted(found)


MODULES = _modules()
LIBRARY = [m for m in MODULES if m != APP and not m.startswith(APP + ".")]


def _missing(module):
    return [dep for dep in NEEDS.get(module, []) if importlib.util.find_spec(dep) is None]


def _python(code, timeout=300):
    # The same interpreter and environment (PYTHONPATH included) as this test run.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


@pytest.fixture(scope="module")
def imported():
    """module -> CompletedProcess of `import module` in its own interpreter (2 at a time: the
    suite runs on small machines)."""
    todo = [m for m in MODULES if not _missing(m)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(todo, pool.map(lambda m: _python(f"import {m}"), todo)))


def test_modules_found():
    for name in ("eet_like.ops", "eet_like.errors", "eet_like.app.cli", "eet_like.app.demo", "eet_like.app.bench",
                 "eet_like.app.serve", "eet_like.server.engine", "eet_like.ray"):
        assert name in MODULES
    assert "eet_like._C" not in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module, imported):
    missing = _missing(module)
    if missing:
        pytest.skip(f"{module} needs {', '.join(missing)}, which is not installed")
    res = imported[module]
    assert res.returncode == 0, f"import {module} in a fresh interpreter failed:\n{res.stderr[-3000:]}"


def test_library_does_not_import_app():
    importable = [m for m in LIBRARY if not _missing(m)]
    code = ("import sys\n"
            f"for m in {importable!r}:\n"
            "    __import__(m)\n"
            f"print('loaded:', sorted(m for m in sys.modules if m == {APP!r} or m.startswith({APP + '.'!r})))\n")
    res = _python(code)
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = [line for line in res.stdout.splitlines() if line.startswith("loaded: ")]
    assert loaded == ["loaded: []"], f"importing the library loaded {loaded}"


def test_python_m_eet_like_runs():
    res = subprocess.run([sys.executable, "-m", PACKAGE, "--help"], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "demo" in res.stdout and "serve" in res.stdout


@pytest.mark.parametrize("preset,torch_first,expected", [
    ({}, False, "10000"),                                 # eet_like sets its spin count
    ({}, True, None),                                     # too late: torch loaded libgomp already
    ({"GOMP_SPINCOUNT": "300000"}, False, "300000"),      # the user's choice stays
    ({"OMP_WAIT_POLICY": "PASSIVE"}, False, None),
])
def test_openmp_spin_count_set_before_torch(preset, torch_first, expected):
    """Importing eet_like before torch sets GOMP_SPINCOUNT (a short spin: shared machines, see
    eet_like/_openmp.py) unless the user chose a wait policy; after torch it changes nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(preset)
    code = ("import torch\n" if torch_first else "") + "import os, eet_like\nprint(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(expected)
