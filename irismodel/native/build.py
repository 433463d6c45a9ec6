"""Building the compiled loops, on first use or ahead of time: once per machine, under a lock.

One thread and one process (an `fcntl.flock` of `build.lock`) compiles while the others wait,
then all load that one result; the library is renamed into place, never loaded half-written.
"""

import contextlib
import fcntl
import logging
import os
import shutil
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from irismodel import native

logger = logging.getLogger(__name__)
_build_lock = threading.Lock()  # one thread of the process compiles; the others wait for it
_build_failure: tuple[str, str] | None = None  # (why, the fix) of the process's failed build
_opt_out_logged = False  # the INFO line of IRISMODEL_NATIVE_BUILD=0 is logged once


def build(verbose: bool = False) -> Path:
    """Compile the C++ loops unless they load; return the library's path; raises if it fails."""
    with _build_lock:
        _build_and_load(verbose)
    return native.library_path()


def load_or_build() -> ModuleType | None:
    """Return the compiled module, built first (once) if `build_on_first_use()`; else None."""
    global _build_failure, _opt_out_logged
    if (module := native.load()) is not None:
        return module
    with _build_lock:
        if not native.build_on_first_use():
            if not _opt_out_logged:
                _opt_out_logged = True
                _say_eager(logger.info)
            return None
        if _build_failure is not None:  # tried and failed, maybe by another thread meanwhile
            return None
        try:
            return _build_and_load(verbose=False)
        except Exception as error:  # the compiled loops are optional: never fail a sweep on them
            _build_failure = (_summary(error), _failure_fix(error))
            _say_eager(logger.warning)
            logger.debug("the failed build of the compiled training loops", exc_info=True)
            return None


def _say_eager(log: Callable[..., None]) -> None:
    log("training with the eager Python loop, 3-12x slower, because %s", eager_loop_note())


def _build_and_load(verbose: bool) -> ModuleType:
    """Compile and publish the module unless another process has; load it. Needs `_build_lock`."""
    directory, library = native.build_directory(), native.library_path()
    directory.mkdir(parents=True, exist_ok=True)
    with _file_lock(directory / "build.lock"):
        if (module := native.load()) is not None:  # built before, or by the process waited for
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
            native.BUILD_ENV,
        )
        start = time.perf_counter()
        module = _compile(staging, ninja, verbose)
        partial = library.with_name(f".{library.name}.{os.getpid()}.partial")
        shutil.copyfile(staging / library.name, partial)
        partial.chmod(0o755)
        os.replace(partial, library)  # atomic: a reader sees the old file or the whole new one
        logger.info(
            "compiled the C++ training loops in %.1f s: %s", time.perf_counter() - start, library
        )
    return native._keep(module)


def ninja_directory() -> Path | None:
    """Return the folder of the ninja pip installed for this Python (venv activated or not)."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        if os.access(Path(folder) / "ninja", os.X_OK):
            return Path(folder)
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` of `path` (created if missing); the kernel drops it if we die."""
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

    name = native.module_name()
    # torch skips the compile of a name it built before in this process, and renames it
    # `<name>_v1` if the folder differs; what is wanted here is a real build of this very name.
    versioner = getattr(cpp_extension, "JIT_EXTENSION_VERSIONER", None)
    getattr(versioner, "entries", {}).pop(name, None)
    # torch runs `ninja` from PATH, where pip's is not unless the venv is activated
    path_before = os.environ.get("PATH")
    if ninja is not None:
        os.environ["PATH"] = os.pathsep.join(filter(None, [str(ninja), path_before]))
    try:
        sources = [str(path) for path in native.SOURCES]
        return cpp_extension.load(
            name, sources, native.CFLAGS, build_directory=str(staging), verbose=verbose
        )
    finally:
        if path_before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path_before


def eager_loop_note() -> str:
    """Say why training here runs the eager Python loop, and how to get the compiled loops."""
    return f"the compiled loops are {unavailable_reason()}; {how_to_fix()}"


def unavailable_reason() -> str | None:
    """Return why the compiled module is not in use (see `why_not_loaded()`), None if it loads."""
    reason = native.why_not_loaded()
    if reason is not None and _build_failure is not None:
        return f"not built: the build failed ({_build_failure[0]})"
    return reason


def how_to_fix() -> str:
    """Say how to get the compiled loops, for the reason `unavailable_reason()` gives."""
    command = native.BUILD_COMMAND
    if _build_failure is not None:
        return _build_failure[1]
    if native.is_built():
        return f"build them again with `{command} --verbose`"
    if native.opted_out():
        return f"unset {native.BUILD_ENV} to build them on first use, or run `{command}`"
    return f"they are built on first use, or now by `{command}`"


def _summary(error: BaseException) -> str:
    """The gist of a failed build: the error's type, its first line, the compiler's errors."""
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


def _failure_fix(error: BaseException) -> str:
    """What to do about a failed build: a cache folder that cannot be written, or the compiler."""
    root = str(native.cache_root())
    if isinstance(error, OSError) and str(error.filename or "").startswith(root):
        return (
            f"make {root} writable, or point IRISMODEL_NATIVE_DIR at a writable folder, "
            f"then run `{native.BUILD_COMMAND}`"
        )
    return (
        "install a C++ compiler and the Python headers (Debian: apt-get install g++ python3-dev), "
        f"then run `{native.BUILD_COMMAND} --verbose` to see the compiler's output"
    )
