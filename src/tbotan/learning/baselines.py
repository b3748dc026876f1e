"""Baselines beside every reported number: what simple structure alone predicts.

Two baselines, both fitted on the *training* split (all training temperatures pooled, one
model, no temperature input) and evaluated on the test split of every temperature exactly as
the network is (:func:`tbotan.analysis.metrics.node_pearson`):

- **C_B (or the propensity) from local structure**: ridge (linear) regression of the
  per-particle node target (``node_target``: C_B, or the propensity ⟨|Δr|⟩_iso, the labels
  ``labels/cb`` or ``labels/propensity`` of the dataset files) on simple descriptors of the
  inherent structure (IS) and the thermal structure (TS), see :func:`particle_descriptors`.
  Features are standardised with the training statistics; the penalty λ is the one of
  :data:`PENALTIES` with the highest mean node Pearson ρ (A particles) over the *validation*
  configurations.  Reported per test temperature: the mean over
  configurations of ρ between predicted and true target over type-A particles.
- **T from the energy**: a least-squares polynomial (quadratic) T(u) with u the potential
  energy per particle U/N of the thermal configuration, and, as a second baseline, u the
  inherent-structure energy e_IS/N stored in the dataset files.  Each configuration is one
  point, its file's temperature the target.  Reported per test temperature: mean T_pred, its
  standard deviation over configurations, RMSE against T.

Units: lengths σ_AA, energies ε_AA, temperatures ε_AA/k_B.  Everything is float64 NumPy.

Example::

    from tbotan.learning import baselines
    result = baselines.structural_baselines(
        ["T0.44_train.h5"], ["T0.44_validation.h5"], {"0.44": "T0.44_test.h5"}
    )
    print(result["cb"]["per_temperature"]["0.44"]["mean"], result["cb"]["penalty"])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tbotan.analysis.metrics import node_pearson
from tbotan.config import NODE_TARGET_TEXT, NODE_TARGETS
from tbotan.errors import ConfigError
from tbotan.formats.dataset import DatasetFile
from tbotan.physics import kalj

#: Radii (σ_AA) of the coordination numbers, counted by neighbour species.
RADII: tuple[float, ...] = (1.0, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0)
#: Ridge penalties λ tried (on standardised features, objective normalised per sample).
PENALTIES: tuple[float, ...] = tuple(float(10.0**k) for k in range(-3, 4))
#: Largest degree of the polynomial T(u).
T_FIT_DEGREE = 2

PathLike = str | os.PathLike


# ============================================================================ descriptors


def usable_radii(radii: Sequence[float], box_length: float) -> tuple[float, ...]:
    """The radii below L/2, for which minimum-image counting is unambiguous."""
    return tuple(float(r) for r in radii if r < 0.5 * box_length)


def pairs_within(positions: np.ndarray, box, r_max: float):
    """Unordered pairs (i < j) closer than ``r_max`` under minimum image, with distances.

    Args:
        positions: (N, 3) float64 positions (σ_AA), any image.
        box: cubic edge L or (3,) edges; every edge must exceed 2 ``r_max``.
        r_max: search radius (σ_AA).

    Returns:
        ``(i, j, r)``: (P,) int64, (P,) int64, (P,) float64 minimum-image distances.
    """
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    if np.any(box <= 2.0 * r_max):
        raise ValueError(f"box {box} too small for a neighbour search of radius {r_max}")
    positions = np.asarray(positions, dtype=np.float64)
    i, j = kalj.neighbor_pairs(positions, box, r_max)
    delta = kalj.minimum_image(positions[i] - positions[j], box)
    r = np.sqrt(np.einsum("pk,pk->p", delta, delta))
    keep = r < r_max
    return i[keep], j[keep], r[keep]


def pair_energies_per_particle(
    i: np.ndarray, j: np.ndarray, r: np.ndarray, types: np.ndarray, n: int
) -> np.ndarray:
    """(N,) float64 per-particle energy ½ Σ_j U_μν(r_ij) (ε_AA) of the KALJ shifted-force
    potential (:func:`tbotan.physics.kalj.pair_energy`), from pairs that include every pair within
    its cut-off 2.5 σ_μν (pairs beyond it contribute zero)."""
    types = np.asarray(types).astype(np.int64)
    u = kalj.pair_energy(r, types[i], types[j])
    return np.bincount(i, 0.5 * u, minlength=n) + np.bincount(j, 0.5 * u, minlength=n)


def particle_energies(positions: np.ndarray, types: np.ndarray, box) -> np.ndarray:
    """(N,) per-particle KALJ potential energy (ε_AA); sums to the total U of
    :func:`tbotan.physics.kalj.evaluate`."""
    i, j, r = pairs_within(positions, box, kalj.max_cutoff())
    return pair_energies_per_particle(i, j, r, types, len(types))


def coordination_from_pairs(
    i: np.ndarray,
    j: np.ndarray,
    r: np.ndarray,
    types: np.ndarray,
    radii: Sequence[float],
) -> np.ndarray:
    """Neighbours of each particle within each radius, by neighbour species.

    Args:
        i, j, r: unordered pairs and their distances (every pair closer than ``max(radii)``).
        types: (N,) types (0 = A, 1 = B).
        radii: R ascending radii (σ_AA).

    Returns:
        (N, R, 2) float64: ``out[p, k, s]`` = number of particles of species s with
        r < radii[k] from p.
    """
    types = np.asarray(types).astype(np.int64)
    radii = np.asarray(radii, dtype=np.float64)
    n, n_r = types.size, radii.size
    if np.any(np.diff(radii) <= 0):
        raise ValueError(f"radii must be strictly ascending, got {radii}")
    shell = np.searchsorted(radii, r, side="right")  # first radius k with r < radii[k]
    inside = shell < n_r
    i, j, shell = i[inside], j[inside], shell[inside]
    # one histogram over (particle, neighbour species, innermost shell), both directions
    index = np.concatenate([(i * 2 + types[j]) * n_r + shell, (j * 2 + types[i]) * n_r + shell])
    counts = np.bincount(index, minlength=n * 2 * n_r).reshape(n, 2, n_r)
    return np.cumsum(counts, axis=2).transpose(0, 2, 1).astype(np.float64)


def coordination_numbers(
    positions: np.ndarray, types: np.ndarray, box, radii: Sequence[float] = RADII
) -> np.ndarray:
    """(N, R, 2) neighbours within each radius by neighbour species (see
    :func:`coordination_from_pairs`), minimum image in the periodic box."""
    i, j, r = pairs_within(positions, box, float(max(radii)))
    return coordination_from_pairs(i, j, r, types, radii)


def descriptor_names(radii: Sequence[float] = RADII) -> list[str]:
    """Names of the F = 2 + 4R columns of :func:`particle_descriptors`, in order."""
    names = ["e_IS"]
    for structure in ("IS", "TS"):
        for r in radii:
            names += [f"n_A(r<{r:g})_{structure}", f"n_B(r<{r:g})_{structure}"]
    return names + ["species_B"]


@dataclass
class ConfigurationDescriptors:
    """Descriptors of one configuration.

    Attributes:
        features: (N, F) float64, columns :func:`descriptor_names`.
        thermal_energy: U/N of the thermal configuration (ε_AA).
    """

    features: np.ndarray
    thermal_energy: float


def particle_descriptors(
    thermal: np.ndarray,
    inherent: np.ndarray,
    types: np.ndarray,
    box,
    radii: Sequence[float] = RADII,
) -> ConfigurationDescriptors:
    """Per-particle local descriptors of one configuration.

    Columns: per-particle potential energy in the IS (½ Σ of the shifted-force pair energies),
    coordination numbers by neighbour species (A, B) within each radius in the IS, the same in
    the TS, and the own species (1 for B).  One neighbour search per structure (radius
    max(max(radii), 2.5 σ_AA)) serves energies and counts.

    Args:
        thermal, inherent: (N, 3) float64 positions (σ_AA).
        types: (N,) int types.
        box: cubic edge L or (3,) edges.
        radii: ascending radii (σ_AA), each below L/2.
    """
    types = np.asarray(types).astype(np.int64)
    n = types.size
    r_max = max(float(max(radii)), kalj.max_cutoff())
    columns = []
    thermal_energy = np.nan
    for name, positions in (("IS", inherent), ("TS", thermal)):
        i, j, r = pairs_within(positions, box, r_max)
        near = r < kalj.max_cutoff()  # the rest contribute zero energy
        energy = pair_energies_per_particle(i[near], j[near], r[near], types, n)
        if name == "IS":
            columns.append(energy[:, None])
        else:
            thermal_energy = float(energy.sum() / n)
        columns.append(coordination_from_pairs(i, j, r, types, radii).reshape(n, -1))
    columns.append((types == 1).astype(np.float64)[:, None])
    return ConfigurationDescriptors(np.concatenate(columns, axis=1), thermal_energy)


# ============================================================================ ridge


class Moments:
    """Streaming mean and centred scatter of features X (n, F) and target y (n,).

    Batches are merged with the pairwise update of Chan et al., so the statistics of many
    configurations never need all of them in memory at once.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean_x: np.ndarray | None = None
        self.mean_y = 0.0
        self.sxx: np.ndarray | None = None
        self.sxy: np.ndarray | None = None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        nb = len(y)
        if nb == 0:
            return
        mx, my = x.mean(axis=0), y.mean()
        xc, yc = x - mx, y - my
        sxx, sxy = xc.T @ xc, xc.T @ yc
        if self.n == 0:
            self.n, self.mean_x, self.mean_y, self.sxx, self.sxy = nb, mx, my, sxx, sxy
            return
        n = self.n + nb
        dx, dy = mx - self.mean_x, my - self.mean_y
        w = self.n * nb / n
        self.sxx = self.sxx + sxx + w * np.outer(dx, dx)
        self.sxy = self.sxy + sxy + w * dx * dy
        self.mean_x = self.mean_x + dx * nb / n
        self.mean_y = self.mean_y + dy * nb / n
        self.n = n


@dataclass
class RidgeModel:
    """y ≈ intercept + Σ_f coef_f (x_f − mean_f) / scale_f.

    Attributes:
        mean, scale: (F,) standardisation (training mean and standard deviation; a constant
            feature gets scale 1).
        coef: (F,) coefficients on the standardised features.
        intercept: training mean of y.
        penalty: λ of the fit.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    penalty: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(..., F) features → (...,) predictions."""
        return self.intercept + ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef


def ridge_from_moments(moments: Moments, penalties: Sequence[float]) -> list[RidgeModel]:
    """Ridge fits on standardised features, one per penalty.

    Minimises ``(1/n) Σ_i (y_i − ȳ − z_i·β)² + λ |β|²`` with z = (x − mean)/std (training
    statistics, population std): β = (ZᵀZ/n + λ I)⁻¹ Zᵀ(y − ȳ)/n.
    """
    if moments.n == 0:
        raise ValueError("ridge regression needs at least one sample")
    n = moments.n
    std = np.sqrt(np.clip(np.diag(moments.sxx) / n, 0.0, None))
    scale = np.where(std > 0, std, 1.0)
    gram = moments.sxx / n / np.outer(scale, scale)
    rhs = moments.sxy / n / scale
    eye = np.eye(gram.shape[0])
    return [
        RidgeModel(
            mean=moments.mean_x.copy(),
            scale=scale,
            coef=np.linalg.solve(gram + float(lam) * eye, rhs),
            intercept=float(moments.mean_y),
            penalty=float(lam),
        )
        for lam in penalties
    ]


def ridge_from_summary(entry: Mapping) -> RidgeModel:
    """The ridge model of a :func:`structural_baselines` entry (its JSON-ready standardisation,
    coefficients, intercept and penalty), to predict with :meth:`RidgeModel.predict` on
    :func:`particle_descriptors` of the same radii."""
    names = entry["features"]
    return RidgeModel(
        mean=np.array([entry["standardisation"]["mean"][n] for n in names]),
        scale=np.array([entry["standardisation"]["std"][n] for n in names]),
        coef=np.array([entry["coefficients"][n] for n in names]),
        intercept=float(entry["intercept"]),
        penalty=float(entry["penalty"]),
    )


def fit_ridge(x: np.ndarray, y: np.ndarray, penalties: Sequence[float]) -> list[RidgeModel]:
    """Ridge fits of (n,) y on (n, F) x, one per penalty (see :func:`ridge_from_moments`)."""
    moments = Moments()
    moments.add(x, y)
    return ridge_from_moments(moments, penalties)


def select_penalty(scores: Mapping[float, float]) -> float:
    """The penalty with the highest score (NaN never wins; ties go to the larger penalty)."""
    finite = {lam: s for lam, s in scores.items() if np.isfinite(s)}
    if not finite:
        raise ValueError(f"no penalty has a finite validation score: {dict(scores)}")
    best = max(finite.values())
    return max(lam for lam, s in finite.items() if s == best)


# ============================================================================ T from energy


def fit_temperature(u: np.ndarray, temperature: np.ndarray, degree: int = T_FIT_DEGREE):
    """Least-squares polynomial T(u), degree at most ``degree`` and below the number of
    distinct temperatures (a constant for one training temperature, a line for two).

    Args:
        u: (C,) energies per particle (ε_AA), one per configuration.
        temperature: (C,) their temperatures.

    Returns:
        (degree + 1,) float64 coefficients c, T(u) = Σ_k c_k u^k (ascending powers).
    """
    u = np.asarray(u, dtype=np.float64)
    temperature = np.asarray(temperature, dtype=np.float64)
    if u.shape != temperature.shape or u.ndim != 1 or u.size == 0:
        raise ValueError(
            f"u and temperature must be (C,) arrays, got {u.shape}, {temperature.shape}"
        )
    degree = int(min(degree, np.unique(temperature).size - 1, u.size - 1))
    if degree == 0:
        return np.array([temperature.mean()])
    # fit on a centred, scaled variable (well conditioned), then convert to powers of u
    poly = np.polynomial.Polynomial.fit(u, temperature, degree)
    return poly.convert().coef


def predict_temperature(coefficients: np.ndarray, u: np.ndarray) -> np.ndarray:
    """T(u) = Σ_k c_k u^k for (C,) u."""
    return np.polynomial.polynomial.polyval(np.asarray(u, dtype=np.float64), coefficients)


def temperature_statistics(t_pred: np.ndarray, temperature: float) -> dict:
    """{mean, std_configurations, rmse, n_configurations} of (C,) T_pred at one T (ddof = 0)."""
    t_pred = np.asarray(t_pred, dtype=np.float64)
    return {
        "mean": float(t_pred.mean()),
        "std_configurations": float(t_pred.std()),
        "rmse": float(np.sqrt(np.mean((t_pred - temperature) ** 2))),
        "n_configurations": int(t_pred.size),
    }


# ============================================================================ dataset files


@dataclass
class FileEnergies:
    """Per-configuration energies of one dataset file (what the T baselines use).

    Attributes:
        temperature: the file's T (ε_AA/k_B).
        thermal_energy: (C,) U/N of the thermal configurations (ε_AA).
        inherent_energy: (C,) e_IS/N as stored in ``inherent/energy`` (ε_AA).
    """

    temperature: float
    thermal_energy: np.ndarray
    inherent_energy: np.ndarray

    @property
    def n_configurations(self) -> int:
        return int(self.thermal_energy.size)


def scan_file(
    path: PathLike,
    radii: Sequence[float],
    visit: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
    node_target: str = "cb",
) -> FileEnergies:
    """Descriptors of every configuration of a dataset file, one configuration at a time.

    The file is read through :class:`tbotan.formats.dataset.DatasetFile`; for each configuration
    ``visit(features (N, F), labels (N,), types (N,))`` is called, ``labels`` those of
    ``node_target`` (``'cb'`` or ``'propensity'``), so that no more than one configuration's
    features are held at once.
    """
    if node_target not in NODE_TARGETS:
        raise ConfigError(f"unknown node target {node_target!r}; choose one of {NODE_TARGETS}")
    dataset = DatasetFile(path)
    box = dataset.box_length
    u_ts, e_is = [], []
    for c in range(dataset.n_configurations):
        conf = dataset.configuration(c, graphs=())
        d = particle_descriptors(
            conf["thermal_positions"], conf["inherent_positions"], conf["types"], box, radii
        )
        visit(d.features, np.asarray(conf[node_target], dtype=np.float64), conf["types"])
        u_ts.append(d.thermal_energy)
        e_is.append(conf["inherent_energy"])
    return FileEnergies(
        temperature=dataset.temperature,
        thermal_energy=np.asarray(u_ts, dtype=np.float64),
        inherent_energy=np.asarray(e_is, dtype=np.float64),
    )


def predict_all(models: Sequence[RidgeModel], x: np.ndarray) -> np.ndarray:
    """(P, N) predictions of P ridge models sharing one standardisation, for (N, F) x."""
    z = (np.asarray(x, np.float64) - models[0].mean) / models[0].scale
    coef = np.stack([m.coef for m in models], axis=1)  # (F, P)
    intercept = np.array([m.intercept for m in models])
    return (z @ coef + intercept).T


def pearson_collector(models: Sequence[RidgeModel], into: list):
    """A ``visit`` for :func:`scan_file` appending each configuration's (P,) node ρ."""

    def visit(x, labels, types):
        pred = predict_all(models, x)
        into.append(
            node_pearson(
                pred, np.broadcast_to(labels, pred.shape), np.broadcast_to(types, pred.shape)
            )
        )

    return visit


def _label(temperature: float) -> str:
    from tbotan.config import temperature_label

    return temperature_label(temperature)


def structural_baselines(
    train_files: Sequence[PathLike],
    validation_files: Sequence[PathLike],
    test_files_by_T: Mapping[str, PathLike],
    radii: Sequence[float] = RADII,
    penalties: Sequence[float] = PENALTIES,
    node_target: str = "cb",
) -> dict:
    """Fit both baselines on the training files and evaluate them on the test files.

    Args:
        train_files: training dataset files (all training temperatures; pooled).
        validation_files: validation dataset files (choose the ridge penalty; pooled).
        test_files_by_T: {temperature label: test dataset file}.
        radii: coordination radii (σ_AA); those not below L/2 of the smallest box are dropped.
        penalties: ridge penalties tried.
        node_target: what the ridge model predicts, ``'cb'`` (C_B) or ``'propensity'``.

    Returns:
        A JSON-ready dict; its ridge entry is under the key ``node_target`` (``"cb"`` below)::

            {"node_target": "cb",
             "cb": {model, target, features, radii, fit_split, fit_temperatures,
                    n_fit_configurations, n_fit_particles, standardisation, penalty_grid,
                    selection, validation_split, n_validation_configurations,
                    validation_score: {λ: mean ρ}, penalty, coefficients: {name: β},
                    intercept, per_temperature: {T: {mean, std_configurations,
                    n_configurations}}},
             "t_pred": {"thermal_energy": {...}, "inherent_energy": {...}}}

        each ``t_pred`` entry: {model, feature, degree, coefficients (ascending powers),
        fit_split, fit_temperatures, n_fit_configurations, per_temperature: {T: {mean,
        std_configurations, rmse, n_configurations}}}.
    """
    if not train_files:
        raise ConfigError("the baselines need at least one training file")
    if not validation_files:
        raise ConfigError("the ridge penalty is chosen on the validation split: no validation file")
    all_files = [*train_files, *validation_files, *test_files_by_T.values()]
    box = min(DatasetFile(p).box_length for p in all_files)
    radii = usable_radii(sorted(radii), box)
    names = descriptor_names(radii)

    moments = Moments()
    train = [
        scan_file(p, radii, lambda x, y, _t: moments.add(x, y), node_target) for p in train_files
    ]
    models = ridge_from_moments(moments, penalties)

    collected: list[np.ndarray] = []
    for p in validation_files:
        scan_file(p, radii, pearson_collector(models, collected), node_target)
    val_rho = np.stack(collected, axis=1)  # (P, C_validation)
    scores = {m.penalty: float(np.mean(rho)) for m, rho in zip(models, val_rho, strict=True)}
    best = select_penalty(scores)
    model = next(m for m in models if m.penalty == best)

    tests: dict[str, FileEnergies] = {}
    per_t = {}
    for label, p in test_files_by_T.items():
        collected = []
        tests[label] = scan_file(p, radii, pearson_collector([model], collected), node_target)
        rho = np.concatenate(collected)
        per_t[label] = {
            "mean": float(np.mean(rho)),
            "std_configurations": float(np.std(rho)),
            "n_configurations": int(rho.size),
            "per_configuration": rho.tolist(),
        }
    fit_temperatures = sorted({_label(f.temperature) for f in train}, key=float)
    ridge = {
        "model": "ridge regression, one model for all temperatures, no temperature input",
        "target": f"{NODE_TARGET_TEXT[node_target]} per particle (all particles); evaluated as "
        "the mean over configurations of the Pearson correlation over type-A particles",
        "features": names,
        "radii": list(radii),
        "fit_split": "train",
        "fit_temperatures": fit_temperatures,
        "n_fit_configurations": sum(f.n_configurations for f in train),
        "n_fit_particles": int(moments.n),
        "standardisation": {
            "mean": dict(zip(names, model.mean.tolist(), strict=True)),
            "std": dict(zip(names, model.scale.tolist(), strict=True)),
        },
        "penalty_grid": [float(p) for p in penalties],
        "selection": "largest mean node Pearson (A) over the pooled validation configurations",
        "validation_split": "validation",
        "n_validation_configurations": int(val_rho.shape[1]),
        "validation_score": {f"{lam:g}": s for lam, s in scores.items()},
        "penalty": best,
        "coefficients": dict(zip(names, model.coef.tolist(), strict=True)),
        "intercept": model.intercept,
        "per_temperature": per_t,
    }
    t_pred = {
        key: _temperature_baseline(train, tests, key, text, fit_temperatures)
        for key, text in (
            ("thermal_energy", "U/N of the thermal configuration (KALJ shifted-force)"),
            ("inherent_energy", "e_IS/N of the inherent structure (dataset inherent/energy)"),
        )
    }
    return {"node_target": node_target, node_target: ridge, "t_pred": t_pred}


def _temperature_baseline(
    train: list[FileEnergies],
    tests: dict[str, FileEnergies],
    key: str,
    text: str,
    fit_temperatures: list[str],
) -> dict:
    u = np.concatenate([getattr(f, key) for f in train])
    target = np.concatenate([np.full(f.n_configurations, f.temperature) for f in train])
    coefficients = fit_temperature(u, target)
    return {
        "model": "least-squares polynomial T(u), each configuration one point",
        "feature": text,
        "degree": int(coefficients.size - 1),
        "coefficients": coefficients.tolist(),
        "fit_split": "train",
        "fit_temperatures": fit_temperatures,
        "n_fit_configurations": int(u.size),
        "per_temperature": {
            label: temperature_statistics(
                predict_temperature(coefficients, getattr(f, key)), f.temperature
            )
            for label, f in tests.items()
        },
    }
