"""Where a trial runs: the device it asked for, and the generator its batches are drawn with
there."""

from __future__ import annotations

import torch

from tuner.errors import TunerError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():  # else torch fails deep inside fit()
        raise TunerError("device = cuda but torch sees no CUDA device: use device: auto or cpu.")
    return torch.device(name)


def device_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """The generator batches are drawn with on `device`; None on the CPU, where the host draws
    them as it always has (same seed, same batches as before batches could be drawn on a GPU)."""
    return None if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
