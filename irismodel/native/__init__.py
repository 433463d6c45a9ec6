"""The optional C++ training loops: an explicit build step, and a loader that never compiles.

`build()` (or `python -m irismodel.native build`) compiles the C++ sources against the
installed torch into `build_directory()`; `load()` imports that compiled module if it is there
and returns None otherwise, so a sweep never pays the tens of seconds of a compile.

Where the build goes, first match wins:
1. `$IRISMODEL_NATIVE_DIR`
2. `$TORCH_EXTENSIONS_DIR/irismodel`
3. `$XDG_CACHE_HOME/irismodel/native`, by default `~/.cache/irismodel/native`
Inside it, one folder per module name; the name carries a hash of the C++ sources, the torch
version and the Python version, so an edited source or an upgraded torch is simply "not built"
(never a stale or ABI-incompatible module) until the next `build()`.

The stop request (`request_stop()`, `clear_stop()`, `stop_requested()`; irismodel.engine
re-exports them) is a flag kept twice: here, for the Python loops and for when nothing is
built, and in every compiled module loaded, where the C++ loops read it without the GIL. A
module loaded after the request takes it over when it loads.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import torch

HERE = Path(__file__).parent
# train_loop.cpp: the eager loop's ATen ops from C++, and the module's Python bindings;
# fused.cpp/.h: the fused CPU kernel
SOURCES = (HERE / "train_loop.cpp", HERE / "fused.cpp")
HEADERS = (HERE / "fused.h",)
BUILD_COMMAND = "python -m irismodel.native build"
# -ffp-contract=off: no a*b+c fused on one instruction set and not another (fused.cpp's
# results must not depend on the CPU); -fno-math-errno: sqrt may vectorize.
_CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-psabi"]
FUSED_MAX_FEATURES = 16  # fused.cpp's kMaxFeatures
_LIBRARY_SUFFIX = ".pyd" if sys.platform == "win32" else ".so"  # what cpp_extension writes

logger = logging.getLogger(__name__)
_loaded: ModuleType | None = None
_load_lock = threading.Lock()  # threads that load at once get one module object
_stop = False  # the stop request, as the Python loops see it
_modules: list[ModuleType] = []  # every compiled module loaded in this process


def request_stop() -> None:
    """Ask every training of this process, in every loop and thread, to stop at its next check.

    Sets the Python flag and the flag of each compiled module loaded; safe to call from any
    thread or a signal handler. The request stays until `clear_stop()`.
    """
    global _stop
    _stop = True  # before the modules: one adopted meanwhile reads it after joining the list
    for module in list(_modules):
        module.request_stop()


def clear_stop() -> None:
    """Withdraw the stop request, so that trainings started from now on run to the end."""
    global _stop
    _stop = False
    for module in list(_modules):
        module.clear_stop()


def stop_requested() -> bool:
    """Whether a stop request is pending."""
    return _stop


def _adopt(module: ModuleType) -> ModuleType:
    """Record a freshly loaded compiled module and hand it the current stop request."""
    if all(module is not known for known in _modules):
        _modules.append(module)
    if _stop:
        module.request_stop()
    return module


def cache_root() -> Path:
    """Return the folder under which compiled modules are kept (see the module docstring)."""
    if explicit := os.environ.get("IRISMODEL_NATIVE_DIR"):
        return Path(explicit).expanduser()
    if torch_dir := os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(torch_dir).expanduser() / "irismodel"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "irismodel" / "native"


@functools.cache
def module_name() -> str:
    """Return the compiled module's name: it changes with the sources, torch and Python."""
    digest = hashlib.sha256()
    for path in (*SOURCES, *HEADERS):
        digest.update(path.read_bytes())
    for part in (torch.__version__, sys.version, platform.machine(), " ".join(_CFLAGS)):
        digest.update(b"\0" + part.encode())
    return f"irismodel_train_loop_{digest.hexdigest()[:16]}"


def build_directory() -> Path:
    """Return the folder that holds (or will hold) this source's compiled module."""
    return cache_root() / module_name()


def library_path() -> Path:
    """Return the path of the compiled module for this source, torch and Python."""
    return build_directory() / f"{module_name()}{_LIBRARY_SUFFIX}"


def is_built() -> bool:
    """Whether the compiled module for this source, torch and Python exists (it may still fail)."""
    return library_path().is_file()


def build(verbose: bool = False) -> Path:
    """Compile the C++ loop into `build_directory()` (a no-op when up to date); return the .so.

    Needs a C++ compiler and ninja (`pip install ninja` provides it). Raises whatever
    `torch.utils.cpp_extension.load` raises when the compile fails.
    """
    global _loaded
    from torch.utils import cpp_extension  # slow to import; only the build needs it

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    # The build runs `ninja`: the one `pip install ninja` put beside this Python (a venv's
    # bin/) is not on PATH unless the venv is activated, so put it first.
    scripts = os.path.dirname(sys.executable)
    path_before = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([scripts, path_before])
    try:
        module = cpp_extension.load(
            name=module_name(),
            sources=[str(path) for path in SOURCES],
            extra_cflags=_CFLAGS,
            build_directory=str(directory),
            verbose=verbose,
        )
    finally:
        os.environ["PATH"] = path_before
    _loaded = _adopt(module)
    return library_path()


def load() -> ModuleType | None:
    """Return the compiled module if it is built and imports, else None; never compiles.

    Any failure (not built, missing symbol, wrong ABI) is logged at debug level and yields None.
    """
    if _loaded is not None:
        return _loaded
    with _load_lock:
        return _load_once()


def _load_once() -> ModuleType | None:
    global _loaded
    if _loaded is not None:  # another thread loaded it meanwhile
        return _loaded
    try:
        name, path = module_name(), library_path()
        if not path.is_file():
            _why_not["reason"] = f"not built ({path} is missing)"
            logger.debug("native module not built (%s missing); run `%s`", path, BUILD_COMMAND)
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        if spec is None:
            raise ImportError(f"no import spec for {path}")
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except Exception as error:  # a broken build must never break a sweep: eager still works
        _why_not["reason"] = f"it does not load ({type(error).__name__}: {error})"
        logger.debug("native module failed to load; using the eager loop", exc_info=True)
        return None
    _loaded = _adopt(module)
    return module


_why_not: dict[str, str] = {}


def unavailable_reason() -> str | None:
    """Return why the compiled module is not in use (not built, or does not load), or None."""
    return None if load() is not None else _why_not.get("reason", "unknown")


def timed_build(verbose: bool = False) -> tuple[Path, float]:
    """Run `build()` and return (the .so path, wall seconds it took)."""
    start = time.perf_counter()
    path = build(verbose=verbose)
    return path, time.perf_counter() - start
