"""Where a run's results came from: the code's version and commit, the libraries, the hardware."""

import contextlib
import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

GIT_TIMEOUT = 2.0  # seconds per git call: a hung or slow git must not hold up a run
PACKAGES = ("iris-sweep", "torch", "numpy", "pyarrow", "scikit-learn")
# FMA rounds once where mul+add rounds twice, the vector width orders sums: either moves floats.
CPU_FLAGS = ("avx2", "avx512f", "fma")


def _git(folder: Path, *args: str) -> str | None:
    """Git's output in `folder`, or None when git is missing, fails or is too slow."""
    command = ["git", "-C", str(folder), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _checkout() -> dict[str, Any]:
    """The commit and whether tracked files differ from it, if this package runs from a checkout."""
    folder = Path(__file__).resolve().parent
    # installed inside another repository (a venv in some project) is no checkout of iris-sweep
    tracked = _git(folder, "ls-files", "--error-unmatch", "__init__.py") is not None
    commit = _git(folder, "rev-parse", "HEAD") if tracked else None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else status != ""}


def _cpu() -> dict[str, Any]:
    """The CPU's model name and the float-relevant instruction sets it has (None if unknown)."""
    info: dict[str, str] = {}  # the first CPU's
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as stream:  # none: not Linux
        for key, _, value in (line.partition(":") for line in stream):
            info.setdefault(key.strip(), value.strip())
    flags = set(info["flags"].split()) if "flags" in info else None
    found = {f"cpu_{flag}": None if flags is None else flag in flags for flag in CPU_FLAGS}
    return {"cpu_model": info.get("model name") or platform.processor() or None, **found}


@functools.cache
def _fixed() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in PACKAGES:
        found[name] = None
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found |= _checkout() | _cpu()
    found["machine"], found["cpu_count"] = platform.machine(), os.cpu_count()
    found["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    found["cuda"] = torch.version.cuda if gpus else None
    found["gpus"] = [torch.cuda.get_device_name(i) for i in range(gpus)]
    return found


def provenance() -> dict[str, Any]:
    """Return this process's provenance as JSON-ready data (computed once; threads read live)."""
    return {**_fixed(), "gpus": list(_fixed()["gpus"]), "torch_threads": torch.get_num_threads()}
