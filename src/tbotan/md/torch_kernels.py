"""The per-step kernels of the torch engine, in three interchangeable implementations.

- :class:`NativeKernels`: C++/OpenMP CPU kernels (:mod:`tbotan.md.native`); the fastest on CPU.
- :class:`TorchKernels` with ``compiled=True``: the pure-torch kernels through
  ``torch.compile`` (Triton on CUDA; optionally CUDA graphs); the CUDA default.
- :class:`TorchKernels` with ``compiled=False``: plain eager torch; the reference and fallback.

All take and return the layouts of :mod:`tbotan.md.torch_potential`; they agree to rounding
(forces) and exactly (neighbour lists), which the tests check.

The native kernels use *half* neighbour lists by default (``neighbor_list='half'``: every pair
once, Newton's third law in the force loop; about half the pair work of the full lists, see
``native/kalj_cpu.cpp``); their counts are then (B, N, 2) ``[n, n_A]`` instead of (B, N), and
their neighbour rows and counts are int32 (half the memory the force loop streams through; a
batch then holds fewer than 2³¹ particles) where the full lists' are int64.
``neighbor_list='full'`` keeps the full rows of the torch kernels.  Half-list results equal
the full-list ones to rounding (another summation order), not bit for bit.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from tbotan.errors import ConfigError, EnvironmentProblem
from tbotan.md import native
from tbotan.md import torch_integrators as integ
from tbotan.md import torch_neighbors as nl
from tbotan.md import torch_potential as pot
from tbotan.physics import kalj

log = logging.getLogger(__name__)

KERNEL_CHOICES = ("auto", "native", "compiled", "eager")
NEIGHBOR_LIST_CHOICES = ("auto", "half", "full")


class Kernels(Protocol):
    """The interface every kernel implementation offers the torch engine.

    Layouts (:mod:`tbotan.md.torch_potential`): ``coords``, ``velocities``, ``forces``,
    ``reference`` (3, B, N) coordinate-major; ``neighbors`` (B, N, K) int64 (int32 for half
    lists), ``counts`` (B, N) (half lists: (B, N, 2) int32);
    ``types`` (B, N); ``box`` (B, 3); ``dt`` (B,) per-system time steps.
    """

    #: ``'native'``, ``'compiled'`` or ``'eager'``.
    name: str
    #: ``'half'`` (each pair once, Newton's third law) or ``'full'`` neighbour lists.
    neighbor_list: str
    #: True where :meth:`rebuild_in_place` refreshes the flagged systems' rows in place.
    rebuilds_in_place: bool

    def build(
        self,
        wrapped: torch.Tensor,
        types: torch.Tensor,
        box: torch.Tensor,
        radii: nl.ListRadii,
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

    def kick(self, velocities, forces, dt) -> tuple:
        """Second velocity-Verlet half kick; (velocities, (B,) kinetic energies Σ v²/2 after it,
        or None where the kernels do not fuse them)."""
        ...


class TorchKernels:
    """Kernels written in torch operations (eager, or compiled with ``torch.compile``)."""

    def __init__(self, coeff: pot.PairCoefficients, compiled: bool, cuda_graphs: bool = False):
        self.coeff = coeff
        self.name = "compiled" if compiled else "eager"
        self.neighbor_list = "full"
        self.rebuilds_in_place = False

        self.cuda_graphs = bool(compiled and cuda_graphs)

        def maybe(fn):
            if not compiled:
                return fn
            return torch.compile(fn, dynamic=False, mode="reduce-overhead" if cuda_graphs else None)

        self._forces = maybe(pot.forces)
        self._kick_drift = maybe(_kick_drift_check)

    def build(self, wrapped, types, box, radii: nl.ListRadii, capacity: int, host_box=None):
        return nl.build(wrapped, types, box, radii, capacity, host_box=host_box)

    def _graph_outputs(self, outputs):
        """With CUDA graphs (``reduce-overhead``), the outputs of a captured call live in the
        graph's static buffers and are overwritten by its next replay; the forces of one call
        feed the kick-drift of the next, so they are cloned out of those buffers, and each call
        starts a new graph step (``cudagraph_mark_step_begin``)."""
        if not self.cuda_graphs:
            return outputs
        if isinstance(outputs, tuple):
            return tuple(o.clone() for o in outputs)
        return outputs.clone()

    def forces(self, coords, neighbors, counts, types, box):
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self._graph_outputs(self._forces(coords, neighbors, types, box, self.coeff))

    def energy_virial(self, coords, neighbors, counts, types, box):
        return pot.energy_virial(coords, neighbors, types, box, self.coeff)

    def kick_drift_check(self, coords, velocities, forces, reference, dt, threshold_sq):
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self._graph_outputs(
            self._kick_drift(coords, velocities, forces, reference, dt, float(threshold_sq))
        )

    def kick(self, velocities, forces, dt):
        """Second velocity-Verlet half step; returns (velocities, None): no fused kinetic
        energy (the thermostat computes it)."""
        return integ.kick(velocities, forces, dt), None


def _kick_drift_check(coords, velocities, forces, reference, dt, threshold_sq):
    coords, velocities = integ.kick_drift(coords, velocities, forces, dt)
    moved = integ.max_step_displacement_sq(coords, reference) > threshold_sq
    return coords, velocities, moved


class NativeKernels:
    """C++/OpenMP kernels for CPU tensors (see ``native/kalj_cpu.cpp``)."""

    name = "native"

    def __init__(self, module, dtype: torch.dtype, neighbor_list: str = "half"):
        if neighbor_list not in ("half", "full"):
            raise ValueError(f"neighbor_list must be 'half' or 'full', got {neighbor_list!r}")
        self.module = module
        self.neighbor_list = neighbor_list
        self.half = neighbor_list == "half"
        table = kalj.pair_table()
        rows = [table.c12, table.c6, table.r_cut_sq, table.u_cut, table.du_cut, table.r_cut]
        rows.append(kalj.SIGMA.ravel() ** 2)
        self.table = torch.from_numpy(np.stack(rows)).to(torch.float64)
        self.dtype = dtype

    def build(self, wrapped, types, box, radii: nl.ListRadii, capacity: int, host_box=None):
        if bool((box <= 2.0 * radii.max_radius).any()):
            return nl.build(wrapped, types, box, radii, capacity)  # raises the clear error
        list_sq = torch.tensor(radii.radius, dtype=torch.float64) ** 2
        builder = self.module.build_half_neighbors if self.half else self.module.build_neighbors
        neighbors, counts = builder(
            wrapped.contiguous(),
            types.contiguous(),
            box.contiguous(),
            list_sq,
            radii.max_radius,
            capacity,
        )
        return neighbors, counts

    @property
    def rebuilds_in_place(self) -> bool:
        """Whether :meth:`rebuild_in_place` is available (half lists)."""
        return self.half

    def rebuild_in_place(
        self, coords, images, reference, types, box, systems, neighbors, counts, radii: nl.ListRadii
    ):
        """Wrap, reset the reference and rebuild the half-list rows of the flagged systems.

        Args:
            coords, reference: (3, B, N) contiguous, updated in place.
            images: (3, B, N) int64 image counts, updated in place.
            systems: (B,) bool, the systems to rebuild.
            neighbors, counts: (B, N, K) and (B, N, 2) int32 half lists, their rows updated in
                place.

        Returns:
            (B,) int64 longest row of each rebuilt system (0 for the others; > K means the rows
            overflowed), -1 for a system with non-finite coordinates (left untouched).
        """
        list_sq = torch.tensor(radii.radius, dtype=torch.float64) ** 2
        return self.module.rebuild_half(
            coords,
            images,
            reference,
            types,
            box,
            systems.contiguous(),
            neighbors,
            counts,
            list_sq,
            radii.max_radius,
        )

    def rebuild_forces(
        self, coords, images, reference, types, box, systems, neighbors, counts, radii
    ):
        """:meth:`rebuild_in_place` of the flagged systems and :meth:`forces` of all in one
        call (half lists): each system's task rebuilds it if flagged, then computes its forces,
        so a step with rebuilds forks the thread pool once.  Same arguments as
        :meth:`rebuild_in_place`; returns ((3, B, N) forces, (B,) longest rows as
        :meth:`rebuild_in_place`).  Where a system overflowed (longest > K) or is not finite
        (-1), its forces are meaningless: the caller widens and rebuilds, or stops."""
        list_sq = torch.tensor(radii.radius, dtype=torch.float64) ** 2
        forces, longest = self.module.rebuild_half_forces(
            coords,
            images,
            reference,
            types,
            box,
            systems.contiguous(),
            neighbors,
            counts,
            list_sq,
            radii.max_radius,
            self.table,
        )
        return forces, longest

    def scale_velocities(self, velocities, scale):
        """Velocities (3, B, N) times the (B,) factor of their system, in place (the values of
        ``velocities * scale.view(1, -1, 1)``, without torch's thread pool for small batches).
        """
        velocities = velocities.contiguous()
        self.module.scale_velocities(velocities, scale.to(velocities.dtype).contiguous())
        return velocities

    def forces(self, coords, neighbors, counts, types, box):
        kernel = self.module.half_forces if self.half else self.module.forces
        return kernel(coords, neighbors, counts, types, box, self.table)

    def energy_virial(self, coords, neighbors, counts, types, box):
        kernel = self.module.half_energy_virial if self.half else self.module.energy_virial
        f, energy, virial, min_ratio = kernel(coords, neighbors, counts, types, box, self.table)
        return f, energy, virial, min_ratio

    def kick(self, velocities, forces, dt):
        """Second velocity-Verlet half step in place, fused with the kinetic energy.

        Returns (velocities, (B,) float64 kinetic energies ``Σ v²/2`` after the kick)."""
        velocities = velocities.contiguous()
        kinetic = self.module.kick_kinetic(velocities, forces.contiguous(), dt.contiguous())
        return velocities, kinetic

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
    choice: str,
    device: torch.device,
    dtype: torch.dtype,
    cuda_graphs: bool,
    neighbor_list: str = "auto",
) -> tuple[Kernels, pot.PairCoefficients]:
    """Pick the kernels (and the pair coefficients they use).

    ``auto`` means native on CPU (eager if they cannot be built) and compiled on CUDA.
    ``neighbor_list``: ``auto`` (half lists with the native kernels, full otherwise), ``half``
    (native kernels only) or ``full``.
    """
    if choice not in KERNEL_CHOICES:
        raise ConfigError(f"kernels must be one of {KERNEL_CHOICES}, got {choice!r}")
    if neighbor_list not in NEIGHBOR_LIST_CHOICES:
        raise ConfigError(
            f"neighbor_list must be one of {NEIGHBOR_LIST_CHOICES}, got {neighbor_list!r}"
        )
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
            raise ConfigError("kernels 'native' run on the CPU only; use 'compiled' on CUDA")
        module = native.load()
        if module is None:
            raise EnvironmentProblem(
                f"native CPU kernels cannot be built here: {native.unavailable_reason()}; "
                "choose kernels 'eager' or 'compiled'"
            )
        return NativeKernels(module, dtype, "full" if neighbor_list == "full" else "half"), coeff
    if neighbor_list == "half":
        raise ConfigError("neighbor_list 'half' needs the native CPU kernels (kernels 'native')")
    return TorchKernels(coeff, compiled=(choice == "compiled"), cuda_graphs=cuda_graphs), coeff
