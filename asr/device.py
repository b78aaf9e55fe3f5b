"""Device choice shared by every command: auto takes CUDA when it is there."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device request this machine cannot honour."""


def resolve_device(name: str | None) -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{name}' requested but CUDA is not available on this machine; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}")
