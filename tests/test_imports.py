"""The project's import graph: every module imports first, and the library without Prefect."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("irismodel", "flows", "tasks", "cli")

# Each module imported first, in turn: the project's modules are dropped from sys.modules
# before each, so a cycle that only an import order hides fails here (third-party modules stay
# loaded, which keeps it fast). Then the whole library alone, to see what it pulled in.
SCRIPT = """
import importlib, json, sys
modules = json.loads(sys.argv[1])
failed = {}
for name in modules:
    for loaded in [m for m in sys.modules if m.split(".")[0] in %r]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failed))
"""


def _modules(*packages: str) -> list[str]:
    names = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] != "__main__":
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _run(code: str, *arguments: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.subprocess
def test_every_module_imports_first_in_a_fresh_process() -> None:
    """Each module of irismodel, flows, tasks and cli imports when it is the first one imported."""
    import json

    modules = _modules(*PACKAGES)
    assert "flows.iris_sweep" in modules and "irismodel.report.comparison" in modules
    failed = json.loads(_run(SCRIPT % (PACKAGES,), json.dumps(modules)))
    assert failed == {}


@pytest.mark.subprocess
def test_the_library_never_imports_prefect() -> None:
    """Importing every module of irismodel loads no Prefect module."""
    code = (
        "import importlib, sys\n"
        f"for name in {_modules('irismodel')!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('prefect')}))"
    )
    assert _run(code) == "[]"


@pytest.mark.subprocess
def test_the_library_picks_arrows_system_allocator_unless_one_is_chosen() -> None:
    """Importing irismodel first selects Arrow's system pool; a pool chosen before is kept."""
    pool = "import pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    arrows_own = _run(pool, env=env)  # this pyarrow build's default, without the library
    assert _run(f"import irismodel; {pool}", env=env) == "system"
    assert _run(f"import pyarrow, irismodel; {pool}", env=env) == arrows_own  # too late: kept
    chosen = {**env, "ARROW_DEFAULT_MEMORY_POOL": arrows_own}
    assert _run(f"import irismodel; {pool}", env=chosen) == arrows_own
