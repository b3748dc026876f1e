"""Prediction files: one HDF5 file per model and dataset file (schema in docs/formats.md).

Written by ``tbotan predict``, read by the analysis.  Writing is atomic (temporary name, then
rename; ``complete`` set last); :func:`read_predictions` validates kind, version, completeness
and shapes, and, given the dataset, that the predictions belong to it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
KIND = "tbotan-predictions"
REQUIRED_ATTRS = (
    "dataset",
    "temperature",
    "split",
    "model",
    "variant",
    "seed",
    "lambda_global",
    "epoch",
    "edge_graph",
)


class PredictionsError(ValueError):
    """A predictions file is missing, damaged, or does not match its dataset."""


@dataclass
class Predictions:
    """Predictions of one model on one dataset file.

    Attributes:
        cb: (C, N) float32 predicted C_B.
        edge: (E,) float32 predicted edge labels on the dataset graph ``attrs['edge_graph']``.
        t_pred: (C,) float32 predicted temperature.
        embedding: (C, H) float32 global embedding g⁷.
        attrs: the file's attributes.
    """

    cb: np.ndarray
    edge: np.ndarray
    t_pred: np.ndarray
    embedding: np.ndarray
    attrs: dict

    @property
    def n_configurations(self) -> int:
        return self.cb.shape[0]


def write_predictions(
    path: str | os.PathLike,
    *,
    cb: np.ndarray,
    edge: np.ndarray,
    t_pred: np.ndarray,
    embedding: np.ndarray,
    attrs: dict,
    inputs: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a predictions file atomically (see :class:`Predictions` for the arrays).

    ``inputs``: optional arrays stored under ``input/<name>``; ``tbotan predict`` stores there
    the graph and positions of configurations that come without a dataset file
    (docs/formats.md).
    """
    import h5py

    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise PredictionsError(f"predictions for {path}: missing attributes {missing}")
    cb, edge = np.asarray(cb, np.float32), np.asarray(edge, np.float32)
    t_pred, embedding = np.asarray(t_pred, np.float32), np.asarray(embedding, np.float32)
    n_conf = cb.shape[0]
    if (
        cb.ndim != 2
        or t_pred.shape != (n_conf,)
        or embedding.ndim != 2
        or embedding.shape[0] != n_conf
    ):
        raise PredictionsError(
            f"predictions for {path}: inconsistent shapes cb {cb.shape}, t_pred {t_pred.shape}, "
            f"embedding {embedding.shape}"
        )
    for name, array in (("cb", cb), ("edge", edge), ("t_pred", t_pred), ("embedding", embedding)):
        if not np.all(np.isfinite(array)):
            raise PredictionsError(f"predictions for {path}: {name} contains NaN or inf")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["kind"] = KIND
        f.create_dataset("cb", data=cb)
        f.create_dataset("edge", data=edge)
        f.create_dataset("t_pred", data=t_pred)
        f.create_dataset("embedding", data=embedding)
        for name, array in (inputs or {}).items():
            f.create_dataset(f"input/{name}", data=np.asarray(array))
        f.attrs["complete"] = True
    os.replace(tmp, path)


def read_predictions(path: str | os.PathLike, dataset=None) -> Predictions:
    """Read and validate a predictions file.

    Args:
        path: the file.
        dataset: optional :class:`tbotan.dataset.DatasetFile` the predictions must match
            (number of configurations and particles, number of edges of ``edge_graph``).
    """
    import h5py

    from tbotan.dataset import _decode

    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"predictions file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _decode(v) for k, v in f.attrs.items()}
            if attrs.get("kind") != KIND:
                raise PredictionsError(f"{path} is not a tbotan predictions file")
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise PredictionsError(
                    f"{path} has schema_version {attrs.get('schema_version')}, expected "
                    f"{SCHEMA_VERSION}"
                )
            if not attrs.get("complete", False):
                raise PredictionsError(f"{path} is incomplete (its writer was interrupted)")
            missing = [k for k in REQUIRED_ATTRS if k not in attrs]
            if missing:
                raise PredictionsError(f"{path}: missing attributes {missing}")
            for key in ("cb", "edge", "t_pred", "embedding"):
                if key not in f:
                    raise PredictionsError(f"{path}: dataset '{key}' is missing")
            pred = Predictions(
                cb=f["cb"][...],
                edge=f["edge"][...],
                t_pred=f["t_pred"][...],
                embedding=f["embedding"][...],
                attrs=attrs,
            )
    except PredictionsError:
        raise
    except Exception as exc:
        raise PredictionsError(f"cannot read predictions file {path}: {exc}") from exc
    if dataset is not None:
        _check_against(pred, dataset, path)
    return pred


def _check_against(pred: Predictions, dataset, path) -> None:
    import h5py

    if pred.cb.shape != (dataset.n_configurations, dataset.n_particles):
        raise PredictionsError(
            f"{path}: cb has shape {pred.cb.shape} but {dataset.path} holds "
            f"({dataset.n_configurations}, {dataset.n_particles})"
        )
    graph = pred.attrs["edge_graph"]
    with h5py.File(dataset.path, "r") as f:
        n_edges = int(f[f"{graph}/edge_offsets"][-1])
    if pred.edge.shape != (n_edges,):
        raise PredictionsError(
            f"{path}: edge has shape {pred.edge.shape}, the dataset's {graph} has {n_edges} edges"
        )
