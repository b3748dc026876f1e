"""A whole run directory read for the analysis stage (docs/physics.md §9).

:func:`analyse_run` reads a run directory (datasets, predictions, training metrics) and returns
a :class:`RunAnalysis`, from which :func:`tbotan.analysis.summary.summarise` builds the
machine-readable summary and :mod:`tbotan.analysis.figures` draws the paper's figures.  The
observables themselves live in :mod:`tbotan.analysis.metrics` (Pearson ρ, P(T_pred/T_MD),
D(T_i, T_j)) and :mod:`tbotan.analysis.structure_factor` (S_B(q)); predictions files are read
with :func:`tbotan.formats.predictions.read_predictions`.

Example::

    from tbotan import config
    from tbotan.analysis import runs
    cfg = config.load("results/paper/config.yaml")
    run = runs.analyse_run("results/paper", cfg)
    stats = run.pearson(run.main_group, "0.44", "node")
    print(stats.mean, stats.std_seeds, stats.std_configurations)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tbotan.analysis.metrics import (
    SeedStatistics,
    edge_pearson,
    embedding_distance_matrices_per_seed,
    embedding_distance_matrix,
    node_pearson,
    ratio_distribution,
    seed_statistics,
)
from tbotan.analysis.structure_factor import StructureFactor, four_point_structure_factor
from tbotan.config import temperature_label
from tbotan.formats.dataset import (
    DatasetContent,
    DatasetError,
    DatasetFile,  # HDF5 attribute → Python value, as for datasets
)
from tbotan.formats.model_file import read_metrics
from tbotan.formats.predictions import Predictions, PredictionsError, read_predictions
from tbotan.names import VARIANTS, Group, ModelId, NameFormatError

log = logging.getLogger(__name__)

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
        t_pred_std: (C,) for a seed ensemble, the spread of its members' T_pred (else None).
        cb_std: (C,) for a seed ensemble, the mean over particles of its members' spread of
            C_B (else None).
    """

    pearson_node: np.ndarray
    pearson_edge: np.ndarray
    t_pred: np.ndarray
    embedding: np.ndarray
    sb: np.ndarray
    slab_cb: np.ndarray
    t_pred_std: np.ndarray | None = None
    cb_std: np.ndarray | None = None


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
        ensembles: {(group name, T label): ModelTemperature} of each group's seed ensemble
            (the mean of its seeds' predictions, :func:`tbotan.learning.ensemble.combine_members`),
            over the seeds that predicted T.
        metrics: {model name: metrics.csv columns}.
        notes: what was missing or skipped while reading.
        baselines: the structural baselines of
            :func:`tbotan.learning.baselines.structural_baselines` (ridge C_B from local structure,
            T from the energy), fitted on the run's training split and evaluated on ``split``;
            None when they could not be computed (noted).
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
    ensembles: dict[tuple[str, str], ModelTemperature] = field(default_factory=dict)

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

    def t_pred_distribution(self, group: Group, label: str, seed: int | None = None) -> dict | None:
        """P(T_pred/T_MD) (Eq. B1) pooled over configurations and seeds, or of one ``seed``."""
        values = self._per_seed(group, label, "t_pred")
        if seed is not None:
            values = {seed: values[seed]} if seed in values else {}
        if not values:
            return None
        ratios = np.concatenate(list(values.values())) / self.temperature(label).T
        centres, density, edges = ratio_distribution(
            ratios, self.config["analysis"]["t_ratio_bin_width"]
        )
        return {"centres": centres, "density": density, "edges": edges, "n_samples": ratios.size}

    def ensemble(self, group: Group, label: str) -> ModelTemperature | None:
        """The seed ensemble of ``group`` at T (the mean of its seeds' predictions), or None."""
        return self.ensembles.get((group.name, label))

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
            except NameFormatError as exc:
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
    structural baselines (:mod:`tbotan.learning.baselines`) are fitted on
    ``datasets/T{T}_train.h5`` of the training temperatures, their ridge penalty chosen on
    ``T{T}_validation.h5``, and evaluated on the ``split`` files read here.

    Raises:
        DatasetError: no dataset of the split at all, or a damaged dataset/predictions file.
    """
    run_dir = Path(run_dir)
    notes: list[str] = []
    models = find_models(run_dir, notes)
    temperatures: list[TemperatureData] = []
    results: dict[tuple[str, str], ModelTemperature] = {}
    ensembles: dict[tuple[str, str], ModelTemperature] = {}
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
        groups: dict[str, list[str]] = {}
        for m in sorted(models, key=lambda m: m.seed):
            if m.name in predictions:
                groups.setdefault(m.group.name, []).append(m.name)
        tdata, per_model, per_group = _analyse_temperature(
            content, predictions, label, bool(entry["train"]), config, groups
        )
        temperatures.append(tdata)
        for name, result in per_model.items():
            results[(name, label)] = result
        for name, result in per_group.items():
            ensembles[(name, label)] = result
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
        ensembles=ensembles,
    )


def run_baselines(
    run_dir: Path, config: dict, labels: Sequence[str], split: str, notes: list[str]
) -> dict | None:
    """The structural baselines of a run (:func:`tbotan.learning.baselines.structural_baselines`).

    Fitted on ``datasets/T{T}_train.h5`` of every training temperature, the ridge penalty
    chosen on ``datasets/T{T}_validation.h5``, evaluated on ``datasets/T{T}_{split}.h5`` of
    ``labels``.  Missing training or validation files are noted; with none at all the
    baselines are None.
    """
    from tbotan.learning import baselines

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
    if pred.node_target != "cb":
        raise PredictionsError(
            f"{pred.path}: the model predicts {pred.node_target} (model.node_target), but the run "
            "analysis (S_B(q), maps, figures) is of C_B; score a propensity model with "
            "`tbotan predict` (it prints the Pearson correlation) or scripts/peer_botan.py"
        )


def _analyse_temperature(
    content: DatasetContent,
    predictions: dict[str, Predictions],
    label: str,
    trained: bool,
    config: dict,
    groups: dict[str, list[str]],
) -> tuple[TemperatureData, dict[str, ModelTemperature], dict[str, ModelTemperature]]:
    """MD data, per-model results and per-group seed-ensemble results at one temperature.

    ``groups`` maps a group name to the model names (seeds) whose predictions form its
    ensemble.  S_B(q) is computed for the MD labels, every model and every ensemble in one
    pass over the wave vectors.
    """
    from tbotan.learning.ensemble import combine_members

    a = config["analysis"]
    L = float(content.attrs["box_length"])
    names = list(predictions)
    combined = {
        group: combine_members([predictions[n].member() for n in members])
        for group, members in groups.items()
    }
    fields = np.stack(
        [content.cb] + [predictions[n].cb for n in names] + [combined[g]["cb"] for g in combined]
    )  # (1 + M + G, C, N)
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

    def result(pred: dict, edge_graph: str, index: int, spread: bool) -> ModelTemperature:
        graph = content.graph if edge_graph == "graph" else content.graph_ts
        return ModelTemperature(
            pearson_node=node_pearson(pred["cb"], content.cb, content.types),
            pearson_edge=edge_pearson(pred["edge"], graph.labels, graph.offsets),
            t_pred=np.asarray(pred["t_pred"], dtype=np.float64),
            embedding=np.asarray(pred["embedding"], dtype=np.float64),
            sb=sb.per_configuration[index],
            slab_cb=np.asarray(pred["cb"][0][in_slab], dtype=np.float64),
            t_pred_std=np.asarray(pred["t_pred_std"], np.float64) if spread else None,
            cb_std=np.asarray(pred["cb_std"], np.float64).mean(axis=1) if spread else None,
        )

    per_model = {}
    for i, name in enumerate(names, start=1):
        pred = predictions[name]
        per_model[name] = result(pred.member(), pred.edge_graph, i, spread=False)
    per_group = {}
    for i, (group, members) in enumerate(groups.items(), start=1 + len(names)):
        edge_graph = predictions[members[0]].edge_graph
        per_group[group] = result(combined[group], edge_graph, i, spread=True)
    return tdata, per_model, per_group
