"""Correlation and distance observables of the paper (docs/physics.md §9).

Small pure functions on arrays with documented shapes:

- :func:`pearson`, :func:`node_pearson`, :func:`edge_pearson`: Pearson ρ (paper Eq. A1) per
  configuration, over type-A particles or over the edges of a graph;
  :func:`seed_statistics` aggregates per-configuration values over configurations and seeds.
- :func:`ratio_distribution`: P(T_pred/T_MD) normalised as Eq. B1.
- :func:`embedding_distance_matrix`, :func:`embedding_distance_matrices_per_seed`: D(T_i, T_j)
  of Eq. 11–12.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tbotan.physics import kalj

# ============================================================================ Pearson ρ


def pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson ρ of paper Eq. A1 along ``axis`` (float64; NaN where a variance vanishes).

    ρ = Σ δx δy / sqrt(Σ δx² Σ δy²), δx = x − mean(x).  The one Pearson ρ of the package
    (training's validation metrics, ``tbotan predict``'s summary and the analysis); torch
    tensors are accepted (detached and copied to the CPU).
    """
    x = _float64(x)
    y = _float64(y)
    dx = x - x.mean(axis=axis, keepdims=True)
    dy = y - y.mean(axis=axis, keepdims=True)
    return _rho((dx * dy).sum(axis=axis), (dx * dx).sum(axis=axis), (dy * dy).sum(axis=axis))


def _float64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _rho(sxy: np.ndarray, sxx: np.ndarray, syy: np.ndarray) -> np.ndarray:
    """ρ = Σδxδy / sqrt(Σδx² Σδy²) from the sums; NaN where a variance vanishes."""
    den = np.sqrt(sxx * syy)
    return np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)


def node_pearson(
    prediction: np.ndarray, target: np.ndarray, types: np.ndarray, species: int = kalj.TYPE_A
) -> np.ndarray:
    """Pearson ρ per configuration over the particles of one species (type A by default).

    Args:
        prediction, target: (C, N) per-particle fields (e.g. predicted and MD C_B).
        types: (C, N) particle types (0 = A, 1 = B).
        species: which particles enter.

    Returns:
        (C,) float64 ρ per configuration.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    w = (np.asarray(types) == species).astype(np.float64)
    n = w.sum(axis=1, keepdims=True)
    dx = (prediction - (w * prediction).sum(axis=1, keepdims=True) / n) * w
    dy = (target - (w * target).sum(axis=1, keepdims=True) / n) * w
    return _rho((dx * dy).sum(axis=1), (dx * dx).sum(axis=1), (dy * dy).sum(axis=1))


def edge_pearson(prediction: np.ndarray, target: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Pearson ρ per configuration over all edges of a graph.

    Args:
        prediction, target: (E,) edge values of all configurations, concatenated.
        offsets: (C+1,) edges of configuration c are ``[offsets[c], offsets[c+1])``.

    Returns:
        (C,) float64 ρ per configuration (NaN for a configuration without edges).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    n_conf = counts.size
    conf = np.repeat(np.arange(n_conf), counts)
    x = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)

    def seg_sum(v):
        return np.bincount(conf, weights=v, minlength=n_conf)

    with np.errstate(invalid="ignore", divide="ignore"):
        dx = x - (seg_sum(x) / counts)[conf]
        dy = y - (seg_sum(y) / counts)[conf]
    return _rho(seg_sum(dx * dy), seg_sum(dx * dx), seg_sum(dy * dy))


@dataclass
class SeedStatistics:
    """A per-configuration quantity aggregated over configurations and seeds.

    All standard deviations are population standard deviations (ddof = 0).

    Attributes:
        seeds: (S,) the seeds.
        per_seed_mean: (S,) mean over configurations, per seed.
        per_seed_std: (S,) standard deviation over configurations, per seed.
        n_configurations: configurations per seed.
        mean: mean over seeds of ``per_seed_mean``.
        std_seeds: standard deviation over seeds of ``per_seed_mean`` (0 for one seed).
        std_configurations: sqrt(mean over seeds of the per-seed variances): the spread of
            single configurations (the paper's error bars, "standard deviation over samples").
    """

    seeds: list[int]
    per_seed_mean: np.ndarray
    per_seed_std: np.ndarray
    n_configurations: int
    mean: float
    std_seeds: float
    std_configurations: float

    def to_dict(self) -> dict:
        return {
            "mean": self.mean,
            "std_seeds": self.std_seeds,
            "std_configurations": self.std_configurations,
            "n_configurations": self.n_configurations,
            "per_seed": {
                str(s): {"mean": float(m), "std": float(d)}
                for s, m, d in zip(self.seeds, self.per_seed_mean, self.per_seed_std, strict=True)
            },
        }


def seed_statistics(values: Mapping[int, np.ndarray]) -> SeedStatistics:
    """Aggregate ``{seed: (C,) values}`` (same C for every seed) over configurations and seeds."""
    if not values:
        raise ValueError("seed_statistics needs values of at least one seed")
    seeds = sorted(values)
    arrays = [np.asarray(values[s], dtype=np.float64) for s in seeds]
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1 or arrays[0].ndim != 1 or arrays[0].size == 0:
        raise ValueError(f"seed_statistics needs (C,) arrays of one size per seed, got {sizes}")
    stack = np.stack(arrays)  # (S, C)
    means = stack.mean(axis=1)
    stds = stack.std(axis=1)
    return SeedStatistics(
        seeds=seeds,
        per_seed_mean=means,
        per_seed_std=stds,
        n_configurations=stack.shape[1],
        mean=float(means.mean()),
        std_seeds=float(means.std()),
        std_configurations=float(np.sqrt((stds**2).mean())),
    )


# ============================================================================ T_pred, Eq. B1


def ratio_distribution(
    ratios: np.ndarray, bin_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram P(x) of x = T_pred/T_MD normalised as Eq. B1, ∫ dx P(x) = 1.

    Bins of ``bin_width`` aligned on multiples of the width, covering the data.

    Returns:
        ``(centres, density, edges)``: (B,), (B,), (B+1,).
    """
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    if ratios.size == 0:
        raise ValueError("ratio_distribution needs at least one value")
    lo = np.floor(ratios.min() / bin_width)
    hi = np.floor(ratios.max() / bin_width) + 1
    edges = bin_width * np.arange(lo, hi + 1)
    density, edges = np.histogram(ratios, bins=edges, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), density, edges


# ============================================================================ D(T_i, T_j)


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distances between points: (..., K, H) → (..., K, K)."""
    points = np.asarray(points, dtype=np.float64)
    diff = points[..., :, None, :] - points[..., None, :, :]
    return np.sqrt((diff * diff).sum(axis=-1))


def embedding_distance_matrix(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """D(T_i, T_j) = |⟨u(T_i)⟩ − ⟨u(T_j)⟩| with ⟨u(T)⟩ averaged over seeds and configurations.

    Args:
        embeddings: K arrays, one per temperature, of shape (S, C_i, H) (seeds, configurations,
            embedding size); Eq. 11 averages each over its S·C_i vectors.

    Returns:
        (K, K) float64 symmetric matrix with zero diagonal.

    Note: the latent spaces of independently trained seeds are not aligned; Eq. 11 averages
    them anyway (as the paper does).  :func:`embedding_distance_matrices_per_seed` shows
    whether the structure of D survives within each seed.
    """
    means = np.stack([np.asarray(u, dtype=np.float64).mean(axis=(0, 1)) for u in embeddings])
    return pairwise_distances(means)


def embedding_distance_matrices_per_seed(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """D_s(T_i, T_j) = |⟨u_s(T_i)⟩_c − ⟨u_s(T_j)⟩_c| per seed.

    Args:
        embeddings: K arrays (S, C_i, H), as for :func:`embedding_distance_matrix`.

    Returns:
        (S, K, K) float64.
    """
    means = np.stack(
        [np.asarray(u, dtype=np.float64).mean(axis=1) for u in embeddings], axis=1
    )  # (S, K, H)
    return pairwise_distances(means)
