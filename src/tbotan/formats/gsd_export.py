"""Labels and predictions as GSD per-particle data, for OVITO, freud and HOOMD-blue.

:func:`export_gsd` writes one GSD frame per configuration of a dataset file (the MD labels)
and/or of predictions files (one model, or several seeds of an ensemble: their mean and
spread), in the schema of docs/formats.md ("Exported GSD files"): the configuration (thermal or
inherent structure), per-type diameters, the per-particle arrays as ``log/particles/<name>``
(OVITO's particle properties), the predicted temperature and other per-configuration numbers
as ``log/<name>`` (OVITO's global attributes), and the edges of the graph the edge labels live
on as GSD bonds with the labels as ``log/bonds/<name>`` (OVITO's bond properties).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tbotan.errors import ConfigError
from tbotan.formats.dataset import DatasetFile
from tbotan.formats.predictions import (
    Predictions,
    PredictionsError,
    read_prediction_inputs,
    read_predictions,
)

#: The structures a frame can carry.
STRUCTURES = ("thermal", "inherent")

#: Per-particle logs (``log/particles/<name>``) and what they hold.
PARTICLE_LOGS = {
    "cb_md": "C_B from the isoconfigurational MD (dataset labels/cb)",
    "propensity_md": "propensity from the MD, σ_AA (dataset labels/propensity)",
    "n_bonds": "bonds at t = 0 (dataset labels/n_bonds)",
    "cb_pred": "predicted C_B, mean over the predictions files (ensemble members)",
    "cb_pred_std": "its population standard deviation over the members (an ensemble)",
}
#: Per-bond logs (``log/bonds/<name>``), on the edges of the graph of the frame's bonds.
BOND_LOGS = {
    "edge_md": "edge label ⟨r_jk(t)⟩ − r_jk(0) from the MD, σ_AA",
    "edge_pred": "predicted edge label, mean over the members, σ_AA",
    "edge_pred_std": "its standard deviation over the members (an ensemble)",
}
#: Per-frame logs (``log/<name>``, one value each).
FRAME_LOGS = {
    "temperature": "temperature of the MD (dataset) or the --temperature label of predict",
    "t_pred": "predicted temperature, mean over the members (ε_AA/k_B)",
    "t_pred_std": "its standard deviation over the members (an ensemble)",
    "inherent_energy": "e_IS/N of the inherent structure (dataset), ε_AA",
    "tbotan/configuration": "index of the configuration in the dataset or predictions file",
}


@dataclass
class ExportSummary:
    """What :func:`export_gsd` wrote: frames, particles, bond graph and the logged names."""

    path: Path
    n_frames: int
    n_particles: int
    bond_graph: str
    particle_logs: list[str]
    bond_logs: list[str]
    frame_logs: list[str]


def export_gsd(
    output: str | os.PathLike,
    *,
    dataset: str | os.PathLike | None = None,
    predictions: Sequence[str | os.PathLike] = (),
    structure: str = "thermal",
    configurations: Sequence[int] | None = None,
) -> ExportSummary:
    """Write labels and/or predictions as a GSD file, one frame per configuration.

    Args:
        output: the GSD file (written atomically).
        dataset: a dataset file (MD labels, positions, graphs).  Predictions of a dataset
            need it: given, or the file named by their ``dataset`` attribute.
        predictions: predictions files of the same inputs (the members of an ensemble, e.g.
            several seeds): C_B, edge labels and T_pred are exported as their mean, with the
            standard deviation over members when there are two or more.  A predictions file
            of a single user configuration (``split = "user"``) carries its own positions.
        structure: ``'thermal'`` or ``'inherent'``: which positions the frames hold.
        configurations: indices of the configurations to export (all by default).

    Returns:
        An :class:`ExportSummary`.

    Raises:
        PredictionsError (a DatasetError): a file is missing, damaged, or the files do not
            belong together; ConfigError: a bad structure or configuration index.
    """
    from tbotan.physics.configurations import ConfigurationBatch, write_gsd

    if structure not in STRUCTURES:
        raise ConfigError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    if dataset is None and not predictions:
        raise ConfigError("give a dataset file, predictions files or both")
    inputs = _open_inputs(dataset, predictions)
    members, dataset_file, source = inputs.members, inputs.dataset, inputs.source
    graph_name = members[0].edge_graph if members else "graph"
    n_conf = len(dataset_file) if dataset_file is not None else members[0].cb.shape[0]
    chosen = list(range(n_conf)) if configurations is None else [int(c) for c in configurations]
    bad = [c for c in chosen if not 0 <= c < n_conf]
    if bad or not chosen:
        raise ConfigError(
            f"configurations {bad or chosen} do not exist: {source} holds {n_conf} (0 … "
            f"{n_conf - 1})"
        )

    positions, types, boxes, bonds, logs = [], [], [], [], []
    for c in chosen:
        frame = _frame_content(c, inputs, graph_name, structure)
        positions.append(frame.pop("positions"))
        types.append(frame.pop("types"))
        boxes.append(frame.pop("box"))
        bonds.append(frame.pop("bonds"))
        logs.append(frame)
    batch = ConfigurationBatch(positions=np.stack(positions), types=np.stack(types), box=boxes)
    config_hash = (
        str(dataset_file.attrs["config_hash"])
        if dataset_file is not None
        else str(members[0].attrs.get("dataset_config_hash", ""))
    )
    write_gsd(
        output,
        batch,
        logs=logs,
        config_hash=config_hash or None,
        bonds=bonds,
        bond_type=graph_name,
    )
    names = logs[0]
    return ExportSummary(
        path=Path(output),
        n_frames=len(chosen),
        n_particles=batch.n_particles,
        bond_graph=graph_name,
        particle_logs=[k.split("/", 1)[1] for k in names if k.startswith("particles/")],
        bond_logs=[k.split("/", 1)[1] for k in names if k.startswith("bonds/")],
        frame_logs=[k for k in names if not k.startswith(("particles/", "bonds/"))],
    )


@dataclass
class _Inputs:
    """The opened inputs: predictions members, the dataset file (or None), the positions of a
    user configuration's predictions (or None), a name for error messages and the
    predictions to export (:func:`_predicted`)."""

    members: list[Predictions]
    dataset: DatasetFile | None
    user_inputs: dict[str, np.ndarray] | None
    source: str
    predicted: dict[str, np.ndarray] | None = None


def _open_inputs(dataset, predictions) -> _Inputs:
    """Open and cross-check the inputs (predictions against their dataset, members alike)."""
    paths = [Path(p) for p in predictions]
    dataset_file = DatasetFile(dataset) if dataset is not None else None
    members = [read_predictions(p) for p in paths]
    user = [m.attrs["split"] == "user" for m in members]
    if any(user) and not all(user):
        raise PredictionsError(
            f"{paths}: predictions of a user configuration and of a dataset cannot be combined"
        )
    user_inputs = None
    if members and user[0]:
        if dataset_file is not None:
            raise PredictionsError(
                f"{paths[0]} holds a user configuration (it carries its own positions): export "
                "it without a dataset file"
            )
        user_inputs = read_prediction_inputs(paths[0])
        for path in paths[1:]:
            other = read_prediction_inputs(path)
            if not all(
                np.array_equal(other[k], user_inputs[k])
                for k in ("types", "thermal_positions", "edge_index")
            ):
                raise PredictionsError(f"{path} and {paths[0]} predict different configurations")
    elif members:
        if dataset_file is None:
            named = Path(str(members[0].attrs["dataset"]))
            if not named.is_file():
                raise PredictionsError(
                    f"{paths[0]} names the dataset file {named}, which is not there: give the "
                    "dataset file (--dataset)"
                )
            dataset_file = DatasetFile(named)
        members = [read_predictions(p, dataset_file) for p in paths]
    graphs = {m.edge_graph for m in members}
    if len(graphs) > 1:
        raise PredictionsError(f"{paths}: the predictions files differ in edge_graph ({graphs})")
    if len({(m.cb.shape, m.edge.shape) for m in members}) > 1:
        raise PredictionsError(f"{paths}: the predictions files differ in shape")
    source = str(dataset_file.path) if dataset_file is not None else str(paths[0])
    return _Inputs(members, dataset_file, user_inputs, source, _predicted(members))


def _predicted(members: list[Predictions]) -> dict[str, np.ndarray] | None:
    """The predictions to export: ``cb``, ``edge``, ``t_pred`` and, for an ensemble, their
    spreads ``cb_std``, ``edge_std``, ``t_pred_std`` (None without predictions).

    One file is exported as it is (an ensemble file written by ``tbotan predict`` with several
    models carries its spreads); several files are the members of an ensemble, combined by
    :func:`tbotan.learning.ensemble.combine_members` (mean and population spread).
    """
    from tbotan.learning.ensemble import combine_members

    if not members:
        return None
    if len(members) == 1:
        m = members[0]
        keys = ("cb", "edge", "t_pred", "cb_std", "edge_std", "t_pred_std")
        return {k: getattr(m, k) for k in keys if getattr(m, k) is not None}
    ensembles = [str(m.path) for m in members if m.n_members > 1]
    if ensembles:
        raise PredictionsError(
            f"{ensembles} already hold seed ensembles: export one ensemble file, or the members' "
            "files of one ensemble"
        )
    combined = combine_members([m.member() for m in members])
    return {k: v for k, v in combined.items() if k not in ("embedding", "member_t_pred")}


def _frame_content(c: int, inputs: _Inputs, graph_name: str, structure: str) -> dict:
    """Positions, types, box, bonds ((E_c, 2) particle pairs) and logs of configuration c."""
    out: dict = {}
    members = inputs.members
    if inputs.dataset is not None:
        dataset = inputs.dataset
        conf = dataset.configuration(c, graphs=(graph_name,))
        index = conf[f"{graph_name}_index"]
        out.update(
            positions=conf[f"{structure}_positions"],
            types=conf["types"],
            box=np.full(3, dataset.box_length),
            bonds=index.T,
        )
        out["particles/cb_md"] = np.asarray(conf["cb"], np.float32)
        out["particles/propensity_md"] = np.asarray(conf["propensity"], np.float32)
        out["particles/n_bonds"] = np.asarray(conf["n_bonds"], np.int16)
        out["bonds/edge_md"] = np.asarray(conf[f"{graph_name}_labels"], np.float32)
        out["temperature"] = np.array([dataset.temperature])
        out["inherent_energy"] = np.array([conf["inherent_energy"]])
        lo = int(dataset.edge_offsets(graph_name)[c])
        edges = slice(lo, lo + index.shape[1])
    else:
        user = inputs.user_inputs
        key = f"{structure}_positions"
        if key not in user:
            raise PredictionsError(
                f"{members[0].path} holds no {structure} structure (a model of the 'ts' variant "
                "quenches none): export the thermal structure"
            )
        out.update(
            positions=user[key],
            types=user["types"],
            box=user["box"],
            bonds=user["edge_index"].T,
        )
        out["temperature"] = np.array([float(members[0].attrs["temperature"])])
        edges = slice(None)
    pred = inputs.predicted
    if pred is not None:
        for key, name, part in (
            ("cb", "particles/cb_pred", c),
            ("edge", "bonds/edge_pred", edges),
            ("t_pred", "t_pred", slice(c, c + 1)),
        ):
            out[name] = np.asarray(pred[key][part], np.float32)
            if f"{key}_std" in pred:
                out[f"{name}_std"] = np.asarray(pred[f"{key}_std"][part], np.float32)
    out["tbotan/configuration"] = np.array([c], dtype=np.int64)
    return out
