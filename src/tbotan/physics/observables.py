"""Dynamical observables: bond-breaking correlation C_B, propensity, edge labels, F_s(q, t), τα.

All functions work on NumPy float64 arrays in the project's conventions: positions (N, 3) at
t = 0 and (R, N, 3) for R isoconfigurational replicas at time t; positions may be wrapped or
unwrapped where only minimum-image *distances* are needed (C_B, edge labels), and must be
unwrapped where *displacements* are needed (propensity, F_s).

Definitions (docs/physics.md §2, §5; paper Eq. 5):

- bonds of j at t = 0: the particles k with ``r_jk(0) < bond_in σ_jk`` (n_j of them);
- ``C_B^j(t) = ⟨ n_j(t|0) / n_j ⟩_iso``, n_j(t|0) = how many of those bonds have
  ``r_jk(t) < bond_out σ_jk`` in a replica at time t;
- propensity ``⟨|r_j(t) − r_j(0)|⟩_iso``;
- edge label ``E_jk = ⟨r_jk(t)⟩_iso − r_jk(0)`` (thermal-structure distances);
- ``F_s(q, t) = ⟨ sin(q|Δr|) / (q|Δr|) ⟩`` over A particles; τα where ``F_s = 1/e``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbotan.physics import kalj, neighbors


@dataclass
class BondBreaking:
    """C_B of every particle of one configuration.

    Attributes:
        cb: (N,) float64 C_B^j(t).
        n_bonds: (N,) int64 n_j.
        pairs: (2, P) int64 bonded ordered pairs (j, k) at t = 0.
        per_replica: (R, N) float64 n_j(t|0)/n_j of each replica.
    """

    cb: np.ndarray
    n_bonds: np.ndarray
    pairs: np.ndarray
    per_replica: np.ndarray


#: The paper's bond thresholds (units of σ_jk): bonds at t = 0 are pairs closer than
#: ``BOND_IN``; a bond is broken once the pair is farther apart than ``BOND_OUT``
#: (docs/physics.md §5; the configuration's ``iso.bond_in``, ``iso.bond_out`` default to them).
BOND_IN: float = 1.3
BOND_OUT: float = 1.6


def bond_breaking(
    initial: np.ndarray,
    final: np.ndarray,
    types: np.ndarray,
    box,
    bond_in: float = BOND_IN,
    bond_out: float = BOND_OUT,
) -> BondBreaking:
    """Bond-breaking correlation ``C_B^j(t)`` of one configuration over R replicas.

    Args:
        initial: (N, 3) positions at t = 0.
        final: (R, N, 3) replica positions at t (any image; distances are minimum-image).
        types: (N,) 0 = A, 1 = B.
        box: cubic edge L or (3,) edges.
        bond_in: bonds at t = 0 are pairs closer than ``bond_in σ_jk``.
        bond_out: a bond survives while the pair is closer than ``bond_out σ_jk``.

    Returns:
        :class:`BondBreaking`.  A particle without bonds at t = 0 (impossible in a dense
        liquid) gets C_B = 1: nothing of it can break.
    """
    initial = np.asarray(initial, dtype=np.float64)
    final = np.asarray(final, dtype=np.float64)
    types = np.asarray(types).astype(np.int64)
    n = initial.shape[0]
    if final.ndim != 3 or final.shape[1:] != (n, 3):
        raise ValueError(f"final positions must have shape (R, {n}, 3), got {final.shape}")
    if bond_out <= bond_in:
        raise ValueError(f"bond_out ({bond_out}) must exceed bond_in ({bond_in})")
    j, k = neighbors.bonded_pairs(initial, types, box, bond_in)
    n_bonds = np.bincount(j, minlength=n)
    r_t = neighbors.pair_distances(final, j, k, box)  # (R, P)
    kept = r_t < bond_out * kalj.SIGMA[types[j], types[k]]
    kept_per_particle = np.stack([np.bincount(j, weights=row, minlength=n) for row in kept])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(n_bonds > 0, kept_per_particle / np.maximum(n_bonds, 1), 1.0)
    return BondBreaking(
        cb=ratio.mean(axis=0), n_bonds=n_bonds, pairs=np.stack([j, k]), per_replica=ratio
    )


def propensity(initial_unwrapped: np.ndarray, final_unwrapped: np.ndarray) -> np.ndarray:
    """(N,) ``⟨|r_j(t) − r_j(0)|⟩_iso`` from unwrapped positions (N, 3) and (R, N, 3)."""
    d = np.asarray(final_unwrapped, dtype=np.float64) - np.asarray(initial_unwrapped)[None]
    return np.sqrt((d * d).sum(-1)).mean(axis=0)


def edge_labels(initial: np.ndarray, final: np.ndarray, edges: np.ndarray, box) -> np.ndarray:
    """(E,) ``⟨r_jk(t)⟩_iso − r_jk(0)`` for the edges (2, E) (minimum-image distances)."""
    j, k = np.asarray(edges[0]), np.asarray(edges[1])
    r0 = neighbors.pair_distances(initial, j, k, box)
    rt = neighbors.pair_distances(final, j, k, box)  # (R, E)
    return rt.mean(axis=0) - r0


def self_intermediate_scattering(displacements: np.ndarray, q: float) -> np.ndarray:
    """Isotropic self-intermediate scattering function of displacements.

    Args:
        displacements: (..., M, 3) displacement vectors (e.g. A particles × origins).
        q: wave number.

    Returns:
        (...,) ``⟨sin(q|Δr|)/(q|Δr|)⟩`` over the M displacements (1 for Δr = 0).
    """
    r = np.sqrt((np.asarray(displacements, dtype=np.float64) ** 2).sum(-1))
    return np.sinc(q * r / np.pi).mean(axis=-1)  # np.sinc(x) = sin(πx)/(πx)


def log_time_grid(t_max: float, dt: float, points_per_decade: int) -> np.ndarray:
    """Log-spaced lag times (multiples of ``dt``, unique, from dt to ≥ t_max), shape (K,)."""
    if not (t_max > dt > 0):
        raise ValueError(f"need t_max > dt > 0, got t_max={t_max}, dt={dt}")
    decades = np.log10(t_max / dt)
    n = max(2, int(np.ceil(decades * points_per_decade)) + 1)
    steps = np.unique(np.round(np.logspace(0, decades, n)).astype(np.int64))
    return steps * dt


def tau_alpha_from_fs(times: np.ndarray, fs: np.ndarray, level: float = np.exp(-1.0)) -> float:
    """τα: where F_s(q, t) first falls to ``level`` (1/e), linear in log t between grid points.

    Args:
        times: (K,) increasing times > 0.
        fs: (K,) F_s values.
        level: the F_s value that defines τα (default 1/e).

    Raises:
        ValueError: F_s never reaches the level on this grid (run longer).
    """
    times = np.asarray(times, dtype=np.float64)
    fs = np.asarray(fs, dtype=np.float64)
    if times.shape != fs.shape or times.ndim != 1:
        raise ValueError("times and fs must be 1-d arrays of the same length")
    below = np.nonzero(fs <= level)[0]
    if below.size == 0:
        raise ValueError(
            f"F_s(q, t) stays above {level:.4f} up to t = {times[-1]:g} (last value "
            f"{fs[-1]:.4f}): the measurement is too short to give τα"
        )
    i = int(below[0])
    if i == 0:
        return float(times[0])
    t0, t1 = np.log(times[i - 1]), np.log(times[i])
    f0, f1 = fs[i - 1], fs[i]
    return float(np.exp(t0 + (level - f0) * (t1 - t0) / (f1 - f0)))
