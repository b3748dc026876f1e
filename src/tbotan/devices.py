"""The one reading of a device name, shared by the MD engine and the learning stage."""

from __future__ import annotations

import torch

from tbotan.errors import ConfigError, EnvironmentProblem


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``'auto'`` (or None) → CUDA when available, else CPU; ``'cpu'``, ``'cuda'``,
    ``'cuda:N'`` as given, validated.

    Raises:
        ValueError: another device type, or CUDA asked for where torch sees none.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("device 'cuda' was requested but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return dev
