"""Counter-based random numbers for batched simulations.

Each random number is a pure function of ``(seed, stream, counter, slot)``: a SplitMix64 hash
chain evaluated with int64 tensor arithmetic.  This gives every system of a batch its own
stream, independent of which other systems share the batch, of the device (CPU and CUDA give
bit-identical numbers) and of how a run is split into calls: the state is just the step counter.

SplitMix64 (Steele, Lea & Flood 2014) passes BigCrush as a generator; here it is used as a hash
of a counter, the construction of counter-based generators such as Philox (Salmon et al. 2011).
"""

from __future__ import annotations

import math

import torch

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB
_MASK = {s: (1 << (64 - s)) - 1 for s in (11, 27, 30, 31)}


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of an int64 tensor (as if unsigned)."""
    return (z >> s) & _MASK[s]


def mix64(z: torch.Tensor) -> torch.Tensor:
    """The SplitMix64 output function of ``z + golden`` (int64 tensors, wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def random_bits(
    seed: torch.Tensor, stream: torch.Tensor, counter: torch.Tensor, n_slots: int
) -> torch.Tensor:
    """64 random bits per (system, slot).

    Args:
        seed: (B,) int64.
        stream: (B,) int64 stream index of each system.
        counter: (B,) int64, e.g. the time step.
        n_slots: how many numbers per system.

    Returns:
        (B, n_slots) int64.
    """
    key = mix64(mix64(mix64(seed) ^ stream) ^ counter)
    slots = torch.arange(n_slots, device=seed.device, dtype=torch.int64)
    return mix64(key[:, None] ^ slots[None, :])


def uniform(
    seed: torch.Tensor,
    stream: torch.Tensor,
    counter: torch.Tensor,
    n_slots: int,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """(B, n_slots) uniform numbers in the open interval (0, 1), 53-bit resolution."""
    bits = _shr(random_bits(seed, stream, counter, n_slots), 11)  # 53 bits, non-negative
    return ((bits.to(torch.float64) + 0.5) * 2.0**-53).to(dtype)


def normal(
    seed: torch.Tensor,
    stream: torch.Tensor,
    counter: torch.Tensor,
    n_slots: int,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """(B, n_slots) standard normal numbers (Box–Muller on counter-based uniforms)."""
    n_pairs = (n_slots + 1) // 2
    u = uniform(seed, stream, counter, 2 * n_pairs, torch.float64)
    radius = torch.sqrt(-2.0 * torch.log(u[:, :n_pairs]))
    angle = 2.0 * math.pi * u[:, n_pairs:]
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return z[:, :n_slots].to(dtype)
