"""A tiny synthetic run directory, for tests of the analysis, figures and learning stages.

:func:`make_synthetic_run` writes, in seconds, everything the late stages read
(docs/formats.md): ``config.yaml`` (resolved through :mod:`tbotan.config`), dataset files for
every temperature and split, predictions of several models, and their ``metrics.csv``.

The data are not physics, only shaped like it: positions are a random packing (no
overlaps), C_B is a smooth random field (a few long-wavelength Fourier modes whose amplitude
grows as T falls) plus noise, edge labels follow C_B, and "predictions" are the labels
degraded by model-dependent noise, with T_pred pulled towards the nearest trained temperature
(as the paper finds) and embeddings a seed-dependent linear map of T_pred.

Usage::

    from synthetic_run import make_synthetic_run
    run_dir = make_synthetic_run(tmp_path)          # tmp_path/synthetic/...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from tbotan import config as cfg
from tbotan.analysis.runs import ModelId
from tbotan.config import VARIANT_GRAPH, VARIANTS
from tbotan.formats.dataset import DatasetContent, Graph, write_dataset
from tbotan.formats.predictions import write_predictions
from tbotan.physics import kalj
from tbotan.physics.neighbors import graph_edges

#: T, τα of Table I, trained?
TEMPERATURES = ((0.44, 4120.0, True), (0.50, 217.0, False), (0.64, 16.5, True))
EMBEDDING_SIZE = 8
#: (variant, λ_g, seed, prediction noise): two seeds of the main model, one ablation, one λ_g.
MODELS = (
    ("is+ts", 0.01, 0, 0.6),
    ("is+ts", 0.01, 1, 0.7),
    ("is", 0.01, 0, 1.0),
    ("is+ts", 0.1, 0, 0.7),
)


def synthetic_config(root: Path, n_particles: int, n_test: int, epochs: int) -> dict:
    """The resolved configuration of the synthetic run (results_dir = ``root``)."""
    return cfg.validate(
        {
            "run_name": "synthetic",
            "results_dir": str(root),
            "system": {"n_particles": n_particles},
            "temperatures": [
                {"T": T, "tau_alpha": tau, "train": train} for T, tau, train in TEMPERATURES
            ],
            "engine": {"name": "torch"},
            "dataset": {"n_train": 2, "n_validation": 1, "n_test": n_test},
            "training": {
                "epochs": epochs,
                "warmup_epochs": epochs // 2,
                "seeds": [0, 1],
                "ablations": ["is"],
                "ablation_seeds": 1,
                "lambda_global_sweep": [0.1],
                "corr_distances": [1.0, 2.0, 3.0],  # ≤ L/2 (3.2 at N = 320)
            },
        }
    )


def random_packing(
    n: int, box_length: float, rng: np.random.Generator, min_distance: float = 0.75
) -> np.ndarray:
    """(n, 3) positions in [0, L) with no pair closer than ``min_distance``: uniform random
    points pushed apart pair by pair until no overlap is left (a disordered, liquid-like
    packing, without a lattice's Bragg peaks)."""
    from scipy.spatial import cKDTree

    pos = rng.uniform(0, box_length, (n, 3))
    for _ in range(1000):
        pairs = cKDTree(pos, boxsize=box_length).query_pairs(min_distance, output_type="ndarray")
        if len(pairs) == 0:
            return pos
        j, k = pairs.T
        d = pos[k] - pos[j]
        d -= box_length * np.round(d / box_length)
        r = np.linalg.norm(d, axis=1, keepdims=True)
        push = 0.5 * (1.05 * min_distance - r) * d / np.maximum(r, 1e-12)
        np.add.at(pos, j, -push)
        np.add.at(pos, k, push)
        pos = np.mod(pos, box_length)
        pos[pos >= box_length] = 0.0
    raise RuntimeError(f"could not place {n} particles {min_distance} apart in L = {box_length}")


def smooth_field(
    positions: np.ndarray, box_length: float, rng: np.random.Generator, n_max: int = 1
) -> np.ndarray:
    """(N,) a random superposition of the longest-wavelength Fourier modes, unit variance."""
    r = np.arange(-n_max, n_max + 1)
    n = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    n = n[(n * n).sum(1) > 0]
    q = 2 * np.pi / box_length * n
    phase = rng.uniform(0, 2 * np.pi, len(q))
    field = np.cos(positions @ q.T + phase).sum(axis=1)
    return (field - field.mean()) / field.std()


def _configuration(n, L, T, rng, cutoff):
    thermal = random_packing(n, L, rng)
    inherent = np.mod(thermal + rng.normal(0, 0.05, thermal.shape), L)
    inherent[inherent >= L] = 0.0
    types = rng.permutation(kalj.standard_types(n))
    amplitude = 0.12 * (0.44 / T) ** 2  # heterogeneity grows as T falls
    cb = np.clip(0.65 + amplitude * smooth_field(thermal, L, rng) + 0.05 * rng.normal(size=n), 0, 1)
    graphs = []
    for pos in (inherent, thermal):
        edges = graph_edges(pos, L, cutoff)
        labels = 0.3 * (1 - 0.5 * (cb[edges[0]] + cb[edges[1]])) + 0.02 * rng.normal(
            size=edges.shape[1]
        )
        graphs.append((edges, labels))
    return thermal, inherent, types, cb, graphs


def make_dataset(
    config: dict, T: float, tau: float, split: str, n_conf: int, rng: np.random.Generator
) -> DatasetContent:
    """A synthetic dataset file's content (C = ``n_conf``) at temperature T."""
    n = config["system"]["n_particles"]
    L = kalj.box_length(n, config["system"]["density"])
    confs = [_configuration(n, L, T, rng, config["graph"]["cutoff"]) for _ in range(n_conf)]
    cb = np.stack([c[3] for c in confs])
    return DatasetContent(
        attrs={
            "temperature": T,
            "tau_alpha": tau,
            "tau_alpha_source": "table",
            "label_time": tau,
            "n_replicas": config["iso"]["n_replicas"],
            "box_length": L,
            "bond_in": config["iso"]["bond_in"],
            "bond_out": config["iso"]["bond_out"],
            "graph_cutoff": config["graph"]["cutoff"],
            "engine": {"name": "synthetic"},
            "package_versions": {},
            "config_hash": cfg.section_hash(config),
            "seeds": [config["seed"]],
            "split": split,
            "source": "pipeline",
        },
        types=np.stack([c[2] for c in confs]).astype(np.int8),
        thermal_positions=np.stack([c[0] for c in confs]),
        inherent_positions=np.stack([c[1] for c in confs]),
        inherent_energy=-6.8 - 0.1 * rng.random(n_conf),
        cb=cb,
        propensity=np.clip(1.2 * (1 - cb) + 0.05 * rng.normal(size=cb.shape), 0, None),
        n_bonds=rng.integers(8, 15, size=cb.shape).astype(np.int16),
        graph=Graph.concatenate([c[4][0] for c in confs]),
        graph_ts=Graph.concatenate([c[4][1] for c in confs]),
        origin=np.stack([np.arange(n_conf), np.zeros(n_conf, int)], axis=1),
    )


def _nearest_trained(T: float) -> float:
    trained = [t for t, _, train in TEMPERATURES if train]
    return min(trained, key=lambda t: abs(t - T))


def make_predictions(
    path: Path, content: DatasetContent, model: ModelId, noise: float, dataset_path: Path
) -> None:
    """Synthetic predictions of ``model`` for a dataset (labels degraded by ``noise``)."""
    rng = np.random.default_rng(
        [model.seed, int(1000 * model.lambda_global), VARIANTS.index(model.variant)]
    )
    T = float(content.attrs["temperature"])
    cb = content.cb.astype(np.float64)
    mean = cb.mean(axis=1, keepdims=True)
    spread = cb.std(axis=1, keepdims=True)
    pred_cb = mean + 0.8 * (cb - mean) + noise * spread * rng.normal(size=cb.shape)
    graph_name = VARIANT_GRAPH[model.variant]
    graph = content.graph if graph_name == "graph" else content.graph_ts
    edge = graph.labels + noise * graph.labels.std() * rng.normal(size=graph.labels.shape)
    n_conf = content.n_configurations
    t_pred = 0.6 * _nearest_trained(T) + 0.4 * T + 0.01 * rng.normal(size=n_conf)
    basis = np.random.default_rng([7, model.seed]).normal(size=(3, EMBEDDING_SIZE))
    features = np.stack([np.ones(n_conf), t_pred, t_pred**2], axis=1)
    embedding = features @ basis + 0.01 * rng.normal(size=(n_conf, EMBEDDING_SIZE))
    write_predictions(
        path,
        cb=pred_cb,
        edge=edge,
        t_pred=t_pred,
        embedding=embedding,
        attrs={
            "dataset": str(dataset_path),
            "dataset_config_hash": content.attrs["config_hash"],
            "temperature": T,
            "split": content.attrs["split"],
            "model": model.name,
            "variant": model.variant,
            "seed": model.seed,
            "lambda_global": model.lambda_global,
            "epoch": 0,
            "edge_graph": graph_name,
        },
    )


def make_metrics(path: Path, config: dict, model: ModelId, validation_losses: bool) -> None:
    """A metrics.csv with decaying losses, the warm-up switch, and validation columns."""
    rng = np.random.default_rng([11, model.seed])
    tr = config["training"]
    epochs = np.arange(1, tr["epochs"] + 1)
    on = epochs > tr["warmup_epochs"]
    decay = np.exp(-epochs / (0.3 * tr["epochs"]))
    cols = {
        "epoch": epochs,
        "time_s": 2.0 * epochs,
        "loss_mse": 0.4 + 0.6 * decay,
        "loss_var": 0.1 + 0.5 * decay,
        "loss_corr": 0.2 + 0.8 * decay,
        "loss_edge": 0.3 + 0.4 * decay,
        "loss_global": 0.001 + 0.05 * decay,
        "w_var": np.where(on, tr["w_var"], 0.0),
        "w_corr": np.where(on, tr["w_corr"], 0.0),
        "lr": np.full(epochs.size, tr["learning_rate"]),
    }
    for key in ("loss_mse", "loss_var", "loss_corr", "loss_edge", "loss_global"):
        cols[key] = cols[key] * (1 + 0.05 * rng.normal(size=epochs.size))
    cols["loss_node"] = (
        cols["loss_mse"] + cols["w_var"] * cols["loss_var"] + cols["w_corr"] * cols["loss_corr"]
    )
    cols["loss"] = (
        tr["lambda_node"] * cols["loss_node"]
        + tr["lambda_edge"] * cols["loss_edge"]
        + model.lambda_global * cols["loss_global"]
    )
    order = ["epoch", "time_s", "loss", "loss_node", "loss_mse", "loss_var", "loss_corr"]
    order += ["loss_edge", "loss_global", "w_var", "w_corr", "lr"]
    for label in cfg.temperature_labels(config, "train"):
        cols[f"val_pearson_T{label}"] = 0.6 * (1 - decay) + 0.02 * rng.normal(size=epochs.size)
        cols[f"val_t_pred_T{label}"] = float(label) + 0.05 * decay * rng.normal(size=epochs.size)
        order += [f"val_pearson_T{label}", f"val_t_pred_T{label}"]
    if validation_losses:
        lowest = cfg.temperature_labels(config, "train")[0]
        for key in ("loss", "loss_mse", "loss_var", "loss_corr", "loss_edge", "loss_global"):
            name = f"val_{key}_T{lowest}"
            cols[name] = cols[key] * (1.2 + 0.1 * rng.normal(size=epochs.size))
            order.append(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(",".join(order) + "\n")
        for i in range(epochs.size):
            fh.write(",".join(f"{cols[k][i]:.8g}" for k in order) + "\n")


def make_synthetic_run(
    root: str | Path,
    *,
    n_particles: int = 320,
    n_test: int = 3,
    epochs: int = 40,
    models=MODELS,
    validation_losses: bool = True,
    seed: int = 0,
) -> Path:
    """Write a synthetic run under ``root/synthetic`` and return that folder.

    Args:
        root: results folder.
        n_particles: N per configuration (≥ 250, the schema's minimum).
        n_test: test configurations per temperature (trained ones also get 2 train and 1
            validation configuration).
        epochs: rows of metrics.csv (the warm-up is the first half).
        models: (variant, λ_g, seed, noise) of each model with predictions and metrics.
        validation_losses: add ``val_<loss>_T<lowest trained T>`` columns to metrics.csv.
    """
    root = Path(root)
    config = synthetic_config(root, n_particles, n_test, epochs)
    run_dir = cfg.run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "config.yaml", "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    rng = np.random.default_rng(seed)
    ids = [(ModelId(v, lg, s), noise) for v, lg, s, noise in models]
    for T, tau, _ in TEMPERATURES:
        label = cfg.temperature_label(T)
        for split, n_conf in cfg.split_sizes(config, T).items():
            if n_conf == 0:
                continue
            content = make_dataset(config, T, tau, split, n_conf, rng)
            path = run_dir / "datasets" / f"T{label}_{split}.h5"
            write_dataset(path, content)
            if split != "test":
                continue
            for model, noise in ids:
                make_predictions(
                    run_dir / "predictions" / model.name / f"T{label}_{split}.h5",
                    content,
                    model,
                    noise,
                    path,
                )
    for model, _ in ids:
        make_metrics(
            run_dir / "models" / model.name / "metrics.csv", config, model, validation_losses
        )
    return run_dir
