"""Shifted-force KALJ forces and energies on dense neighbour lists (torch, batched).

Layout (structure of arrays, so that the three force components and the energy are reductions
over the same loop and fuse into one kernel under ``torch.compile``):

- ``coords``: (3, B, N) positions, component-major;
- ``neighbors``: (B, N, K) int64 *flat* indices ``b * N + j`` of each particle's neighbours;
  rows are padded with the particle's own flat index, which the kernels mask out;
- ``types``: (B, N) int64, 0 = A, 1 = B;
- ``box``: (B, 3) edge lengths.

The pair coefficients are indexed by ``2 t_i + t_j`` (see :func:`tbotan.physics.kalj.pair_table`).
Forces are exact for every pair inside its cut-off as long as the neighbour list holds every
pair within ``r_c + skin`` of the positions it was built from and no particle has moved more
than ``skin / 2`` since.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tbotan.physics import kalj


@dataclass(frozen=True)
class PairCoefficients:
    """The KALJ pair table as (4,) tensors on one device and dtype (see ``kalj.PairTable``)."""

    c12: torch.Tensor
    c6: torch.Tensor
    r_cut: torch.Tensor
    r_cut_sq: torch.Tensor
    u_cut: torch.Tensor
    du_cut: torch.Tensor
    sigma: torch.Tensor

    @staticmethod
    def create(device: torch.device, dtype: torch.dtype) -> PairCoefficients:
        table = kalj.pair_table()

        def t(a):
            return torch.as_tensor(a, device=device, dtype=dtype)

        return PairCoefficients(
            c12=t(table.c12),
            c6=t(table.c6),
            r_cut=t(table.r_cut),
            r_cut_sq=t(table.r_cut_sq),
            u_cut=t(table.u_cut),
            du_cut=t(table.du_cut),
            sigma=t(kalj.SIGMA.ravel()),
        )


def _pair_geometry(coords, neighbors, types, box):
    """Minimum-image separations of every listed pair and its pair-type index.

    Returns:
        dx, dy, dz: (B, N, K) components of ``r_i − r_j``.
        r_sq: (B, N, K).
        pair: (B, N, K) int64 pair-type index ``2 t_i + t_j``.
        listed: (B, N, K) bool, False on padding (j == i).
    """
    n_sys, n = types.shape
    flat_types = types.reshape(-1)
    own = torch.arange(n_sys * n, device=neighbors.device, dtype=neighbors.dtype).view(n_sys, n, 1)
    listed = neighbors != own

    inv_box = 1.0 / box  # one division per system, then multiplications per pair

    def component(c: torch.Tensor, d: int) -> torch.Tensor:
        length = box[:, d].view(n_sys, 1, 1)
        delta = c.view(n_sys, n, 1) - c.reshape(-1)[neighbors]
        return delta - length * torch.round(delta * inv_box[:, d].view(n_sys, 1, 1))

    dx = component(coords[0], 0)
    dy = component(coords[1], 1)
    dz = component(coords[2], 2)
    r_sq = dx * dx + dy * dy + dz * dz
    pair = 2 * types.view(n_sys, n, 1) + flat_types[neighbors]
    return dx, dy, dz, r_sq, pair, listed


def _pair_terms(r_sq, pair, listed, coeff: PairCoefficients, with_energy: bool):
    """``−U'(r)/r`` and (optionally) ``U(r)`` of every listed pair, zero outside the cut-off."""
    inside = (r_sq < coeff.r_cut_sq[pair]) & listed
    r_sq_safe = torch.where(inside, r_sq, torch.ones_like(r_sq))
    inv_r = torch.rsqrt(r_sq_safe)
    inv_r2 = inv_r * inv_r
    inv_r6 = inv_r2 * inv_r2 * inv_r2
    du_cut = coeff.du_cut[pair]
    f_over_r = (12.0 * coeff.c12[pair] * inv_r6 * inv_r6 - 6.0 * coeff.c6[pair] * inv_r6) * inv_r2
    f_over_r = torch.where(inside, f_over_r + du_cut * inv_r, torch.zeros_like(f_over_r))
    if not with_energy:
        return f_over_r, None
    r = r_sq_safe * inv_r
    u = coeff.c12[pair] * inv_r6 * inv_r6 - coeff.c6[pair] * inv_r6
    u = u - coeff.u_cut[pair] - (r - coeff.r_cut[pair]) * du_cut
    return f_over_r, torch.where(inside, u, torch.zeros_like(u))


def forces(
    coords: torch.Tensor,
    neighbors: torch.Tensor,
    types: torch.Tensor,
    box: torch.Tensor,
    coeff: PairCoefficients,
) -> torch.Tensor:
    """Shifted-force KALJ forces.

    Args:
        coords: (3, B, N) positions.
        neighbors: (B, N, K) flat neighbour indices (padding = own index).
        types: (B, N) int64.
        box: (B, 3) edge lengths.
        coeff: pair coefficients on the same device/dtype.

    Returns:
        (3, B, N) forces ``F_i = Σ_j −U'(r_ij) r̂_ij``.
    """
    dx, dy, dz, r_sq, pair, listed = _pair_geometry(coords, neighbors, types, box)
    f_over_r, _ = _pair_terms(r_sq, pair, listed, coeff, with_energy=False)
    return torch.stack([(f_over_r * dx).sum(-1), (f_over_r * dy).sum(-1), (f_over_r * dz).sum(-1)])


def energy_virial(
    coords: torch.Tensor,
    neighbors: torch.Tensor,
    types: torch.Tensor,
    box: torch.Tensor,
    coeff: PairCoefficients,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forces, per-particle energies, virial and closest approach.

    Args: as :func:`forces`.

    Returns:
        forces: (3, B, N).
        energy: (B, N) per-particle energy (half of each pair's U).
        virial: (B,) ``W = Σ_{i<j} r_ij · F_ij``.
        min_r_over_sigma: (B,) smallest ``r_ij / σ_μν`` among listed pairs (inf if none).
    """
    dx, dy, dz, r_sq, pair, listed = _pair_geometry(coords, neighbors, types, box)
    f_over_r, u = _pair_terms(r_sq, pair, listed, coeff, with_energy=True)
    f = torch.stack([(f_over_r * dx).sum(-1), (f_over_r * dy).sum(-1), (f_over_r * dz).sum(-1)])
    energy = 0.5 * u.sum(-1)
    virial = 0.5 * (f_over_r * r_sq).sum(dim=(1, 2))
    ratio_sq = torch.where(listed, r_sq / coeff.sigma[pair] ** 2, torch.full_like(r_sq, torch.inf))
    min_ratio = torch.sqrt(ratio_sq.amin(dim=(1, 2)))
    return f, energy, virial, min_ratio
