"""The compiled loops are built on first use, once under a lock, or training falls back to eager."""

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from irismodel import native
from irismodel.engine import eager_loop_note, train_batched
from irismodel.native import build
from irismodel.native.__main__ import main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Point the build cache at an empty folder, with building on first use on, and forget any
    module loaded and any build tried so far in this process."""
    monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path))
    monkeypatch.delenv("IRISMODEL_NATIVE_BUILD", raising=False)
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(build, "_build_failure", None)
    monkeypatch.setattr(build, "_opt_out_logged", False)
    return tmp_path


@pytest.fixture
def unbuilt(empty_cache, monkeypatch):
    """An empty build cache, and building on first use turned off (IRISMODEL_NATIVE_BUILD=0)."""
    monkeypatch.setenv("IRISMODEL_NATIVE_BUILD", "0")
    return empty_cache


@pytest.mark.parametrize("loop", ["native", "fused"])
def test_required_compiled_loop_that_is_not_built_raises(iris, unbuilt, loop):
    """loop="native" or "fused", not built and not to be built on first use, raises RuntimeError
    naming the opt-out and the build command."""
    x, y = iris
    with pytest.raises(
        RuntimeError,
        match=r"which is not built \(.*IRISMODEL_NATIVE_BUILD=0 turns building on first use off"
        r"\); unset IRISMODEL_NATIVE_BUILD .*python -m irismodel\.native build",
    ):
        train_batched(x, y, 4, "sgd", [0], 0.1, 3, loop=loop)


def test_opting_out_trains_with_eager_and_says_so_once(iris, unbuilt, caplog):
    """IRISMODEL_NATIVE_BUILD=0: loop="auto" trains with the Python loop, compiles nothing, and
    logs once at INFO why and how to get the compiled loops."""
    x, y = iris
    with caplog.at_level(logging.INFO, logger="irismodel.native"):
        runs = [train_batched(x, y, 4, "sgd", [0], 0.1, 3) for _ in range(2)]
    assert [run.engine for run in runs] == ["batched", "batched"]
    assert not any(unbuilt.iterdir())  # nothing was compiled into the cache
    lines = [r for r in caplog.records if "eager Python loop" in r.getMessage()]
    assert [r.levelname for r in lines] == ["INFO"]
    assert "IRISMODEL_NATIVE_BUILD=0 turns building on first use off" in lines[0].getMessage()
    assert "python -m irismodel.native build" in lines[0].getMessage()


def test_status_and_the_note_of_the_task_log_say_why_and_how_to_fix(unbuilt, capsys):
    """Not built and not to be built: `python -m irismodel.native status` fails saying so, and
    the note a shard task logs names the missing library, the opt-out and the fix."""
    assert main(["status"]) == 1
    assert capsys.readouterr().out.startswith(f"not built ({native.library_path()} is missing; ")
    note = eager_loop_note()
    assert note.startswith("the compiled loops are not built (") and note == (
        f"the compiled loops are {build.unavailable_reason()}; {build.how_to_fix()}"
    )
    assert "turns building on first use off); unset IRISMODEL_NATIVE_BUILD" in note


@pytest.mark.parametrize("value", ["0", "off", "No", "FALSE"])
def test_opt_out_values(unbuilt, monkeypatch, value):
    """0, false, no and off, in any case, turn building on first use off."""
    monkeypatch.setenv("IRISMODEL_NATIVE_BUILD", value)
    assert not native.build_on_first_use()
    assert build.load_or_build() is None


def test_unknown_opt_out_value_raises(empty_cache, monkeypatch):
    """An IRISMODEL_NATIVE_BUILD that is neither on nor off raises, naming the valid values."""
    monkeypatch.setenv("IRISMODEL_NATIVE_BUILD", "never")
    with pytest.raises(
        ValueError, match=r"IRISMODEL_NATIVE_BUILD must be one of 1, .*off, or unset"
    ):
        native.build_on_first_use()
    monkeypatch.setenv("IRISMODEL_NATIVE_BUILD", "")
    assert native.build_on_first_use()


def test_broken_build_falls_back_to_eager_or_raises_when_required(iris, unbuilt):
    """A library that fails to load means eager under "auto", RuntimeError when required."""
    x, y = iris
    native.library_path().parent.mkdir(parents=True)
    native.library_path().write_bytes(b"not a shared library")
    assert train_batched(x, y, 4, "sgd", [0], 0.1, 3).engine == "batched"
    with pytest.raises(RuntimeError, match="does not load"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 3, loop="fused")


def test_failed_build_is_tried_once_logged_once_and_trains_eager(
    iris, empty_cache, monkeypatch, caplog
):
    """A build that fails (here: no compiler) is tried once per process and logged once at
    WARNING with the reason and the fix; "auto" trains eager, a required loop raises why."""
    x, y = iris
    monkeypatch.setenv("CXX", str(empty_cache / "no-such-compiler"))  # fails in a second
    compiles = []
    compile_for_real = build._compile
    monkeypatch.setattr(build, "_compile", lambda *a: compiles.append(a) or compile_for_real(*a))
    with caplog.at_level(logging.INFO, logger="irismodel.native"):
        engines = [train_batched(x, y, 4, "sgd", [0], 0.1, 3).engine for _ in range(2)]
    assert engines == ["batched", "batched"]
    assert len(compiles) == 1
    ours = [r for r in caplog.records if r.name.startswith("irismodel.native")]
    warnings = [r.getMessage() for r in ours if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "are not built: the build failed (RuntimeError: " in warnings[0]
    assert "no-such-compiler: not found" in warnings[0]
    assert "install a C++ compiler" in warnings[0]
    assert "python -m irismodel.native build --verbose" in warnings[0]
    assert not native.library_path().exists()
    with pytest.raises(RuntimeError, match=r"which is not built: the build failed .*C\+\+ comp"):
        train_batched(x, y, 4, "sgd", [0], 0.1, 3, loop="native")
    assert len(compiles) == 1


def test_cache_that_cannot_be_written_means_eager_and_says_where(
    iris, tmp_path, monkeypatch, caplog
):
    """A cache folder that cannot be created: "auto" trains eager, and the warning names the
    folder and IRISMODEL_NATIVE_DIR."""
    x, y = iris
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path / "a-file" / "cache"))
    monkeypatch.delenv("IRISMODEL_NATIVE_BUILD", raising=False)
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(build, "_build_failure", None)
    with caplog.at_level(logging.WARNING, logger="irismodel.native"):
        assert train_batched(x, y, 4, "sgd", [0], 0.1, 3).engine == "batched"
    ours = [r for r in caplog.records if r.name.startswith("irismodel.native")]
    (warning,) = [r.getMessage() for r in ours if r.levelname == "WARNING"]
    assert "NotADirectoryError" in warning
    assert "point IRISMODEL_NATIVE_DIR at a writable folder" in warning


def test_threads_that_want_the_module_at_once_build_it_once(empty_cache, monkeypatch):
    """Eight threads that want an unbuilt module at once: one compiles, the others wait for it,
    and all get the one module, published whole at library_path()."""
    module = SimpleNamespace()
    compiles = []

    def fake_compile(staging, ninja, verbose):  # the real one takes ~30 s
        compiles.append(staging)
        time.sleep(0.5)  # long enough for every thread to be waiting
        (staging / native.library_path().name).write_bytes(b"the library")
        return module

    monkeypatch.setattr(build, "_compile", fake_compile)
    got = []
    threads = [threading.Thread(target=lambda: got.append(build.load_or_build())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(compiles) == 1
    assert got == [module] * 8
    assert native.library_path().read_bytes() == b"the library"
    assert not list(native.build_directory().glob(".*.partial"))


def _bin_without_ninja(folder: Path) -> str:
    """A PATH of one folder that holds links to the compiler's tools and no ninja."""
    folder.mkdir()
    for tool in ("c++", "as", "ld"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to compile the native module"
        (folder / tool).symlink_to(found)
    assert shutil.which("ninja", path=str(folder)) is None
    return str(folder)


# A fresh Python that trains with loop="auto" on two threads at once and prints the engines.
TRAIN_ON_FIRST_USE = """
    import logging, shutil, sys, threading
    import numpy as np
    from irismodel.engine import train_batched

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    assert shutil.which("ninja") is None  # no ninja on PATH: the venv's must be found
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    engines = []
    def train(seed):
        engines.append(train_batched(x, y, 4, "sgd", [seed], 0.1, 5, loop="auto").engine)
    threads = [threading.Thread(target=train, args=(seed,)) for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(" ".join(engines))
"""


def _start_training(cache: Path, path: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IRISMODEL_")}
    env.update(PATH=path, IRISMODEL_NATIVE_DIR=str(cache))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(TRAIN_ON_FIRST_USE)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.subprocess
def test_first_use_builds_once_without_a_ninja_on_path(tmp_path):
    """Two fresh processes (of two threads each) that want the module at once, with an empty
    cache and no ninja on PATH (the venv not activated): exactly one compiles, with the ninja
    pip installed, the other waits for it, and both train with the fused kernel; a lock left
    behind by a killed build does not stop them."""
    cache, path = tmp_path / "cache", _bin_without_ninja(tmp_path / "bin")
    stale = cache / native.module_name() / "build" / "lock"  # torch's, as a killed build leaves it
    stale.parent.mkdir(parents=True)
    stale.touch()
    children = [_start_training(cache, path) for _ in range(2)]
    results = [child.communicate(timeout=400) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err[-3000:] for _, err in results]
    assert [out.split() for out, _ in results] == [["batched-fused"] * 2] * 2
    assert sum(err.count("compiling the C++ training loops into") for _, err in results) == 1
    assert sum(err.count("compiled the C++ training loops in") for _, err in results) == 1
    venv_ninja = Path(sys.executable).parent / "ninja"
    assert sum(f"with {venv_ninja}:" in err for _, err in results) == 1  # the venv's ninja
    assert (cache / native.module_name() / f"{native.module_name()}.so").is_file()


def test_build_location_follows_the_environment(monkeypatch, tmp_path):
    """IRISMODEL_NATIVE_DIR wins over TORCH_EXTENSIONS_DIR, which wins over the user cache."""
    monkeypatch.delenv("IRISMODEL_NATIVE_DIR", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch"))
    assert native.cache_root() == tmp_path / "torch" / "irismodel"
    monkeypatch.setenv("IRISMODEL_NATIVE_DIR", str(tmp_path / "mine"))
    assert native.cache_root() == tmp_path / "mine"
    assert native.library_path().parent.parent == tmp_path / "mine"
    assert native.module_name() in native.library_path().name
