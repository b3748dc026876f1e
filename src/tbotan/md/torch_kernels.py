"""The per-step kernels of the torch engine, in three interchangeable implementations.

- :class:`NativeKernels`: C++/OpenMP CPU kernels (:mod:`tbotan.md.native`); the fastest on CPU.
- :class:`TorchKernels` with ``compiled=True``: the pure-torch kernels through
  ``torch.compile`` (Triton on CUDA; optionally CUDA graphs); the CUDA default.
- :class:`TorchKernels` with ``compiled=False``: plain eager torch; the reference and fallback.

All take and return the layouts of :mod:`tbotan.md.torch_potential`; they agree to rounding
(forces) and exactly (neighbour lists), which the tests check.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from tbotan.md import native
from tbotan.md import torch_integrators as integ
from tbotan.md import torch_neighbors as nl
from tbotan.md import torch_potential as pot
from tbotan.physics import kalj

log = logging.getLogger(__name__)

KERNEL_CHOICES = ("auto", "native", "compiled", "eager")


class Kernels(Protocol):
    """The interface every kernel implementation offers the torch engine.

    Layouts (:mod:`tbotan.md.torch_potential`): ``coords``, ``velocities``, ``forces``,
    ``reference`` (3, B, N) coordinate-major; ``neighbors`` (B, N, K) int, ``counts`` (B, N);
    ``types`` (B, N); ``box`` (B, 3); ``dt`` (B,) per-system time steps.
    """

    #: ``'native'``, ``'compiled'`` or ``'eager'``.
    name: str

    def build(
        self, wrapped: torch.Tensor, types: torch.Tensor, box: torch.Tensor, radii: nl.ListRadii,
        capacity: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbour lists of wrapped coordinates: (neighbors (B, N, K), counts (B, N))."""
        ...

    def forces(self, coords, neighbors, counts, types, box) -> torch.Tensor:
        """(3, B, N) forces of the shifted-force KALJ potential."""
        ...

    def energy_virial(self, coords, neighbors, counts, types, box) -> tuple:
        """(forces, (B, N) per-particle energies, (B,) virial, (B,) closest pair over σ_μν)."""
        ...

    def kick_drift_check(self, coords, velocities, forces, reference, dt, threshold_sq) -> tuple:
        """Velocity-Verlet half kick and drift; (coords, velocities, (B,) bool: a particle moved
        more than sqrt(``threshold_sq``) from ``reference``, the list must be rebuilt)."""
        ...


class TorchKernels:
    """Kernels written in torch operations (eager, or compiled with ``torch.compile``)."""

    def __init__(self, coeff: pot.PairCoefficients, compiled: bool, cuda_graphs: bool = False):
        self.coeff = coeff
        self.name = "compiled" if compiled else "eager"

        def maybe(fn):
            if not compiled:
                return fn
            return torch.compile(fn, dynamic=False, mode="reduce-overhead" if cuda_graphs else None)

        self._forces = maybe(pot.forces)
        self._kick_drift = maybe(_kick_drift_check)

    def build(self, wrapped, types, box, radii: nl.ListRadii, capacity: int):
        return nl.build(wrapped, types, box, radii, capacity)

    def forces(self, coords, neighbors, counts, types, box):
        return self._forces(coords, neighbors, types, box, self.coeff)

    def energy_virial(self, coords, neighbors, counts, types, box):
        return pot.energy_virial(coords, neighbors, types, box, self.coeff)

    def kick_drift_check(self, coords, velocities, forces, reference, dt, threshold_sq):
        return self._kick_drift(coords, velocities, forces, reference, dt, threshold_sq)


def _kick_drift_check(coords, velocities, forces, reference, dt, threshold_sq):
    coords, velocities = integ.kick_drift(coords, velocities, forces, dt)
    moved = integ.max_step_displacement_sq(coords, reference) > threshold_sq
    return coords, velocities, moved


class NativeKernels:
    """C++/OpenMP kernels for CPU tensors (see ``native/kalj_cpu.cpp``)."""

    name = "native"

    def __init__(self, module, dtype: torch.dtype):
        self.module = module
        table = kalj.pair_table()
        rows = [table.c12, table.c6, table.r_cut_sq, table.u_cut, table.du_cut, table.r_cut]
        rows.append(kalj.SIGMA.ravel() ** 2)
        self.table = torch.from_numpy(np.stack(rows)).to(torch.float64)
        self.dtype = dtype

    def build(self, wrapped, types, box, radii: nl.ListRadii, capacity: int):
        if bool((box <= 2.0 * radii.max_radius).any()):
            return nl.build(wrapped, types, box, radii, capacity)  # raises the clear error
        list_sq = torch.tensor(radii.radius, dtype=torch.float64) ** 2
        neighbors, counts = self.module.build_neighbors(
            wrapped.contiguous(),
            types.contiguous(),
            box.contiguous(),
            list_sq,
            radii.max_radius,
            capacity,
        )
        return neighbors, counts

    def forces(self, coords, neighbors, counts, types, box):
        return self.module.forces(coords, neighbors, counts, types, box, self.table)

    def energy_virial(self, coords, neighbors, counts, types, box):
        f, energy, virial, min_ratio = self.module.energy_virial(
            coords, neighbors, counts, types, box, self.table
        )
        return f, energy, virial, min_ratio

    def kick_drift_check(self, coords, velocities, forces, reference, dt, threshold_sq):
        coords = coords.contiguous()
        velocities = velocities.contiguous()
        moved = self.module.kick_drift_check(
            coords,
            velocities,
            forces.contiguous(),
            reference.contiguous(),
            dt.contiguous(),
            float(threshold_sq),
        )
        return coords, velocities, moved


def make_kernels(
    choice: str, device: torch.device, dtype: torch.dtype, cuda_graphs: bool
) -> tuple[Kernels, pot.PairCoefficients]:
    """Pick the kernels (and the pair coefficients they use).

    ``auto`` means native on CPU (eager if they cannot be built) and compiled on CUDA.
    """
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {choice!r}")
    coeff = pot.PairCoefficients.create(device, dtype)
    if choice == "auto":
        choice = "native" if device.type == "cpu" else "compiled"
        if choice == "native" and native.load() is None:
            log.warning(
                "native CPU kernels unavailable (%s); falling back to eager torch kernels",
                native.unavailable_reason(),
            )
            choice = "eager"
    if choice == "native":
        if device.type != "cpu":
            raise ValueError("kernels 'native' run on the CPU only; use 'compiled' on CUDA")
        module = native.load()
        if module is None:
            raise RuntimeError(
                f"native CPU kernels cannot be built here: {native.unavailable_reason()}; "
                "choose kernels 'eager' or 'compiled'"
            )
        return NativeKernels(module, dtype), coeff
    return TorchKernels(coeff, compiled=(choice == "compiled"), cuda_graphs=cuda_graphs), coeff
