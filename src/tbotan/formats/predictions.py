"""Prediction files: one HDF5 file per model and dataset file (schema in docs/formats.md).

Written by ``tbotan predict``, read by the analysis.  Writing is atomic (temporary name, then
rename; ``complete`` set last); :func:`read_predictions` validates kind, version, completeness,
attributes, shapes and finiteness and, given the dataset, that the predictions belong to it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tbotan.config import temperature_label
from tbotan.formats.dataset import GRAPHS, DatasetError, DatasetFile, _decode

PREDICTIONS_SCHEMA_VERSION = 1
PREDICTIONS_KIND = "tbotan-predictions"

#: The optional arrays of a seed ensemble's predictions file (docs/formats.md), with the
#: array whose shape each must have (``member_t_pred``: (K, C)).
ENSEMBLE_ARRAYS = {
    "cb_std": "cb",
    "edge_std": "edge",
    "t_pred_std": "t_pred",
    "member_t_pred": "t_pred",
}

#: Attributes a predictions file carries besides schema_version, kind and complete.
PREDICTION_ATTRS = (
    "dataset",
    "dataset_config_hash",
    "temperature",
    "split",
    "model",
    "variant",
    "seed",
    "lambda_global",
    "epoch",
    "edge_graph",
)


#: The ``units`` attribute of every dataset of a predictions file (σ_AA, ε_AA, k_B = 1).
UNITS = {
    "cb": "dimensionless (fraction of bonds kept)",
    "edge": "sigma_AA",
    "t_pred": "epsilon_AA / k_B",
    "embedding": "dimensionless (network features)",
    "cb_std": "dimensionless (fraction of bonds kept)",
    "edge_std": "sigma_AA",
    "t_pred_std": "epsilon_AA / k_B",
    "member_t_pred": "epsilon_AA / k_B",
    "input/edge_index": "particle index",
    "input/types": "species (0 = A, 1 = B)",
    "input/thermal_positions": "sigma_AA",
    "input/inherent_positions": "sigma_AA",
    "input/box": "sigma_AA",
}


class PredictionsError(DatasetError):
    """A predictions file is missing, damaged or inconsistent with its dataset."""


@dataclass
class Predictions:
    """The content of one predictions file (docs/formats.md).

    Attributes:
        path: the file.
        attrs: its attributes (``temperature``, ``model``, ``variant``, ``seed``, ...).
        cb: (C, N) float32 the node output per particle: predicted C_B, or the predicted
            propensity (σ_AA) when ``attrs['node_target']`` is ``'propensity'``.
        edge: (E,) float32 predicted edge labels on the edges of ``attrs['edge_graph']``.
        t_pred: (C,) float32 predicted temperature (ε_AA / k_B).
        embedding: (C, H) float32 global embedding g⁷ before the global decoder; for a seed
            ensemble of K members their embeddings side by side, (C, K·H).
        cb_std, edge_std, t_pred_std: a seed ensemble's spread (population standard deviation
            over its members) of ``cb``, ``edge`` and ``t_pred`` (which are then the members'
            means), same shapes; None for one model.
        member_t_pred: (K, C) each member's T_pred; None for one model.
    """

    path: Path
    attrs: dict
    cb: np.ndarray
    edge: np.ndarray
    t_pred: np.ndarray
    embedding: np.ndarray
    cb_std: np.ndarray | None = None
    edge_std: np.ndarray | None = None
    t_pred_std: np.ndarray | None = None
    member_t_pred: np.ndarray | None = None

    def member(self) -> dict[str, np.ndarray]:
        """``cb``, ``edge``, ``t_pred`` and ``embedding``: these predictions as one member of a
        seed ensemble (:func:`tbotan.learning.ensemble.combine_members`)."""
        return {
            "cb": self.cb,
            "edge": self.edge,
            "t_pred": self.t_pred,
            "embedding": self.embedding,
        }

    @property
    def n_members(self) -> int:
        """Models whose predictions these are: 1, or K for a seed ensemble."""
        return int(self.attrs.get("n_members", 1))

    @property
    def temperature(self) -> float:
        return float(self.attrs["temperature"])

    @property
    def edge_graph(self) -> str:
        return str(self.attrs["edge_graph"])

    @property
    def node_target(self) -> str:
        """What ``cb`` holds: ``'cb'`` or ``'propensity'`` (files without the attribute: C_B)."""
        return str(self.attrs.get("node_target", "cb"))


def write_predictions(
    path: str | os.PathLike,
    *,
    cb: np.ndarray,
    edge: np.ndarray,
    t_pred: np.ndarray,
    embedding: np.ndarray,
    attrs: dict,
    inputs: dict[str, np.ndarray] | None = None,
    **ensemble: np.ndarray,
) -> None:
    """Write a predictions file atomically (temporary name, rename; ``complete`` set last).

    Args:
        path: destination, conventionally ``predictions/{model}/T{T}_{split}.h5``.
        cb: (C, N) the node output (C_B, or the propensity: ``attrs['node_target']``).
        edge: (E,) predicted edge labels, on the edges of the dataset graph ``attrs['edge_graph']``.
        t_pred: (C,) predicted temperatures.
        embedding: (C, H) global embeddings.
        attrs: every key of :data:`PREDICTION_ATTRS` (and ``node_target`` when the node output
            is not C_B); dict and list values are stored as JSON.
        inputs: optional arrays stored under ``input/<name>``; ``tbotan predict`` stores there
            the graph and positions of configurations that come without a dataset file.
        ensemble: a seed ensemble's spreads and members' T_pred (:data:`ENSEMBLE_ARRAYS`:
            ``cb_std``, ``edge_std``, ``t_pred_std``, ``member_t_pred``), all or none; then
            ``cb``, ``edge`` and ``t_pred`` are the members' means.

    Raises:
        PredictionsError: a missing attribute, inconsistent shapes or non-finite values.
    """

    path = Path(path)
    arrays = {
        "cb": np.asarray(cb, dtype=np.float32),
        "edge": np.asarray(edge, dtype=np.float32),
        "t_pred": np.asarray(t_pred, dtype=np.float32),
        "embedding": np.asarray(embedding, dtype=np.float32),
    }
    unknown = sorted(set(ensemble) - set(ENSEMBLE_ARRAYS))
    if unknown or (ensemble and len(ensemble) != len(ENSEMBLE_ARRAYS)):
        raise PredictionsError(
            f"{path}: an ensemble's predictions need exactly the arrays {sorted(ENSEMBLE_ARRAYS)}, "
            f"got {sorted(ensemble)}"
        )
    arrays.update({k: np.asarray(v, dtype=np.float32) for k, v in ensemble.items()})
    _check_prediction_arrays(arrays, str(path))
    missing = [k for k in PREDICTION_ATTRS if k not in attrs or attrs[k] is None]
    if missing:
        raise PredictionsError(f"{path}: predictions need the attributes {missing}")
    if attrs["edge_graph"] not in GRAPHS:
        raise PredictionsError(f"{path}: edge_graph must be one of {GRAPHS}")
    from tbotan.formats.io_utils import write_hdf5

    def fill(f) -> None:
        for key, value in attrs.items():
            if key in ("schema_version", "kind", "complete"):
                continue
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        f.attrs["schema_version"] = PREDICTIONS_SCHEMA_VERSION
        f.attrs["kind"] = PREDICTIONS_KIND
        for key, array in arrays.items():
            f.create_dataset(key, data=array)
        for name, array in (inputs or {}).items():
            f.create_dataset(f"input/{name}", data=np.asarray(array))
        f.attrs["complete"] = True  # last: a file without it was interrupted

    write_hdf5(path, fill, units=UNITS.__getitem__)


def _check_prediction_arrays(arrays: dict, where: str) -> None:
    cb, edge, t_pred, emb = (arrays[k] for k in ("cb", "edge", "t_pred", "embedding"))
    if cb.ndim != 2:
        raise PredictionsError(f"{where}: 'cb' must have shape (C, N), got {cb.shape}")
    n_conf = cb.shape[0]
    if t_pred.shape != (n_conf,):
        raise PredictionsError(f"{where}: 't_pred' has shape {t_pred.shape}, expected ({n_conf},)")
    if emb.ndim != 2 or emb.shape[0] != n_conf:
        raise PredictionsError(
            f"{where}: 'embedding' has shape {emb.shape}, expected ({n_conf}, H)"
        )
    if edge.ndim != 1:
        raise PredictionsError(f"{where}: 'edge' must have shape (E,), got {edge.shape}")
    present = [k for k in ENSEMBLE_ARRAYS if k in arrays]
    if present and len(present) != len(ENSEMBLE_ARRAYS):
        raise PredictionsError(
            f"{where}: a seed ensemble's arrays come all together ({sorted(ENSEMBLE_ARRAYS)}); "
            f"found only {present}"
        )
    for key, like in ENSEMBLE_ARRAYS.items():
        if key not in arrays:
            continue
        expect = arrays[like].shape
        shape = arrays[key].shape
        ok = shape[1:] == expect and len(shape) == 2 if key == "member_t_pred" else shape == expect
        if not ok:
            raise PredictionsError(
                f"{where}: '{key}' has shape {shape}, expected "
                f"{'(K, ' + str(expect[0]) + ')' if key == 'member_t_pred' else expect}"
            )
    for key, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise PredictionsError(f"{where}: '{key}' contains NaN or infinite values")


def read_predictions(path: str | os.PathLike, dataset: DatasetFile | None = None) -> Predictions:
    """Read and validate a predictions file.

    Checks kind, schema version, completeness, attributes, shapes and finiteness; with
    ``dataset`` also that the file matches it (temperature, C, N, and the edge count of the
    graph named by ``edge_graph``).

    Raises:
        PredictionsError: naming the file and what is wrong.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"predictions file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            if attrs.get("kind") != PREDICTIONS_KIND:
                raise PredictionsError(
                    f"{path} is not a tbotan predictions file (kind = {attrs.get('kind')!r})"
                )
            if attrs.get("schema_version") != PREDICTIONS_SCHEMA_VERSION:
                raise PredictionsError(
                    f"{path} has schema_version {attrs.get('schema_version')}; this tbotan reads "
                    f"version {PREDICTIONS_SCHEMA_VERSION} (run `tbotan predict` again)"
                )
            if not attrs.get("complete", False):
                raise PredictionsError(f"{path} is incomplete (its writer was interrupted)")
            missing = [k for k in PREDICTION_ATTRS if k not in attrs]
            if missing:
                raise PredictionsError(f"{path}: missing attributes {missing}")
            absent = [k for k in ("cb", "edge", "t_pred", "embedding") if k not in f]
            if absent:
                raise PredictionsError(f"{path}: datasets {absent} are missing")
            arrays = {k: f[k][...] for k in ("cb", "edge", "t_pred", "embedding")}
            arrays.update({k: f[k][...] for k in ENSEMBLE_ARRAYS if k in f})
    except PredictionsError:
        raise
    except Exception as exc:  # truncated or corrupted HDF5 file
        raise PredictionsError(f"cannot read predictions file {path}: {exc}") from exc
    _check_prediction_arrays(arrays, str(path))
    if attrs["edge_graph"] not in GRAPHS:
        raise PredictionsError(f"{path}: edge_graph {attrs['edge_graph']!r} is not one of {GRAPHS}")
    pred = Predictions(path=path, attrs=attrs, **arrays)
    if dataset is not None:
        _check_against_dataset(pred, dataset)
    return pred


def read_prediction_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``input/*`` arrays of a predictions file of a user configuration (``split =
    "user"``): ``types``, ``thermal_positions``, ``box``, ``edge_index`` and, when it was given
    or quenched, ``inherent_positions`` (shapes in docs/formats.md).

    Raises:
        PredictionsError: the file carries no such inputs, or they are incomplete.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            inputs = {k: f["input"][k][...] for k in f["input"]} if "input" in f else {}
    except Exception as exc:  # truncated or corrupted HDF5 file
        raise PredictionsError(f"cannot read predictions file {path}: {exc}") from exc
    missing = [k for k in ("types", "thermal_positions", "box", "edge_index") if k not in inputs]
    if missing:
        raise PredictionsError(
            f"{path}: input/{missing[0]} is missing (a user configuration's predictions carry "
            "their inputs; predictions of a dataset need the dataset file)"
        )
    return inputs


def _check_against_dataset(pred: Predictions, dataset: DatasetFile) -> None:
    import h5py

    where = f"{pred.path} (dataset {dataset.path})"
    if temperature_label(pred.temperature) != temperature_label(dataset.temperature):
        raise PredictionsError(
            f"{where}: temperature {pred.temperature} differs from the dataset's "
            f"{dataset.temperature}"
        )
    expect = (dataset.n_configurations, dataset.n_particles)
    if pred.cb.shape != expect:
        raise PredictionsError(f"{where}: 'cb' has shape {pred.cb.shape}, expected {expect}")
    with h5py.File(dataset.path, "r") as f:
        n_edges = int(f[f"{pred.edge_graph}/edge_offsets"][-1])
    if pred.edge.shape != (n_edges,):
        raise PredictionsError(
            f"{where}: 'edge' has shape {pred.edge.shape}, expected ({n_edges},) "
            f"(the edges of {pred.edge_graph})"
        )
