"""The optional C++ training loops: built on first use (or by an explicit step), then loaded.

`load_or_build()`, which the engine calls when it wants a compiled loop, returns the compiled
module, compiling it first (about 30 s, once per machine, torch and Python) when it is not
built. `load()` only loads: it never compiles. `build()` (or `python -m irismodel.native
build`) compiles ahead of time, as a pre-warm.

A build on first use is safe under concurrency: one thread of a process compiles while the
others wait on a thread lock, and one process of a host compiles while the others wait on an
`fcntl.flock` of `build.lock` in the module's folder; then they all load that one result. The
compile runs in a `build/` subfolder and the finished library is copied and renamed into place
in one `os.replace`, so a half-written library is never loaded. A build that fails (no
compiler, no ninja, a read-only cache) is tried once per process and logged once at WARNING,
with the reason and the fix; training then goes on with the eager loop. Setting
`IRISMODEL_NATIVE_BUILD=0` turns building on first use off (logged once at INFO).

The build runs `ninja`: the one pip installed beside this Python (a dependency of the
project) is put first on PATH, so neither an activated venv nor a system ninja is needed.

Where the build goes, first match wins:
1. `$IRISMODEL_NATIVE_DIR`
2. `$TORCH_EXTENSIONS_DIR/irismodel`
3. `$XDG_CACHE_HOME/irismodel/native`, by default `~/.cache/irismodel/native`
Inside it, one folder per module name; the name carries a hash of the C++ sources, the torch
version and the Python version, so an edited source or an upgraded torch is simply "not built"
(never a stale or ABI-incompatible module) until it is built again.

The stop request (`request_stop()`, `clear_stop()`, `stop_requested()`; irismodel.engine
re-exports them) is a flag kept twice: here, for the Python loops and for when nothing is
built, and in every compiled module loaded, where the C++ loops read it without the GIL. A
module loaded after the request takes it over when it loads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import platform
import shutil
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

HERE = Path(__file__).parent
# train_loop.cpp: the eager loop's ATen ops from C++, and the module's Python bindings;
# fused.cpp/.h: the fused CPU kernel
SOURCES = (HERE / "train_loop.cpp", HERE / "fused.cpp", HERE / "init.cpp")
HEADERS = (HERE / "fused.h",)
BUILD_COMMAND = "python -m irismodel.native build"
BUILD_ENV = "IRISMODEL_NATIVE_BUILD"  # "0" turns building on first use off
_BUILD_ON = ("1", "true", "yes", "on")
_BUILD_OFF = ("0", "false", "no", "off")
COMPILER_FIX = (
    "install a C++ compiler and the Python headers (Debian: apt-get install g++ python3-dev), "
    f"then run `{BUILD_COMMAND} --verbose` to see the compiler's output"
)
# -ffp-contract=off: no a*b+c fused on one instruction set and not another (fused.cpp's
# results must not depend on the CPU); -fno-math-errno: sqrt may vectorize.
_CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-psabi"]
FUSED_MAX_FEATURES = 16  # fused.cpp's kMaxFeatures
_LIBRARY_SUFFIX = ".pyd" if sys.platform == "win32" else ".so"  # what cpp_extension writes

logger = logging.getLogger(__name__)
_loaded: ModuleType | None = None
_load_lock = threading.Lock()  # threads that load at once get one module object
_build_lock = threading.Lock()  # one thread of the process compiles; the others wait for it
_build_failure: tuple[str, str] | None = None  # (why, the fix) of the process's failed build
_opt_out_logged = False  # the INFO line of IRISMODEL_NATIVE_BUILD=0 is logged once
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


def build_on_first_use() -> bool:
    """Whether the engine may compile the module when it is not built (`$IRISMODEL_NATIVE_BUILD`).

    Unset, empty, 1, true, yes or on: yes; 0, false, no or off: no (any case). Another value
    raises ValueError naming the valid ones.
    """
    value = os.environ.get(BUILD_ENV, "").strip().lower()
    if value in ("", *_BUILD_ON):
        return True
    if value in _BUILD_OFF:
        return False
    raise ValueError(
        f"{BUILD_ENV} must be one of {', '.join(_BUILD_ON + _BUILD_OFF)}, or unset, "
        f"got {os.environ[BUILD_ENV]!r}"
    )


def _opted_out() -> bool:
    """`not build_on_first_use()`, except that it never raises (for messages)."""
    return os.environ.get(BUILD_ENV, "").strip().lower() in _BUILD_OFF


def ninja_directory() -> Path | None:
    """Return the folder of the ninja that pip installed for this Python, or None if there is none.

    Looks in the `ninja` package's own folder, this environment's scripts folder and the folder
    of `sys.executable`, so a venv's bin/ is found whether or not the venv is activated.
    """
    candidates = []
    try:
        import ninja  # a dependency of the project; its BIN_DIR holds the executable

        candidates.append(Path(ninja.BIN_DIR))
    except (ImportError, AttributeError):
        pass
    candidates += [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    executable = "ninja.exe" if sys.platform == "win32" else "ninja"
    for folder in candidates:
        if os.access(folder / executable, os.X_OK):
            return folder
    return None


def build(verbose: bool = False) -> Path:
    """Compile the C++ loop into `build_directory()` unless it is built and loads; return the .so.

    Safe from many threads and processes at once: one compiles, the others wait and load its
    result. Needs a C++ compiler and ninja (a dependency of the project). Raises what the
    compile raises (RuntimeError with the compiler's output), or OSError when the cache folder
    cannot be written.
    """
    with _build_lock:
        _build_and_load(verbose)
    return library_path()


def load_or_build() -> ModuleType | None:
    """Return the compiled module, compiling it first if it is not built; None if it cannot be had.

    Compiles only when `build_on_first_use()`, and at most once per process: a failed build is
    logged once at WARNING with the reason and the fix, and not tried again. None means the
    eager loop; `unavailable_reason()` and `how_to_fix()` say why and what to do.
    """
    global _build_failure, _opt_out_logged
    if (module := load()) is not None:
        return module
    if not build_on_first_use():
        with _build_lock:
            if not _opt_out_logged:
                _opt_out_logged = True
                logger.info(
                    "the compiled training loops are %s: training with the eager Python loop, "
                    "3-12x slower; %s",
                    unavailable_reason(),
                    how_to_fix(),
                )
        return None
    with _build_lock:
        if _loaded is not None or _build_failure is not None:  # another thread got here first
            return _loaded
        try:
            return _build_and_load(verbose=False)
        except Exception as error:  # the compiled loops are optional: never fail a sweep on them
            _build_failure = (_summary(error), _failure_fix(error))
            logger.warning(
                "the compiled training loops are %s: training with the eager Python loop, "
                "3-12x slower; %s",
                unavailable_reason(),
                how_to_fix(),
            )
            logger.debug("the failed build of the compiled training loops", exc_info=True)
            return None


def _build_and_load(verbose: bool) -> ModuleType:
    """Compile and publish the module unless another process has; load it. Needs `_build_lock`."""
    global _loaded
    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    with _file_lock(directory / "build.lock"):
        if library_path().is_file():  # built before, or by the process this one waited for
            with _load_lock:
                module = _load_once()
            if module is not None:
                return module
        staging = directory / "build"
        staging.mkdir(exist_ok=True)
        # torch's own lock of its build folder: one left behind by a killed build would make
        # this build wait for ever; the file lock held here says that no build is running.
        (staging / "lock").unlink(missing_ok=True)
        ninja = ninja_directory()
        logger.info(
            "compiling the C++ training loops into %s with %s: about 30 s, once for these "
            "sources, this torch and this Python (%s=0 turns building on first use off)",
            directory,
            ninja / "ninja" if ninja else "the ninja on PATH",
            BUILD_ENV,
        )
        start = time.perf_counter()
        module = _compile(staging, ninja, verbose)
        _publish(staging / library_path().name, library_path())
        logger.info(
            "compiled the C++ training loops in %.1f s: %s",
            time.perf_counter() - start,
            library_path(),
        )
    with _load_lock:
        _loaded = _adopt(module)
    return module


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` of `path` (created if missing); the kernel drops it if we die."""
    try:
        import fcntl
    except ImportError:  # not POSIX: processes are not serialized, only threads
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(
                "waiting for another process to finish compiling the C++ training loops (%s)",
                path,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile(staging: Path, ninja: Path | None, verbose: bool) -> ModuleType:
    """Run torch's build of the sources in `staging`; return the module it imports from there."""
    from torch.utils import cpp_extension  # slow to import; only the build needs it

    name = module_name()
    # torch skips the compile of a name it built before in this process, and renames it
    # `<name>_v1` if the folder differs; what is wanted here is a real build of this very name.
    versioner = getattr(cpp_extension, "JIT_EXTENSION_VERSIONER", None)
    getattr(versioner, "entries", {}).pop(name, None)
    # The build runs `ninja`: the one pip installed beside this Python is not on PATH unless the
    # venv is activated, so it goes first.
    path_before = os.environ.get("PATH")
    if ninja is not None:
        os.environ["PATH"] = os.pathsep.join(filter(None, [str(ninja), path_before]))
    try:
        return cpp_extension.load(
            name=name,
            sources=[str(path) for path in SOURCES],
            extra_cflags=_CFLAGS,
            build_directory=str(staging),
            verbose=verbose,
        )
    finally:
        if path_before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path_before


def _publish(built: Path, target: Path) -> None:
    """Copy the freshly linked library beside `target`, then rename it into place in one step."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(built, partial)
    partial.chmod(0o755)
    os.replace(partial, target)  # atomic: a reader sees the old file or the whole new one


def _summary(error: BaseException) -> str:
    """The gist of a failed build: the error's type, its first line and the compiler's errors.

    A failed compile's text is the command lines and output of ninja; the command lines (long,
    or starting "[1/3]") say nothing a reader needs, so lines naming an error are kept instead.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    head, rest = lines[0].split(": [")[0][:200], lines[1:]
    rest = [line for line in rest if len(line) <= 300 and not line.startswith("[")]
    errors = [line for line in rest if "error" in line.lower() or "not found" in line.lower()]
    kept = list(dict.fromkeys(errors))[:3] or rest[-3:]
    if rest and rest[-1] not in kept:
        kept.append(rest[-1])
    return f"{type(error).__name__}: {' / '.join([head, *kept])}"


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
            _why_not.update(state="not built", detail=f"{path} is missing")
            logger.debug("native module not built (%s missing)", path)
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        if spec is None:
            raise ImportError(f"no import spec for {path}")
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except Exception as error:  # a broken build must never break a sweep: eager still works
        _why_not.update(state="built but does not load", detail=f"{type(error).__name__}: {error}")
        logger.debug("native module failed to load; using the eager loop", exc_info=True)
        return None
    _loaded = _adopt(module)
    return module


_why_not: dict[str, str] = {}  # the state and detail of the last `load()` that found nothing


def unavailable_reason() -> str | None:
    """Return why the compiled module is not in use, or None when it loads.

    The reason reads after "the compiled loops are": "not built (...)", "built but does not
    load (...)" or "not built: the build failed (...)"; `how_to_fix()` says what to do.
    """
    if load() is not None:
        return None
    if _build_failure is not None:
        return f"not built: the build failed ({_build_failure[0]})"
    state, detail = _why_not.get("state", "unavailable"), _why_not.get("detail", "unknown")
    if _opted_out():
        detail += f"; {BUILD_ENV}={os.environ[BUILD_ENV]} turns building on first use off"
    return f"{state} ({detail})"


def how_to_fix() -> str:
    """Say how to get the compiled loops, for the reason `unavailable_reason()` gives."""
    if _build_failure is not None:
        return _build_failure[1]
    if _opted_out() and _why_not.get("state") == "not built":
        return f"unset {BUILD_ENV} to build them on first use, or build them with `{BUILD_COMMAND}`"
    return f"build them again with `{BUILD_COMMAND} --verbose`"


def _failure_fix(error: BaseException) -> str:
    """What to do about a failed build: a cache folder that cannot be written, or the compiler."""
    root = str(cache_root())
    if isinstance(error, OSError) and str(error.filename or "").startswith(root):
        return (
            f"make {root} writable, or point IRISMODEL_NATIVE_DIR at a writable folder, "
            f"then run `{BUILD_COMMAND}`"
        )
    return COMPILER_FIX


def timed_build(verbose: bool = False) -> tuple[Path, float]:
    """Run `build()` and return (the .so path, wall seconds it took)."""
    start = time.perf_counter()
    path = build(verbose=verbose)
    return path, time.perf_counter() - start


def expected() -> bool:
    """Whether training here will use the compiled loops: built and loading, or built on first use.

    Raises ValueError for an unknown `IRISMODEL_NATIVE_BUILD` value.
    """
    return load() is not None or build_on_first_use()
