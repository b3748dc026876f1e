"""Neighbour queries outside the MD engines: bonded pairs for C_B and the edges of graphs.

One implementation for the whole project, built on freud's periodic AABB tree
(``freud.locality.AABBQuery`` on a ``freud.box.Box``), the field's standard.  freud works in
single precision, so it is asked for candidates within a slightly larger radius and every
distance is then recomputed in float64 with the minimum-image convention: results are exact
in double precision.

Positions follow the project convention, ``[0, L)`` (or unwrapped, which is wrapped here).
"""

from __future__ import annotations

import numpy as np

from tbotan.physics import kalj

#: Extra search radius absorbing freud's float32 rounding (σ_AA).
_MARGIN = 1e-3


def _box_array(box) -> np.ndarray:
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,)).copy()
    if np.any(box <= 0) or not np.all(np.isfinite(box)):
        raise ValueError(f"box lengths must be positive and finite, got {box}")
    return box


def pairs_within(
    positions: np.ndarray, box, r_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (j, k), j ≠ k, with minimum-image distance < ``r_max``.

    Args:
        positions: (N, 3) float64 positions (any image).
        box: cubic edge L or (3,) edge lengths; every edge must exceed 2 r_max.
        r_max: cut-off radius.

    Returns:
        ``(j, k, r)``: (P,) int64 source and target indices sorted by (j, k), and (P,) float64
        distances.  Both directions of every pair are present.
    """
    import freud

    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {positions.shape}")
    box = _box_array(box)
    if np.any(box <= 2.0 * r_max):
        raise ValueError(f"box {box} too small for a neighbour search of radius {r_max}")
    wrapped = positions - box * np.floor(positions / box)
    fbox = freud.box.Box(Lx=box[0], Ly=box[1], Lz=box[2])
    centred = (wrapped - box / 2.0).astype(np.float32)
    centred = np.asarray(fbox.wrap(centred), dtype=np.float32)
    query = freud.locality.AABBQuery(fbox, centred)
    nlist = query.query(centred, dict(r_max=r_max + _MARGIN, exclude_ii=True)).toNeighborList()
    j = np.asarray(nlist.query_point_indices, dtype=np.int64)
    k = np.asarray(nlist.point_indices, dtype=np.int64)
    delta = kalj.minimum_image(wrapped[k] - wrapped[j], box)
    r = np.sqrt(np.einsum("pd,pd->p", delta, delta))
    keep = r < r_max
    j, k, r = j[keep], k[keep], r[keep]
    order = np.lexsort((k, j))
    return j[order], k[order], r[order]


def graph_edges(positions: np.ndarray, box, cutoff: float) -> np.ndarray:
    """(2, E) int64 edges (source, target) with cut-off ``cutoff``, both directions."""
    j, k, _ = pairs_within(positions, box, cutoff)
    return np.stack([j, k])


def bonded_pairs(
    positions: np.ndarray, types: np.ndarray, box, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (j, k) with ``r_jk < factor · σ_{t_j t_k}`` (both directions)."""
    types = np.asarray(types).astype(np.int64)
    j, k, r = pairs_within(positions, box, factor * float(kalj.SIGMA.max()))
    keep = r < factor * kalj.SIGMA[types[j], types[k]]
    return j[keep], k[keep]


def pair_distances(positions: np.ndarray, j: np.ndarray, k: np.ndarray, box) -> np.ndarray:
    """Minimum-image distances |r_k − r_j| of the given pairs, float64.

    ``positions`` may have leading batch axes: (..., N, 3) → (..., P).
    """
    box = _box_array(box)
    positions = np.asarray(positions, dtype=np.float64)
    delta = kalj.minimum_image(positions[..., k, :] - positions[..., j, :], box)
    return np.sqrt(np.einsum("...pd,...pd->...p", delta, delta))
