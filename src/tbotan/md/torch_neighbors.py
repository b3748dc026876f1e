"""Dense Verlet neighbour lists for batches of periodic systems (torch).

A neighbour list holds, for every particle i of every system b, the flat indices ``b N + j`` of
all particles j ≠ i with ``|r_ij| < r_c,μν + skin`` (per pair type), in a dense (B, N, K)
tensor padded with i's own flat index.  Dense rows make the force a row reduction: no scatter,
no atomics, static shapes for ``torch.compile`` and CUDA graphs.

The list stays exact while no particle has moved more than ``skin / 2`` since it was built
(:func:`needs_rebuild`).  Candidates come from a cell list with cells of edge ≥ the largest
list radius and the 27-cell stencil; boxes with fewer than three cells per edge use all pairs.
Either way the result is exact, checked against brute force in the tests.

Rows are filled in a deterministic order (stencil cell, then particle index), so a list is a
pure function of the positions it is built from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tbotan.errors import ConfigError
from tbotan.physics import kalj

#: Neighbour capacities are multiples of this, so that rows of a system simulated alone and
#: inside a batch have the same layout (bit-identical reductions).
CAPACITY_QUANTUM = 16
#: Upper bound on candidate pairs examined at once (memory of one build chunk).
MAX_CANDIDATES_PER_CHUNK = 1 << 24


@dataclass(frozen=True)
class ListRadii:
    """List radii ``r_c,μν + skin`` of the four pair types (flattened ``2 t_i + t_j``)."""

    skin: float
    radius: tuple[float, ...]

    @staticmethod
    def create(skin: float) -> ListRadii:
        if not (math.isfinite(skin) and skin > 0):
            raise ValueError(f"neighbour-list skin must be positive, got {skin}")
        return ListRadii(skin=skin, radius=tuple(float(r) + skin for r in kalj.R_CUT.ravel()))

    @property
    def max_radius(self) -> float:
        return max(self.radius)


def default_capacity(density: float, radii: ListRadii, half: bool = False) -> int:
    """A neighbour capacity K for a KALJ liquid at number density ``density`` (σ_AA⁻³).

    The mean count of the most crowded row type plus 30 % and a margin, rounded up to
    :data:`CAPACITY_QUANTUM`; the list grows automatically if a row ever needs more.  With
    ``half`` (half lists: every pair once, so rows hold about half the neighbours) the mean
    count is halved: K = 80 instead of 160 at the KALJ density and skin 0.3, half the memory
    the force loop streams through (the rows' valid entries are what it reads; padding is never
    read, so K changes no result).
    """
    frac = (kalj.FRACTION_A, 1.0 - kalj.FRACTION_A)
    r = radii.radius
    rows = [
        sum(density * frac[tj] * 4.0 / 3.0 * math.pi * r[2 * ti + tj] ** 3 for tj in (0, 1))
        for ti in (0, 1)
    ]
    mean = max(rows) * (0.5 if half else 1.0)
    return round_capacity(1.3 * mean + 16)


def round_capacity(k: float) -> int:
    """Round a capacity up to a multiple of :data:`CAPACITY_QUANTUM`."""
    return int(math.ceil(k / CAPACITY_QUANTUM) * CAPACITY_QUANTUM)


def wrap(coords: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrap (3, B, N) coordinates into ``[0, L)``; returns (wrapped, integer shifts (3, B, N))."""
    length = box.t().unsqueeze(-1)  # (3, B, 1)
    shift = torch.floor(coords / length)
    wrapped = coords - shift * length
    wrapped = torch.where(wrapped >= length, torch.zeros_like(wrapped), wrapped)
    return wrapped, shift.to(torch.int64)


def needs_rebuild(coords: torch.Tensor, reference: torch.Tensor, skin: float) -> torch.Tensor:
    """(B,) bool: has any particle moved more than ``skin/2`` since ``reference``?"""
    d = coords - reference
    return (d * d).sum(0).amax(-1) > (0.5 * skin) ** 2


_STENCIL = tuple((a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1))
_CONSTANTS: dict = {}


def _constant(values, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small constant tensor, copied to ``device`` once and then reused (no host-to-device
    copy per list build on CUDA).  Callers must not modify it."""
    key = (values, str(device), dtype)
    out = _CONSTANTS.get(key)
    if out is None:
        out = _CONSTANTS[key] = torch.tensor(values, device=device, dtype=dtype)
    return out


@dataclass
class _CellList:
    """Particles binned into ``n_cells`` cells per edge (every system of the batch alike)."""

    n_cells: tuple[int, int, int]
    cell: torch.Tensor  # (3, B*N) integer cell coordinates of each particle
    table: torch.Tensor  # (B * n_cells³, width) flat particle indices, -1 padded
    n: int

    @staticmethod
    def create(
        wrapped: torch.Tensor, box: torch.Tensor, n_cells: tuple[int, int, int]
    ) -> _CellList:
        n_sys, n = wrapped.shape[1:]
        device = wrapped.device
        nc = _constant(tuple(n_cells), device, torch.int64)
        cell_size = box / nc  # (B, 3)
        cell = torch.floor(wrapped / cell_size.t().unsqueeze(-1)).to(torch.int64)  # (3, B, N)
        cell = torch.minimum(torch.clamp(cell, min=0), (nc - 1).view(3, 1, 1)).reshape(3, -1)
        n_per_sys = n_cells[0] * n_cells[1] * n_cells[2]
        sys_index = torch.arange(n_sys * n, device=device) // n
        cell_id = (cell[0] * n_cells[1] + cell[1]) * n_cells[2] + cell[2] + sys_index * n_per_sys
        order = torch.argsort(cell_id, stable=True)
        occupancy = torch.bincount(cell_id, minlength=n_sys * n_per_sys)
        start = torch.cumsum(occupancy, 0) - occupancy
        sorted_cells = cell_id[order]
        rank = torch.arange(n_sys * n, device=device) - start[sorted_cells]
        width = int(occupancy.max().item())
        table = torch.full((n_sys * n_per_sys, width), -1, device=device, dtype=torch.int64)
        table[sorted_cells, rank] = order
        return _CellList(n_cells=n_cells, cell=cell, table=table, n=n)

    @property
    def candidates_per_row(self) -> int:
        return 27 * self.table.shape[1]

    def candidates(self, rows: torch.Tensor) -> torch.Tensor:
        """(R, 27 width) candidate flat indices (-1 = empty slot) for the flat indices ``rows``."""
        nx, ny, nz = self.n_cells
        nc = _constant(self.n_cells, rows.device, torch.int64)
        offsets = _constant(_STENCIL, rows.device, torch.int64)  # (27, 3)
        stencil = torch.remainder(self.cell[:, rows].t()[:, None, :] + offsets[None], nc)
        stencil_id = (
            (stencil[..., 0] * ny + stencil[..., 1]) * nz
            + stencil[..., 2]
            + (rows // self.n)[:, None] * (nx * ny * nz)
        )
        return self.table[stencil_id].reshape(rows.shape[0], -1)


def _all_candidates(n, rows):
    """Every particle of the row's own system as a candidate: (R, N)."""
    row_sys = rows // n
    return row_sys[:, None] * n + torch.arange(n, device=rows.device)[None, :]


def build(
    coords: torch.Tensor,
    types: torch.Tensor,
    box: torch.Tensor,
    radii: ListRadii,
    capacity: int,
    host_box=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build dense neighbour lists.

    Args:
        coords: (3, B, N) positions, wrapped into the box (see :func:`wrap`).
        types: (B, N) int64.
        box: (B, 3) edge lengths; every edge must exceed twice the largest list radius.
        radii: list radii per pair type.
        capacity: row length K.
        host_box: optional (B, 3) NumPy copy of ``box``: the size checks and the number of
            cells then come from it, without reading the device (no host sync on CUDA).

    Returns:
        neighbors: (B, N, K) int64 flat indices, rows padded with the particle's own index;
            entries beyond K are dropped when a row overflows.
        counts: (B, N) int64 true number of neighbours per row (compare with K to detect
            overflow).
    """
    n_sys, n = types.shape
    device = coords.device
    r_max = radii.max_radius
    edges = box.detach().cpu().double().numpy() if host_box is None else host_box
    if (edges <= 2.0 * r_max).any():
        raise ConfigError(
            f"box edges {edges.min():.4f} too small for the neighbour list: every edge must "
            f"exceed 2 (r_c + skin) = {2 * r_max:.4f}; use more particles or a smaller skin"
        )
    n_cells = [int(v) for v in np.floor(edges.min(0) / r_max)]
    use_cells = min(n_cells) >= 3
    list_sq = _constant(radii.radius, device, coords.dtype) ** 2
    flat_types = types.reshape(-1)
    flat_coords = coords.reshape(3, -1)

    cells = _CellList.create(coords, box, tuple(n_cells)) if use_cells else None
    per_row = cells.candidates_per_row if use_cells else n
    chunk = max(1, MAX_CANDIDATES_PER_CHUNK // per_row)

    neighbors = torch.empty((n_sys * n, capacity), device=device, dtype=torch.int64)
    counts = torch.empty(n_sys * n, device=device, dtype=torch.int64)
    for first in range(0, n_sys * n, chunk):
        rows = torch.arange(first, min(first + chunk, n_sys * n), device=device)
        cand = cells.candidates(rows) if use_cells else _all_candidates(n, rows)
        valid = (cand >= 0) & (cand != rows[:, None])
        cand_safe = torch.clamp(cand, min=0)
        row_box = box[rows // n]  # (R, 3)
        delta = flat_coords[:, rows, None] - flat_coords[:, cand_safe]  # (3, R, C)
        length = row_box.t().unsqueeze(-1)
        delta = delta - length * torch.round(delta * (1.0 / length))
        r_sq = (delta * delta).sum(0)
        pair = 2 * flat_types[rows, None] + flat_types[cand_safe]
        mask = valid & (r_sq < list_sq[pair])
        counts[rows] = mask.sum(1)
        slot = torch.cumsum(mask, dim=1) - 1
        slot = torch.where(mask & (slot < capacity), slot, torch.full_like(slot, capacity))
        out = rows[:, None].expand(-1, capacity + 1).clone()
        out.scatter_(1, slot, torch.where(mask, cand_safe, rows[:, None].expand_as(cand_safe)))
        # the dump column `capacity` received every masked entry; restore padding there
        neighbors[rows] = out[:, :capacity]
    return neighbors.view(n_sys, n, capacity), counts.view(n_sys, n)


def brute_force_pairs(
    coords: torch.Tensor, types: torch.Tensor, box: torch.Tensor, radii: ListRadii
):
    """Set of (b, i, j) with ``r_ij < r_list,μν``, by brute force (testing aid, O(N²))."""
    n_sys, n = types.shape
    list_sq = torch.tensor(radii.radius, device=coords.device, dtype=coords.dtype) ** 2
    found = set()
    for b in range(n_sys):
        x = coords[:, b, :].t()
        d = x[:, None, :] - x[None, :, :]
        d = d - box[b] * torch.round(d / box[b])
        r_sq = (d * d).sum(-1)
        pair = 2 * types[b][:, None] + types[b][None, :]
        hit = (r_sq < list_sq[pair]) & ~torch.eye(n, dtype=torch.bool, device=coords.device)
        for i, j in torch.nonzero(hit).tolist():
            found.add((b, i, j))
    return found
