"""Import BOTAN/GlassBench-style isoconfigurational data into the dataset schema.

Input files (``.npz``, one configuration each, as published with BOTAN and GlassBench):
``types`` (N,), ``initial_positions`` (N, 3) thermal configuration at t = 0 in [0, L), and
``positions`` (R, N, 3) the R replicas at the label time, unwrapped.  The box and temperature
are not stored in these files and are given by the user.

The importer quenches each thermal configuration to its inherent structure (FIRE, any engine),
computes C_B, propensity and edge labels from the stored replicas, builds both graphs, and
writes one dataset file (docs/formats.md), so a model can be trained on public data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tbotan import config as cfgmod
from tbotan import kalj
from tbotan.configuration import ConfigurationBatch
from tbotan.dataset import DatasetContent, Graph, git_commit, package_versions
from tbotan.labels import configuration_labels

#: τα of the paper's Table I (N = 4096), used when the user gives none.
TABLE_I = {0.44: 4120.0, 0.47: 616.0, 0.50: 217.0, 0.56: 52.0, 0.64: 16.5, 0.80: 3.42}


class BotanImportError(ValueError):
    """An input file does not look like BOTAN/GlassBench isoconfigurational data."""


def read_botan_npz(path: str | os.PathLike) -> dict:
    """Read and check one BOTAN-style file; returns types, initial_positions, positions."""
    path = Path(path)
    if not path.is_file():
        raise BotanImportError(f"input file not found: {path}")
    try:
        with np.load(path) as data:
            content = {key: data[key] for key in data.files}
    except Exception as exc:
        raise BotanImportError(f"cannot read {path} as a .npz file: {exc}") from exc
    missing = [k for k in ("types", "initial_positions", "positions") if k not in content]
    if missing:
        raise BotanImportError(f"{path}: missing arrays {missing} (has {sorted(content)})")
    types, initial, final = content["types"], content["initial_positions"], content["positions"]
    n = types.shape[0]
    if types.ndim != 1 or initial.shape != (n, 3) or final.ndim != 3 or final.shape[1:] != (n, 3):
        raise BotanImportError(
            f"{path}: shapes types {types.shape}, initial_positions {initial.shape}, positions "
            f"{final.shape} do not fit (N,), (N, 3), (R, N, 3)"
        )
    if not (np.all(np.isfinite(initial)) and np.all(np.isfinite(final))):
        raise BotanImportError(f"{path}: positions contain NaN or infinite values")
    if set(np.unique(types).tolist()) - {0, 1}:
        raise BotanImportError(f"{path}: types must be 0 (A) or 1 (B)")
    return {"types": types.astype(np.int8), "initial_positions": initial, "positions": final}


def import_botan(
    paths: Sequence[str | os.PathLike],
    *,
    box: float,
    temperature: float,
    engine,
    tau_alpha: float | None = None,
    label_time: float | None = None,
    split: str = "test",
    bond_in: float = 1.3,
    bond_out: float = 1.6,
    graph_cutoff: float = 2.0,
    fire=None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetContent:
    """Build a dataset from BOTAN-style files (see the module documentation).

    Args:
        paths: input ``.npz`` files (one configuration each, same N and replica count).
        box: cubic box edge L.
        temperature: T of the data.
        engine: an :class:`tbotan.md.Engine` for the FIRE quench.
        tau_alpha: τα of the data (default: Table I's value at this T).
        label_time: time of the stored replica positions (default τα).
        split: split name written into the file.
        bond_in, bond_out, graph_cutoff: label and graph parameters.
        fire: :class:`tbotan.md.FireParameters` (default: the project's defaults).
        progress: called as progress(done, total) after each configuration.
    """
    if not paths:
        raise BotanImportError("no input files given")
    if tau_alpha is None:
        matches = [v for t, v in TABLE_I.items() if abs(t - temperature) < 1e-9]
        if not matches:
            raise BotanImportError(
                f"T = {temperature} is not a Table I temperature: give tau_alpha explicitly"
            )
        tau_alpha = matches[0]
    label_time = tau_alpha if label_time is None else label_time
    files = [read_botan_npz(p) for p in paths]
    n = files[0]["types"].shape[0]
    n_replicas = files[0]["positions"].shape[0]
    for p, f in zip(paths, files, strict=True):
        if f["types"].shape[0] != n or f["positions"].shape[0] != n_replicas:
            raise BotanImportError(f"{p}: N or replica count differs from {paths[0]}")
    L = float(box)
    if abs(n / L**3 - kalj.DENSITY) > 0.05 * kalj.DENSITY:
        raise BotanImportError(
            f"box {L} gives density {n / L**3:.4f} for N = {n}, far from KALJ's {kalj.DENSITY}: "
            "check --box"
        )

    thermal = ConfigurationBatch(
        positions=np.stack([f["initial_positions"] for f in files]),
        types=np.stack([f["types"] for f in files]),
        box=np.full(3, L),
    )
    minimized = engine.minimize(thermal, fire)
    inherent = minimized.configurations
    per_config, graphs, graphs_ts = [], [], []
    for c, f in enumerate(files):
        labels = configuration_labels(
            thermal_unwrapped=f["initial_positions"],
            final_unwrapped=f["positions"],
            inherent=inherent.positions[c],
            types=f["types"],
            box=L,
            bond_in=bond_in,
            bond_out=bond_out,
            graph_cutoff=graph_cutoff,
        )
        per_config.append(labels)
        graphs.append((labels.graph_is, labels.edge_is))
        graphs_ts.append((labels.graph_ts, labels.edge_ts))
        if progress is not None:
            progress(c + 1, len(files))
    params = dict(
        temperature=temperature,
        tau_alpha=tau_alpha,
        label_time=label_time,
        box=L,
        bond_in=bond_in,
        bond_out=bond_out,
        graph_cutoff=graph_cutoff,
        files=[Path(p).name for p in paths],
    )
    attrs = dict(
        temperature=float(temperature),
        tau_alpha=float(tau_alpha),
        tau_alpha_source="given",
        label_time=float(label_time),
        n_replicas=int(n_replicas),
        box_length=L,
        bond_in=float(bond_in),
        bond_out=float(bond_out),
        graph_cutoff=float(graph_cutoff),
        engine=engine.describe(),
        package_versions=package_versions(),
        config_hash=cfgmod.section_hash(params),
        seeds=[],
        split=split,
        source="botan-import",
        inputs=[str(p) for p in paths],
        git_commit=git_commit() or "",
    )
    return DatasetContent(
        attrs=attrs,
        types=thermal.types,
        thermal_positions=thermal.positions,
        inherent_positions=inherent.positions,
        inherent_energy=minimized.energy,
        cb=np.stack([x.cb for x in per_config]),
        propensity=np.stack([x.propensity for x in per_config]),
        n_bonds=np.stack([x.n_bonds for x in per_config]),
        graph=Graph.concatenate(graphs),
        graph_ts=Graph.concatenate(graphs_ts),
        origin=np.stack([np.arange(len(files)), np.zeros(len(files), int)], axis=1),
    )
