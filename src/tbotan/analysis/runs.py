"""Observables of the paper from predictions and MD labels (docs/physics.md §9).

Building blocks, each a small pure function on arrays with documented shapes:

- :func:`pearson`, :func:`node_pearson`, :func:`edge_pearson`: Pearson ρ (paper Eq. A1) per
  configuration, over type-A particles or over the edges of a graph;
  :func:`seed_statistics` aggregates per-configuration values over configurations and seeds.
- :func:`reciprocal_lattice`, :func:`bin_wavevectors`, :func:`four_point_structure_factor`:
  S_B(q) of Eq. 10 from any per-particle field, on the reciprocal lattice of the periodic box,
  binned in |q|, vectorised over q.
- :func:`ratio_distribution`: P(T_pred/T_MD) normalised as Eq. B1.
- :func:`embedding_distance_matrix`, :func:`embedding_distance_matrices_per_seed`: D(T_i, T_j)
  of Eq. 11–12.

Predictions files (docs/formats.md) are written with :func:`write_predictions` and read with
:func:`read_predictions`.  :func:`analyse_run` reads a whole run directory (datasets,
predictions, training metrics) and returns a :class:`RunAnalysis`, from which
:func:`summarise` builds the machine-readable summary and :mod:`tbotan.figures` draws the
paper's figures.

Example::

    from tbotan import analysis, config
    cfg = config.load("results/paper/config.yaml")
    run = analysis.analyse_run("results/paper", cfg)
    stats = run.pearson(run.main_group, "0.44", "node")
    print(stats.mean, stats.std_seeds, stats.std_configurations)
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tbotan.config import temperature_label
from tbotan.dataset import (
    DatasetContent,
    DatasetError,
    DatasetFile,  # HDF5 attribute → Python value, as for datasets
)

log = logging.getLogger(__name__)

SPECIES_A = 0  # type index of the A particles (docs/formats.md: 0 = A, 1 = B)

# ============================================================================ predictions files

from tbotan.predictions import (  # noqa: E402  (one implementation, shared with inference)
    VARIANTS,
    Predictions,
    PredictionsError,
    read_predictions,
)

# ============================================================================ model ids

_MODEL_RE = re.compile(r"^(is\+ts|is|ts)_lg([0-9.eE+-]+)_s(\d+)$")


@dataclass(frozen=True)
class ModelId:
    """A trained model: input variant, λ_g and seed; its name is ``{variant}_lg{λ_g:g}_s{seed}``."""

    variant: str
    lambda_global: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant}_lg{self.lambda_global:g}_s{self.seed}"

    @property
    def group(self) -> Group:
        return Group(self.variant, self.lambda_global)

    @staticmethod
    def parse(name: str) -> ModelId:
        """From a model name such as ``is+ts_lg0.01_s0``; ValueError when it is not one."""
        match = _MODEL_RE.match(name)
        if match is None:
            raise ValueError(
                f"{name!r} is not a model id of the form {{variant}}_lg{{lambda_g}}_s{{seed}} "
                f"with variant in {VARIANTS}"
            )
        variant, lg, seed = match.groups()
        try:
            return ModelId(variant, float(lg), int(seed))
        except ValueError as exc:
            raise ValueError(f"{name!r}: λ_g {lg!r} is not a number") from exc


@dataclass(frozen=True)
class Group:
    """Models that differ only by seed: one input variant and one λ_g."""

    variant: str
    lambda_global: float

    @property
    def name(self) -> str:
        return f"{self.variant}_lg{self.lambda_global:g}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Group) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)


# ============================================================================ Pearson ρ


def pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson ρ of paper Eq. A1 along ``axis`` (float64; NaN where a variance vanishes).

    ρ = Σ δx δy / sqrt(Σ δx² Σ δy²), δx = x − mean(x).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dx = x - x.mean(axis=axis, keepdims=True)
    dy = y - y.mean(axis=axis, keepdims=True)
    return _rho((dx * dy).sum(axis=axis), (dx * dx).sum(axis=axis), (dy * dy).sum(axis=axis))


def _rho(sxy: np.ndarray, sxx: np.ndarray, syy: np.ndarray) -> np.ndarray:
    """ρ = Σδxδy / sqrt(Σδx² Σδy²) from the sums; NaN where a variance vanishes."""
    den = np.sqrt(sxx * syy)
    return np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)


def node_pearson(
    prediction: np.ndarray, target: np.ndarray, types: np.ndarray, species: int = SPECIES_A
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
    species: int = SPECIES_A,
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


# ============================================================================ training metrics


def read_metrics(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``models/{model}/metrics.csv`` as {column: (epochs,) float64}, sorted by epoch.

    Raises:
        ValueError: a missing file, no ``epoch`` column, or a value that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training metrics not found: {path}")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{path}: expected a CSV file with a header row holding 'epoch'")
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        try:
            out[key] = np.array(
                [float(row[key]) if row[key] not in ("", None) else np.nan for row in rows]
            )
        except ValueError as exc:
            raise ValueError(f"{path}: column {key!r} holds a value that is not a number") from exc
    order = np.argsort(out["epoch"], kind="stable")
    return {k: v[order] for k, v in out.items()}


# ============================================================================ a whole run


@dataclass
class TemperatureData:
    """MD side of one temperature (its test split).

    Attributes:
        label: temperature label (``'0.44'``).
        T: temperature (ε_AA / k_B).
        trained: whether the model trains on T.
        n_configurations, n_particles: C, N.
        box_length: L (σ_AA).
        tau_alpha, label_time: τα and the time t of the C_B labels.
        sb: S_B(q) of the MD C_B (per configuration (C, B)).
        slab_xy: (P, 2) x, y of the particles in the slab of the first configuration.
        slab_types: (P,) their types.
        slab_cb: (P,) their MD C_B.
        slab: (z_min, z_max) of the slab, scaled to this box.
    """

    label: str
    T: float
    trained: bool
    n_configurations: int
    n_particles: int
    box_length: float
    tau_alpha: float
    label_time: float
    sb: StructureFactor
    slab_xy: np.ndarray
    slab_types: np.ndarray
    slab_cb: np.ndarray
    slab: tuple[float, float]


@dataclass
class ModelTemperature:
    """One model's predictions at one temperature, reduced to what the analysis uses.

    Attributes:
        pearson_node: (C,) ρ over A particles per configuration.
        pearson_edge: (C,) ρ over the edges of the model's graph per configuration.
        t_pred: (C,) predicted temperatures.
        embedding: (C, H) global embeddings.
        sb: (C, B) S_B(q) of the predicted C_B per configuration.
        slab_cb: (P,) predicted C_B of the slab particles of the first configuration.
    """

    pearson_node: np.ndarray
    pearson_edge: np.ndarray
    t_pred: np.ndarray
    embedding: np.ndarray
    sb: np.ndarray
    slab_cb: np.ndarray


@dataclass
class RunAnalysis:
    """Everything the figures and the summary need, read from one run directory.

    Attributes:
        run_dir: the run.
        config: its resolved configuration.
        split: the dataset split evaluated (``test``).
        temperatures: MD data per available temperature, ascending T.
        models: every model found under ``predictions/``.
        results: {(model name, T label): ModelTemperature}.
        metrics: {model name: metrics.csv columns}.
        notes: what was missing or skipped while reading.
        baselines: the structural baselines of :func:`tbotan.baselines.structural_baselines`
            (ridge C_B from local structure, T from the energy), fitted on the run's training
            split and evaluated on ``split``; None when they could not be computed (noted).
    """

    run_dir: Path
    config: dict
    split: str
    temperatures: list[TemperatureData]
    models: list[ModelId]
    results: dict[tuple[str, str], ModelTemperature]
    metrics: dict[str, dict[str, np.ndarray]]
    notes: list[str] = field(default_factory=list)
    baselines: dict | None = None

    # ------------------------------------------------------------------ groups of seeds
    @property
    def main_group(self) -> Group:
        """The main model: the configured variant at the configured λ_g."""
        return Group(self.config["model"]["variant"], self.config["training"]["lambda_global"])

    def groups(self) -> list[Group]:
        """All (variant, λ_g) groups with predictions, main model first."""
        found = {m.group for m in self.models}
        rest = sorted(
            found - {self.main_group}, key=lambda g: (VARIANTS.index(g.variant), g.lambda_global)
        )
        return ([self.main_group] if self.main_group in found else []) + rest

    def seeds(self, group: Group) -> list[ModelId]:
        """Models of a group, by seed."""
        return sorted((m for m in self.models if m.group == group), key=lambda m: m.seed)

    def temperature(self, label: str) -> TemperatureData:
        for t in self.temperatures:
            if t.label == label:
                return t
        raise KeyError(f"temperature {label} is not in this analysis")

    def _per_seed(self, group: Group, label: str, attribute: str) -> dict[int, np.ndarray]:
        out = {}
        for m in self.seeds(group):
            result = self.results.get((m.name, label))
            if result is not None:
                out[m.seed] = getattr(result, attribute)
        return out

    # ------------------------------------------------------------------ observables
    def pearson(self, group: Group, label: str, kind: str) -> SeedStatistics | None:
        """Pearson ρ of ``kind`` ('node' or 'edge') at T over configurations and seeds."""
        if kind not in ("node", "edge"):
            raise ValueError(f"kind must be 'node' or 'edge', got {kind!r}")
        values = self._per_seed(group, label, f"pearson_{kind}")
        return seed_statistics(values) if values else None

    def t_pred(self, group: Group, label: str) -> SeedStatistics | None:
        """T_pred at T over configurations and seeds."""
        values = self._per_seed(group, label, "t_pred")
        return seed_statistics(values) if values else None

    def t_pred_distribution(self, group: Group, label: str) -> dict | None:
        """P(T_pred/T_MD) (Eq. B1) pooled over configurations and seeds."""
        values = self._per_seed(group, label, "t_pred")
        if not values:
            return None
        ratios = np.concatenate(list(values.values())) / self.temperature(label).T
        centres, density, edges = ratio_distribution(
            ratios, self.config["analysis"]["t_ratio_bin_width"]
        )
        return {"centres": centres, "density": density, "edges": edges, "n_samples": ratios.size}

    def sb_prediction(self, group: Group, label: str) -> tuple[np.ndarray, np.ndarray] | None:
        """S_B(q) of the predicted C_B: (B,) mean over seeds of the configuration average, and
        (B,) standard deviation over seeds."""
        values = self._per_seed(group, label, "sb")
        if not values:
            return None
        per_seed = np.stack([v.mean(axis=0) for v in values.values()])  # (S, B)
        return per_seed.mean(axis=0), per_seed.std(axis=0)

    def embedding_distances(self, group: Group) -> dict | None:
        """D(T_i, T_j) of Eq. 11–12 and per seed, over the temperatures every seed predicted.

        Returns:
            {'labels': K labels, 'seeds': S seeds, 'D': (K, K), 'per_seed': (S, K, K)} or None
            when fewer than two temperatures are available.
        """
        models = self.seeds(group)
        labels = [
            t.label
            for t in self.temperatures
            if models and all((m.name, t.label) in self.results for m in models)
        ]
        if len(labels) < 2:
            return None
        embeddings = [
            np.stack([self.results[(m.name, label)].embedding for m in models]) for label in labels
        ]
        return {
            "labels": labels,
            "seeds": [m.seed for m in models],
            "D": embedding_distance_matrix(embeddings),
            "per_seed": embedding_distance_matrices_per_seed(embeddings),
        }

    def trained(self, label: str) -> bool:
        return self.temperature(label).trained

    # ------------------------------------------------------------------ baselines
    def baseline_pearson(self, label: str) -> dict | None:
        """Ridge C_B baseline at T: {mean, std_configurations, n_configurations} of the node
        ρ (A particles), or None."""
        if self.baselines is None:
            return None
        return self.baselines["cb"]["per_temperature"].get(label)

    def baseline_t_pred(self, label: str, feature: str = "thermal_energy") -> dict | None:
        """Energy-fit T baseline at T (``feature`` 'thermal_energy' for U/N of the thermal
        configuration, 'inherent_energy' for e_IS/N): {mean, std_configurations, rmse,
        n_configurations}, or None."""
        if self.baselines is None:
            return None
        return self.baselines["t_pred"][feature]["per_temperature"].get(label)


def _slab_bounds(config: dict, box_length: float) -> tuple[float, float]:
    """The configured slab (given for the paper's box) scaled to a box of ``box_length``."""
    a = config["analysis"]
    scale = box_length / a["slab_reference_box_length"]
    return a["slab"][0] * scale, a["slab"][1] * scale


def load_run_config(path: str | os.PathLike) -> dict:
    """The resolved configuration of a run, loaded without the MD-engine availability check.

    The analysis needs no MD engine, so a run made with HOOMD-blue can be analysed where
    HOOMD-blue does not import.
    """
    from tbotan import config as cfg

    return cfg.load(path, check_engine=False)


def find_models(run_dir: Path, notes: list[str]) -> list[ModelId]:
    """Models with a folder under ``predictions/``; folders with other names are noted."""
    root = run_dir / "predictions"
    models = []
    if root.is_dir():
        for path in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                models.append(ModelId.parse(path.name))
            except ValueError as exc:
                notes.append(f"ignored predictions/{path.name}: {exc}")
    return models


def analyse_run(
    run_dir: str | os.PathLike, config: dict, split: str = "test", baselines: bool = True
) -> RunAnalysis:
    """Read a run directory and compute every observable of docs/physics.md §9.

    Reads ``datasets/T{T}_{split}.h5`` of every configured temperature,
    ``predictions/{model}/T{T}_{split}.h5`` of every model and ``models/{model}/metrics.csv``.
    Temperatures without a dataset, and models without predictions at some T, are noted in
    :attr:`RunAnalysis.notes` and left out; damaged files raise.  With ``baselines`` the
    structural baselines (:mod:`tbotan.baselines`) are fitted on ``datasets/T{T}_train.h5`` of
    the training temperatures, their ridge penalty chosen on ``T{T}_validation.h5``, and
    evaluated on the ``split`` files read here.

    Raises:
        DatasetError: no dataset of the split at all, or a damaged dataset/predictions file.
    """
    run_dir = Path(run_dir)
    notes: list[str] = []
    models = find_models(run_dir, notes)
    temperatures: list[TemperatureData] = []
    results: dict[tuple[str, str], ModelTemperature] = {}
    entries = sorted(config["temperatures"], key=lambda e: e["T"])
    for entry in entries:
        label = temperature_label(entry["T"])
        path = run_dir / "datasets" / f"T{label}_{split}.h5"
        if not path.is_file():
            notes.append(f"T = {label}: no dataset {path.relative_to(run_dir)}; left out")
            continue
        dataset = DatasetFile(path)
        content = dataset.load()
        predictions = {}
        for m in models:
            p = run_dir / "predictions" / m.name / f"T{label}_{split}.h5"
            if not p.is_file():
                notes.append(f"{m.name}: no predictions at T = {label} ({split})")
                continue
            pred = read_predictions(p, dataset)
            _check_model_attrs(pred, m)
            predictions[m.name] = pred
        tdata, per_model = _analyse_temperature(
            content, predictions, label, bool(entry["train"]), config
        )
        temperatures.append(tdata)
        for name, result in per_model.items():
            results[(name, label)] = result
        log.info("T = %s: %d configurations, %d models", label, len(content.cb), len(predictions))
    if not temperatures:
        raise DatasetError(
            f"{run_dir / 'datasets'}: no {split} dataset of any configured temperature "
            "(run the `dataset` stage first)"
        )
    metrics = {}
    for m in models:
        path = run_dir / "models" / m.name / "metrics.csv"
        if path.is_file():
            metrics[m.name] = read_metrics(path)
        else:
            notes.append(f"{m.name}: no training metrics {path.relative_to(run_dir)}")
    baseline_result = (
        run_baselines(run_dir, config, [t.label for t in temperatures], split, notes)
        if baselines
        else None
    )
    return RunAnalysis(
        run_dir=run_dir,
        config=config,
        split=split,
        temperatures=temperatures,
        models=models,
        results=results,
        metrics=metrics,
        notes=notes,
        baselines=baseline_result,
    )


def run_baselines(
    run_dir: Path, config: dict, labels: Sequence[str], split: str, notes: list[str]
) -> dict | None:
    """The structural baselines of a run (:func:`tbotan.baselines.structural_baselines`).

    Fitted on ``datasets/T{T}_train.h5`` of every training temperature, the ridge penalty
    chosen on ``datasets/T{T}_validation.h5``, evaluated on ``datasets/T{T}_{split}.h5`` of
    ``labels``.  Missing training or validation files are noted; with none at all the
    baselines are None.
    """
    from tbotan import baselines

    datasets = run_dir / "datasets"
    trained = [temperature_label(e["T"]) for e in config["temperatures"] if e["train"]]
    files = {}
    for part in ("train", "validation"):
        paths = [datasets / f"T{label}_{part}.h5" for label in sorted(trained, key=float)]
        missing = [p for p in paths if not p.is_file()]
        for p in missing:
            notes.append(f"baselines: no {part} file {p.relative_to(run_dir)}")
        files[part] = [p for p in paths if p.is_file()]
    if not files["train"] or not files["validation"]:
        notes.append("baselines: not computed (they need training and validation files)")
        return None
    if split != "test":
        notes.append(f"baselines: evaluated on the {split} split, which they also fit or select on")
    tests = {label: datasets / f"T{label}_{split}.h5" for label in labels}
    result = baselines.structural_baselines(files["train"], files["validation"], tests)
    log.info(
        "baselines: ridge penalty %g, %d features",
        result["cb"]["penalty"],
        len(result["cb"]["features"]),
    )
    return result


def _check_model_attrs(pred: Predictions, model: ModelId) -> None:
    attrs = pred.attrs
    found = (str(attrs["variant"]), f"{float(attrs['lambda_global']):g}", int(attrs["seed"]))
    expect = (model.variant, f"{model.lambda_global:g}", model.seed)
    if found != expect:
        raise PredictionsError(
            f"{pred.path}: attributes (variant, lambda_global, seed) = {found} do not match "
            f"its folder {model.name}"
        )


def _analyse_temperature(
    content: DatasetContent,
    predictions: dict[str, Predictions],
    label: str,
    trained: bool,
    config: dict,
) -> tuple[TemperatureData, dict[str, ModelTemperature]]:
    a = config["analysis"]
    L = float(content.attrs["box_length"])
    names = list(predictions)
    fields = np.stack([content.cb] + [predictions[n].cb for n in names])  # (1 + M, C, N)
    sb = four_point_structure_factor(
        content.thermal_positions, fields, content.types, L, a["sb_q_max"], a["sb_bin_width"]
    )
    z_min, z_max = _slab_bounds(config, L)
    first = content.thermal_positions[0]
    in_slab = (first[:, 2] > z_min) & (first[:, 2] < z_max)
    tdata = TemperatureData(
        label=label,
        T=float(content.attrs["temperature"]),
        trained=trained,
        n_configurations=content.n_configurations,
        n_particles=content.n_particles,
        box_length=L,
        tau_alpha=float(content.attrs["tau_alpha"]),
        label_time=float(content.attrs["label_time"]),
        sb=StructureFactor(q=sb.q, counts=sb.counts, per_configuration=sb.per_configuration[0]),
        slab_xy=first[in_slab, :2].copy(),
        slab_types=np.asarray(content.types[0][in_slab]),
        slab_cb=np.asarray(content.cb[0][in_slab], dtype=np.float64),
        slab=(z_min, z_max),
    )
    per_model = {}
    for i, name in enumerate(names, start=1):
        pred = predictions[name]
        graph = content.graph if pred.edge_graph == "graph" else content.graph_ts
        per_model[name] = ModelTemperature(
            pearson_node=node_pearson(pred.cb, content.cb, content.types),
            pearson_edge=edge_pearson(pred.edge, graph.labels, graph.offsets),
            t_pred=pred.t_pred.astype(np.float64),
            embedding=pred.embedding.astype(np.float64),
            sb=sb.per_configuration[i],
            slab_cb=np.asarray(pred.cb[0][in_slab], dtype=np.float64),
        )
    return tdata, per_model


# ============================================================================ summary


def summarise(run: RunAnalysis) -> dict:
    """A JSON-ready summary of every observable (NaN written as null).

    Keys: ``run_dir``, ``split``, ``temperatures`` (label, T, trained, C, τα, t), ``main_group``,
    ``models``, ``groups`` ({group: {variant, lambda_global, seeds, per_temperature: {T:
    {pearson_node, pearson_edge, t_pred, t_pred_ratio}}}}), ``embedding_distance`` (per group:
    labels, seeds, D, per_seed), ``sb`` ({T: {q, n_vectors, md, md_std_configurations,
    prediction: {group: {mean, std_seeds}}}}), ``t_pred_distribution`` ({group: {T: {edges,
    density}}}), ``baselines`` (:func:`tbotan.baselines.structural_baselines`: models,
    features, penalty, fit split, per-temperature numbers; null when not computed),
    ``notes``.  With baselines, every entry of ``temperatures`` and every per-temperature
    entry of a group also carries ``baseline_pearson_cb`` ({mean, std_configurations,
    n_configurations}: ridge C_B baseline), ``baseline_t_pred`` and
    ``baseline_t_pred_inherent`` ({mean, std_configurations, rmse, n_configurations}: T fitted
    on U/N of the thermal configuration, on e_IS/N).
    """
    out: dict = {
        "run_dir": str(run.run_dir),
        "split": run.split,
        "temperatures": [
            {
                "label": t.label,
                "T": t.T,
                "trained": t.trained,
                "n_configurations": t.n_configurations,
                "n_particles": t.n_particles,
                "tau_alpha": t.tau_alpha,
                "label_time": t.label_time,
            }
            for t in run.temperatures
        ],
        "main_group": run.main_group.name,
        "models": [m.name for m in run.models],
        "groups": {},
        "embedding_distance": {},
        "sb": {},
        "t_pred_distribution": {},
        "baselines": run.baselines,
        "notes": list(run.notes),
    }
    for entry in out["temperatures"]:
        entry.update(_baseline_entries(run, entry["label"]))
    for group in run.groups():
        per_t = {}
        dists = {}
        for t in run.temperatures:
            node = run.pearson(group, t.label, "node")
            if node is None:
                continue
            tp = run.t_pred(group, t.label)
            per_t[t.label] = {
                "pearson_node": node.to_dict(),
                "pearson_edge": run.pearson(group, t.label, "edge").to_dict(),
                "t_pred": tp.to_dict(),
                "t_pred_ratio": {
                    "mean": tp.mean / t.T,
                    "std_configurations": tp.std_configurations / t.T,
                },
                **_baseline_entries(run, t.label),
            }
            dist = run.t_pred_distribution(group, t.label)
            dists[t.label] = {"edges": dist["edges"], "density": dist["density"]}
        out["groups"][group.name] = {
            "variant": group.variant,
            "lambda_global": group.lambda_global,
            "seeds": [m.seed for m in run.seeds(group)],
            "per_temperature": per_t,
        }
        out["t_pred_distribution"][group.name] = dists
        d = run.embedding_distances(group)
        if d is not None:
            out["embedding_distance"][group.name] = {
                "labels": d["labels"],
                "seeds": d["seeds"],
                "D": d["D"],
                "per_seed": {str(s): m for s, m in zip(d["seeds"], d["per_seed"], strict=True)},
            }
    for t in run.temperatures:
        entry = {
            "q": t.sb.q,
            "n_vectors": t.sb.counts,
            "md": t.sb.mean,
            "md_std_configurations": t.sb.per_configuration.std(axis=0),
            "prediction": {},
        }
        for group in run.groups():
            pred = run.sb_prediction(group, t.label)
            if pred is not None:
                entry["prediction"][group.name] = {"mean": pred[0], "std_seeds": pred[1]}
        out["sb"][t.label] = entry
    return _json_ready(out)


def _baseline_entries(run: RunAnalysis, label: str) -> dict:
    """The baseline numbers at T, keyed as in the summary (empty without baselines)."""
    if run.baselines is None:
        return {}
    return {
        "baseline_pearson_cb": run.baseline_pearson(label),
        "baseline_t_pred": run.baseline_t_pred(label, "thermal_energy"),
        "baseline_t_pred_inherent": run.baseline_t_pred(label, "inherent_energy"),
    }


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(mean, *spreads, digits: int = 3) -> str:
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f}"
    for s in spreads:
        if s is not None:
            text += f" ± {s:.{digits}f}"
    return text


def _baseline_cells(entry: dict) -> list[str]:
    """Ridge ρ, T_pred from U/N and from e_IS/N (mean ± std over configurations) of one
    temperature entry of the summary; '–' where absent."""
    cells = []
    for key in ("baseline_pearson_cb", "baseline_t_pred", "baseline_t_pred_inherent"):
        v = entry.get(key)
        cells.append("–" if v is None else _fmt(v["mean"], v["std_configurations"]))
    return cells


def _baseline_markdown(summary: dict) -> list[str]:
    """The baselines section of summary.md: what was fitted, then its numbers per T."""
    b = summary.get("baselines")
    if not b:
        return []
    cb, tp = b["cb"], b["t_pred"]
    lines = [
        "## Baselines (same split as the network)",
        "",
        f"- C_B: {cb['model']}; {len(cb['features'])} per-particle features (e_IS per particle, "
        f"coordination numbers by neighbour species within r < {cb['radii']} σ_AA in IS and TS, "
        f"own species), standardised on the training split; fitted on the `{cb['fit_split']}` "
        f"split of T = {', '.join(cb['fit_temperatures'])} ({cb['n_fit_configurations']} "
        f"configurations); ridge penalty λ = {cb['penalty']:g} chosen on the "
        f"`{cb['validation_split']}` split from {', '.join(f'{x:g}' for x in cb['penalty_grid'])}.",
    ]
    for key, name in (("thermal_energy", "U/N"), ("inherent_energy", "e_IS/N")):
        fit = tp[key]
        coef = ", ".join(_fmt(c, digits=4) for c in fit["coefficients"])
        lines.append(
            f"- T from {name}: polynomial of degree {fit['degree']} (coefficients {coef}, "
            f"ascending powers), least squares on the `{fit['fit_split']}` split "
            f"({fit['n_fit_configurations']} configurations)."
        )
    lines += [
        "",
        "| T | ρ ridge | T_pred U/N (RMSE) | T_pred e_IS/N (RMSE) |",
        "|---|---|---|---|",
    ]
    for t in summary["temperatures"]:
        label = t["label"]
        rho = cb["per_temperature"].get(label)
        cells = ["–" if rho is None else _fmt(rho["mean"], rho["std_configurations"])]
        for key in ("thermal_energy", "inherent_energy"):
            v = tp[key]["per_temperature"].get(label)
            cells.append(
                "–"
                if v is None
                else f"{_fmt(v['mean'], v['std_configurations'])} ({_fmt(v['rmse'])})"
            )
        lines.append(f"| {label}{'' if t['trained'] else '*'} | " + " | ".join(cells) + " |")
    return lines + [""]


def summary_markdown(summary: dict) -> str:
    """The headline numbers of :func:`summarise` as markdown tables."""
    lines = [f"# T-BOTAN analysis of `{summary['run_dir']}` ({summary['split']} split)", ""]
    temps = {t["label"]: t for t in summary["temperatures"]}
    main = summary["main_group"]
    groups = summary["groups"]
    lines += [
        "Values are means over configurations and seeds; ± gives the standard deviation over "
        "seeds, then over configurations (population standard deviations).  "
        "Untrained temperatures are marked *.",
        "",
    ]
    if main in groups:
        g = groups[main]
        lines += [
            f"## Main model `{main}` (seeds {g['seeds']})",
            "",
            "| T | trained | C | ρ node (C_B, A) | ρ edge | T_pred | T_pred/T_MD "
            "| ρ ridge baseline | T_pred fit U/N | T_pred fit e_IS/N |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, v in g["per_temperature"].items():
            t = temps[label]
            pn, pe, tp, tr = v["pearson_node"], v["pearson_edge"], v["t_pred"], v["t_pred_ratio"]
            lines.append(
                f"| {label}{'' if t['trained'] else '*'} | {'yes' if t['trained'] else 'no'} | "
                f"{t['n_configurations']} | "
                f"{_fmt(pn['mean'], pn['std_seeds'], pn['std_configurations'])} | "
                f"{_fmt(pe['mean'], pe['std_seeds'], pe['std_configurations'])} | "
                f"{_fmt(tp['mean'], tp['std_seeds'], tp['std_configurations'])} | "
                f"{_fmt(tr['mean'], tr['std_configurations'])} | "
                + " | ".join(_baseline_cells(t))
                + " |"
            )
        lines.append("")
    else:
        lines += [f"No predictions of the main model `{main}`.", ""]
    dist = summary["embedding_distance"].get(main)
    if dist is not None:
        labels = dist["labels"]
        lines += [
            f"## Embedding distances D(T_i, T_j) (Eq. 12), `{main}`, averaged over seeds "
            f"{dist['seeds']}",
            "",
            "| T | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for label, row in zip(labels, dist["D"], strict=True):
            lines.append(f"| {label} | " + " | ".join(_fmt(x) for x in row) + " |")
        lines.append("")
    others = [name for name in groups if name != main]
    if others:
        lines += [
            "## Other models (λ_g sweep, input-variant ablations): ρ node and T_pred",
            "",
            "| model | seeds | " + " | ".join(temps) + " |",
            "|---|---|" + "---|" * len(temps),
        ]
        for name in [main] + others if main in groups else others:
            g = groups[name]
            cells = []
            for label in temps:
                v = g["per_temperature"].get(label)
                cells.append(
                    "–"
                    if v is None
                    else f"{_fmt(v['pearson_node']['mean'])} / {_fmt(v['t_pred']['mean'])}"
                )
            lines.append(f"| `{name}` | {g['seeds']} | " + " | ".join(cells) + " |")
        by_label = {t["label"]: t for t in summary["temperatures"]}
        if any("baseline_pearson_cb" in t for t in by_label.values()):
            cells = []
            for label in temps:
                rho = by_label[label].get("baseline_pearson_cb")
                tp = by_label[label].get("baseline_t_pred")
                cells.append(
                    f"{_fmt(rho and rho['mean'])} / {_fmt(tp and tp['mean'])}" if rho or tp else "–"
                )
            lines.append("| ridge baseline / T(U/N) fit | – | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _baseline_markdown(summary)
    if summary["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    return "\n".join(lines)
