"""Small synthetic dataset files for the learning tests (graphs, model, losses, training).

Configurations are jittered lattices of N KALJ particles at ρ = 1.2 (N = 250: box 5.93 σ, about
40 IS-graph edges per particle); the "labels" are smooth functions of the local structure, so
that a network can learn them: C_B from a smooth coordination number (thermal distances of the
IS-graph edges), edge labels from the thermal distance of each edge.
"""

from __future__ import annotations

import numpy as np

from tbotan.checks.benchmark import synthetic_attrs
from tbotan.formats.dataset import DatasetContent, Graph, write_dataset
from tbotan.physics import neighbors
from tbotan.physics.configurations import random_configuration


def synthetic_configuration(n: int, seed: int) -> dict:
    """Thermal and inherent positions, types and structure-based labels of one configuration."""
    rng = np.random.default_rng(seed)
    base = random_configuration(n, seed=seed)
    L = float(base.box[0, 0])
    inherent = np.mod(base.positions[0] + rng.normal(0.0, 0.12, (n, 3)), L)
    thermal = np.mod(inherent + rng.normal(0.0, 0.08, (n, 3)), L)
    types = base.types[0].astype(np.int64)
    g_is = neighbors.graph_edges(inherent, L, 2.0)
    g_ts = neighbors.graph_edges(thermal, L, 2.0)
    r_ts = neighbors.pair_distances(thermal, g_is[0], g_is[1], L)
    # a smooth coordination number from the thermal distances of the IS-graph edges
    close = np.bincount(g_is[0], weights=1.0 / (1.0 + np.exp((r_ts - 1.2) / 0.1)), minlength=n)
    score = (close - close.mean()) / close.std()
    cb = 0.6 + 0.25 * np.tanh(score) + 0.05 * (types == 1)

    def edge_labels(g):
        r_t = neighbors.pair_distances(thermal, g[0], g[1], L)
        return 0.1 * np.tanh((r_t - 1.5) / 0.3)

    return dict(
        L=L,
        types=types,
        thermal=thermal,
        inherent=inherent,
        cb=cb,
        graph=(g_is, edge_labels(g_is)),
        graph_ts=(g_ts, edge_labels(g_ts)),
    )


def synthetic_content(n: int, seeds, temperature: float, split: str = "train") -> DatasetContent:
    confs = [synthetic_configuration(n, s) for s in seeds]
    L = confs[0]["L"]
    attrs = synthetic_attrs(
        L, temperature=float(temperature), n_replicas=4, seeds=list(map(int, seeds)), split=split
    )
    c = len(confs)
    return DatasetContent(
        attrs=attrs,
        types=np.stack([x["types"] for x in confs]),
        thermal_positions=np.stack([x["thermal"] for x in confs]),
        inherent_positions=np.stack([x["inherent"] for x in confs]),
        inherent_energy=np.full(c, -6.8),
        cb=np.stack([x["cb"] for x in confs]),
        propensity=np.stack([1.0 - x["cb"] for x in confs]),
        n_bonds=np.full((c, n), 12),
        graph=Graph.concatenate([x["graph"] for x in confs]),
        graph_ts=Graph.concatenate([x["graph_ts"] for x in confs]),
        origin=np.stack([np.arange(c), np.zeros(c, int)], axis=1),
    )


def write_synthetic(path, n: int = 250, seeds=(0, 1), temperature: float = 0.8, split="train"):
    """Write a synthetic dataset file and return its path."""
    write_dataset(path, synthetic_content(n, seeds, temperature, split))
    return path


def small_config(**training) -> dict:
    """A validated configuration for fast CPU tests: small model, short training."""
    from tbotan import config as cfgmod

    base = {
        "model": {"hidden": 32, "message_passing_steps": 3},
        "training": {
            "epochs": 4,
            "warmup_epochs": 2,
            "learning_rate": 1e-3,
            "checkpoint_every": 2,
            "device": "cpu",
            "corr_distances": [1.0, 2.0, 2.5],  # ≤ L/2 = 2.96 at N = 250
        },
    }
    base["training"].update(training)
    return cfgmod.validate(base)


def prediction_attrs(**overrides) -> dict:
    """The attributes of a predictions file (``formats.predictions.PREDICTION_ATTRS``) of the
    main model at T = 0.44 on a test split, with ``overrides``."""
    attrs = dict(
        dataset="d.h5",
        dataset_config_hash="x",
        temperature=0.44,
        split="test",
        model="is+ts_lg0.01_s0",
        variant="is+ts",
        seed=0,
        lambda_global=0.01,
        epoch=10,
        edge_graph="graph",
    )
    attrs.update(overrides)
    return attrs
