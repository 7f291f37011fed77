"""Device choice: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from ..core.errors import VipInputError

DEVICES = ("auto", "cuda", "mps", "cpu")


def resolve_device(name: str = "auto") -> str:
    """Turn ``auto|cuda|mps|cpu`` into a torch device string that exists on this machine."""
    import torch

    if name not in DEVICES:
        raise VipInputError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise VipInputError("Device 'cuda' was asked for but PyTorch sees no CUDA GPU here; choose auto or cpu.")
    if name == "mps" and not has_mps:
        raise VipInputError("Device 'mps' was asked for but Apple MPS is not available here; choose auto or cpu.")
    return name
