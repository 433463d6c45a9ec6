"""The closed set of device names a sweep accepts, resolved to a torch device string."""

import re

import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str) -> str:
    """Return the torch device for `name` (`auto`: cuda if present, else cpu), or ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"device: expected one of {DEVICE_CHOICES}, got {name!r}")
    if name in ("auto", "cpu"):
        return "cuda" if name == "auto" and torch.cuda.is_available() else "cpu"
    match = _CUDA.fullmatch(name)
    if match is None:
        raise ValueError(f"device: unknown device {name!r}; valid are {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device: {name!r} asks for CUDA, but this machine has no CUDA device "
            "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        raise ValueError(
            f"device: {name!r} does not exist; this machine has {count} CUDA device(s), "
            f"cuda:0 to cuda:{count - 1}"
        )
    return name
