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


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: CPU features with native bf16 matrix products (oneDNN uses them under autocast); without
#: them oneDNN emulates bf16, slower than float32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device``: a CUDA device with bf16, or a CPU
    with one of :data:`BF16_CPU_FLAGS` (and PyTorch's oneDNN able to use it)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return bool(cpu_flags() & set(BF16_CPU_FLAGS)) and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
