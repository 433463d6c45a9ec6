"""The compiled loops (C++): where the module lives, loading it (never compiling), its C functions.

It lives under `cache_root()`, in a folder named after a hash of the sources, torch, Python and
the compiler flags: an edited source or an upgraded torch is simply "not built" until built again.
"""

import ctypes
import functools
import hashlib
import importlib.util
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

HERE = Path(__file__).parent
SOURCES = tuple(HERE / name for name in ("train_loop.cpp", "fused.cpp", "init.cpp", "evaluate.cpp"))
HEADERS = (HERE / "fused.h",)
# -ffp-contract=off: no a*b+c fused on one instruction set and not another (fused.cpp's
# results must not depend on the CPU); -fno-math-errno: sqrt may vectorize.
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-psabi"]
FUSED_MAX_FEATURES = 16  # fused.cpp's kMaxFeatures
BUILD_COMMAND = "python -m irismodel.native build"
BUILD_ENV = "IRISMODEL_NATIVE_BUILD"  # "0" turns building on first use off
_BUILD_ON = ("1", "true", "yes", "on")
_BUILD_OFF = ("0", "false", "no", "off")

logger = logging.getLogger(__name__)
_loaded: ModuleType | None = None
_load_lock = threading.Lock()  # threads that load at once get one module object
_load_error = ""  # why the library at library_path() did not load, at the last try


def cache_root() -> Path:
    """Return where compiled modules are kept.

    `$IRISMODEL_NATIVE_DIR`, else `$TORCH_EXTENSIONS_DIR/irismodel`, else
    `$XDG_CACHE_HOME/irismodel/native` (by default `~/.cache/irismodel/native`).
    """
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
    for part in (torch.__version__, sys.version, platform.machine(), " ".join(CFLAGS)):
        digest.update(b"\0" + part.encode())
    return f"irismodel_train_loop_{digest.hexdigest()[:16]}"


def build_directory() -> Path:
    """Return the folder that holds (or will hold) this source's compiled module."""
    return cache_root() / module_name()


def library_path() -> Path:
    """Return the path of the compiled module for this source, torch and Python."""
    return build_directory() / f"{module_name()}.so"


def is_built() -> bool:
    """Whether the compiled module for this source, torch and Python exists (it may still fail)."""
    return library_path().is_file()


def build_on_first_use() -> bool:
    """Whether the engine may compile the module when it is not built (`$IRISMODEL_NATIVE_BUILD`).

    Unset, empty, 1, true, yes, on: yes; 0, false, no, off: no (any case); else ValueError.
    """
    value = os.environ.get(BUILD_ENV, "").strip().lower()
    if value in ("", *_BUILD_ON, *_BUILD_OFF):
        return value not in _BUILD_OFF
    raise ValueError(
        f"{BUILD_ENV} must be one of {', '.join(_BUILD_ON + _BUILD_OFF)}, or unset, "
        f"got {os.environ[BUILD_ENV]!r}"
    )


def opted_out() -> bool:
    """`not build_on_first_use()`, except that it never raises (for messages)."""
    return os.environ.get(BUILD_ENV, "").strip().lower() in _BUILD_OFF


def expected() -> bool:
    """Whether training here will use the compiled loops (built and loading, or built on use)."""
    return load() is not None or build_on_first_use()


def load() -> ModuleType | None:
    """Return the compiled module if it is built and imports, else None (`why_not_loaded()`)."""
    global _load_error
    with _load_lock:
        if _loaded is not None or not (path := library_path()).is_file():  # cheap once loaded
            return _loaded
        try:
            spec = importlib.util.spec_from_file_location(module_name(), path)  # .so: an extension
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as error:  # a broken build must never break a sweep: eager still works
            _load_error = f"{type(error).__name__}: {error}"
            logger.debug("native module failed to load; using the eager loop", exc_info=True)
            return None
        return _keep(module)


def c_function(name: str, argtypes: Sequence[type], restype: type | None) -> Callable | None:
    """Return the module's C function `name` (run by ctypes without the GIL), None if not loaded."""
    module = load()
    return None if module is None else _c_function(module.__file__, name, tuple(argtypes), restype)


@functools.cache
def _c_function(path: str, name: str, argtypes: tuple, restype: type | None) -> Callable | None:
    try:
        function = getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        logger.debug("no function %s in %s", name, path, exc_info=True)
        return None
    function.argtypes, function.restype = argtypes, restype
    return function


def why_not_loaded() -> str | None:
    """Return why `load()` finds no module ("not built (...)", "built but does not load (...)")."""
    if load() is not None:
        return None
    built = is_built()
    detail = (_load_error or "unknown") if built else f"{library_path()} is missing"
    if opted_out():
        detail += f"; {BUILD_ENV}={os.environ[BUILD_ENV]} turns building on first use off"
    return f"{'built but does not load' if built else 'not built'} ({detail})"


def _keep(module: ModuleType) -> ModuleType:
    """Make `module` (loaded, or compiled by `irismodel.native.build`) what `load()` returns."""
    global _loaded
    _loaded = module
    return module
