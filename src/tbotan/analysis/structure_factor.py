"""The four-point structure factor S_B(q) of paper Eq. 10 (docs/physics.md §9).

:func:`reciprocal_lattice`, :func:`bin_wavevectors`, :func:`four_point_structure_factor`: S_B(q)
from any per-particle field, on the reciprocal lattice of the periodic box, binned in |q|,
vectorised over q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbotan.physics import kalj

# ============================================================================ S_B(q), Eq. 10


def reciprocal_lattice(box_length: float, q_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Half of the reciprocal lattice of a cubic periodic box, 0 < |q| ≤ q_max.

    q = 2π n / L for integer vectors n ≠ 0.  Of every pair ±n only the member whose first
    non-zero component is positive is kept: for a real field S(q) = S(−q), so the half
    lattice carries every value exactly once.

    Returns:
        ``(n, q_norm)``: (M, 3) int64 integer vectors sorted by |q|, and (M,) float64 |q|
        (σ_AA⁻¹).
    """
    unit = 2.0 * np.pi / float(box_length)
    n_max = int(np.floor(q_max / unit))
    r = np.arange(-n_max, n_max + 1)
    n = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    n2 = (n * n).sum(axis=1)
    # |q| ≤ q_max on the integer lattice, with a relative tolerance for q_max on a lattice shell
    inside = (n2 > 0) & (n2 <= (q_max / unit) ** 2 * (1.0 + 1e-12))
    half = (
        (n[:, 0] > 0)
        | ((n[:, 0] == 0) & (n[:, 1] > 0))
        | ((n[:, 0] == 0) & (n[:, 1] == 0) & (n[:, 2] > 0))
    )
    n = n[inside & half]
    q_norm = unit * np.sqrt((n * n).sum(axis=1).astype(np.float64))
    order = np.argsort(q_norm, kind="stable")
    return n[order].astype(np.int64), q_norm[order]


@dataclass
class QBins:
    """Wave vectors binned in |q|: bin k holds ``edges[k] ≤ |q| < edges[k+1]``.

    Only non-empty bins are kept.

    Attributes:
        edges: (B, 2) lower and upper |q| of each kept bin.
        index: (M,) kept bin of every wave vector.
        centres: (B,) mean |q| of the vectors in each bin (σ_AA⁻¹).
        counts: (B,) wave vectors per bin.
    """

    edges: np.ndarray
    index: np.ndarray
    centres: np.ndarray
    counts: np.ndarray


def bin_wavevectors(q_norm: np.ndarray, bin_width: float) -> QBins:
    """Bin |q| in bins of ``bin_width`` starting at 0; every vector lands in exactly one bin."""
    q_norm = np.asarray(q_norm, dtype=np.float64)
    raw = np.floor(q_norm / bin_width).astype(np.int64)
    kept, index = np.unique(raw, return_inverse=True)
    counts = np.bincount(index, minlength=kept.size)
    centres = np.bincount(index, weights=q_norm, minlength=kept.size) / counts
    edges = np.stack([kept * bin_width, (kept + 1) * bin_width], axis=1).astype(np.float64)
    return QBins(edges=edges, index=index.reshape(-1), centres=centres, counts=counts)


@dataclass
class StructureFactor:
    """S_B(q) of Eq. 10, binned in |q|.

    Attributes:
        q: (B,) bin centres, the mean |q| of the vectors in each bin (σ_AA⁻¹).
        counts: (B,) wave vectors (of the half lattice) per bin.
        per_configuration: (..., C, B) S_B per configuration (bin average over its vectors);
            leading axes are those of the fields.
    """

    q: np.ndarray
    counts: np.ndarray
    per_configuration: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """(..., B) average over configurations."""
        return self.per_configuration.mean(axis=-2)


def four_point_structure_factor(
    positions: np.ndarray,
    fields: np.ndarray,
    types: np.ndarray,
    box_length: float,
    q_max: float,
    bin_width: float,
    species: int = kalj.TYPE_A,
) -> StructureFactor:
    """Four-point structure factor of a per-particle field (paper Eq. 10).

    S_B(q) = ⟨W(q) W(−q)⟩ / N_A,  W(q) = Σ_{j∈A} (X_j − mean_A X) exp(i q·r_j(0)),

    with q = 2π n / L on the reciprocal lattice, 0 < |q| ≤ ``q_max``, binned in |q| (bins of
    ``bin_width``; the value of a bin is the average over its wave vectors), per configuration.
    X is any per-particle field, MD or predicted C_B.  Several fields on the same positions are
    evaluated together (their phase factors are shared).

    The sum over particles is vectorised over all q at once: exp(i q·r) factorises into
    per-axis phases exp(i 2π n_x x / L) exp(i 2π n_y y / L) exp(i 2π n_z z / L), so W on the
    whole (n_x ≥ 0) half cube is one complex matrix product per configuration.

    Args:
        positions: (C, N, 3) float64 thermal positions at t = 0 in [0, L) (σ_AA).
        fields: (C, N) or (F, C, N) per-particle fields.
        types: (C, N) particle types; only ``species`` (A) particles enter.
        box_length: L (σ_AA).
        q_max: largest |q| (σ_AA⁻¹).
        bin_width: width of the |q| bins (σ_AA⁻¹).

    Returns:
        :class:`StructureFactor` with ``per_configuration`` of shape (C, B) or (F, C, B).
    """
    positions = np.asarray(positions, dtype=np.float64)
    fields = np.asarray(fields, dtype=np.float64)
    single = fields.ndim == 2
    if single:
        fields = fields[None]
    n_fields, n_conf, n_part = fields.shape
    if positions.shape != (n_conf, n_part, 3) or np.shape(types) != (n_conf, n_part):
        raise ValueError(
            f"positions {positions.shape}, fields {fields.shape[1:]} and types {np.shape(types)} "
            "must describe the same (C, N) particles"
        )
    n_vec, q_norm = reciprocal_lattice(box_length, q_max)
    if n_vec.shape[0] == 0:
        raise ValueError(
            f"no reciprocal-lattice vector with |q| ≤ q_max = {q_max} in a box of L = {box_length}"
        )
    bins = bin_wavevectors(q_norm, bin_width)
    n_max = int(np.abs(n_vec).max())
    unit = 2.0 * np.pi / float(box_length)
    nx = np.arange(0, n_max + 1)  # the half lattice has n_x ≥ 0
    nyz = np.arange(-n_max, n_max + 1)
    ix, iy, iz = n_vec[:, 0], n_vec[:, 1] + n_max, n_vec[:, 2] + n_max
    out = np.empty((n_fields, n_conf, bins.counts.size))
    for c in range(n_conf):
        sel = np.asarray(types[c]) == species
        r = positions[c, sel]  # (N_A, 3)
        n_a = r.shape[0]
        delta = fields[:, c, sel]
        delta = delta - delta.mean(axis=1, keepdims=True)  # (F, N_A)
        px = np.exp(1j * unit * np.outer(r[:, 0], nx))  # (N_A, X)
        py = np.exp(1j * unit * np.outer(r[:, 1], nyz))  # (N_A, Y)
        pz = np.exp(1j * unit * np.outer(r[:, 2], nyz))  # (N_A, Z)
        pxy = (px[:, :, None] * py[:, None, :]).reshape(n_a, -1)  # (N_A, X·Y)
        g = (delta.T[:, :, None] * pz[:, None, :]).reshape(n_a, -1)  # (N_A, F·Z)
        w = (pxy.T @ g).reshape(nx.size, nyz.size, n_fields, nyz.size)  # W(n) per field
        w_q = w[ix, iy, :, iz]  # (M, F)
        s_q = (w_q.real**2 + w_q.imag**2) / n_a
        for f in range(n_fields):
            out[f, c] = np.bincount(bins.index, weights=s_q[:, f], minlength=bins.counts.size)
    out /= bins.counts
    return StructureFactor(
        q=bins.centres, counts=bins.counts, per_configuration=out[0] if single else out
    )
