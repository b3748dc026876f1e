"""Model and checkpoint files of ``tbotan train`` (docs/formats.md, "Model files").

``models/{model}/model.pt`` (``format = "tbotan-model"``) and ``checkpoint.pt``
(``format = "tbotan-checkpoint"``) are ``torch.save`` dictionaries with a ``format`` and a
``version`` key, written atomically; ``metrics.csv`` is one row per epoch.  The trainer
(:mod:`tbotan.learning.training`) writes them, inference (:mod:`tbotan.learning.inference`) and
the analysis (:mod:`tbotan.analysis.runs`) read them: all through this module, so that reading a
model needs nothing of the training code.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch

from tbotan.errors import FileFormatError, MissingInputError
from tbotan.formats.io_utils import atomic_path

CHECKPOINT_FORMAT = "tbotan-checkpoint"
MODEL_FORMAT = "tbotan-model"
FILE_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
METRICS_NAME = "metrics.csv"

#: Keys every model file holds (beyond ``format`` and ``version``).
MODEL_KEYS = frozenset({"variant", "hparams", "state_dict", "config", "model_id", "seed"})


class ModelFileError(FileFormatError, RuntimeError):
    """A model or checkpoint file is unreadable, of another format or version, or incomplete."""


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to memory, then written to a temporary name and renamed
    (:func:`tbotan.formats.io_utils.atomic_path`: no ``.tmp`` is left when the disk is full)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(buffer.getbuffer())


def load_file(path: str | os.PathLike, kind: str) -> dict:
    """Read a checkpoint (``kind = CHECKPOINT_FORMAT``) or model file, checking its format.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a ``torch.save`` dictionary of format ``kind`` and version
            :data:`FILE_VERSION`.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{kind} file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"cannot read {path} as a {kind} file: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != kind:
        raise ModelFileError(f"{path} is not a {kind} file (format {obj.get('format')!r})")
    if obj.get("version") != FILE_VERSION:
        raise ModelFileError(
            f"{path} has version {obj.get('version')}; this tbotan reads version {FILE_VERSION}"
        )
    return obj


def read_model_file(path: str | os.PathLike) -> dict:
    """``model.pt`` as its dictionary, format, version and the keys of :data:`MODEL_KEYS`
    checked (the weights are not loaded into a network here)."""
    meta = load_file(path, MODEL_FORMAT)
    missing = MODEL_KEYS - set(meta)
    if missing:
        raise ModelFileError(f"{path}: not a complete model file (no {sorted(missing)})")
    return meta


def write_metrics(path: Path, columns: list[str], rows: list[dict]) -> None:
    """``metrics.csv`` with its header and ``rows``, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def append_metrics(path: Path, columns: list[str], row: dict) -> None:
    """One more row of ``metrics.csv``."""
    with open(path, "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore").writerow(row)


def _metrics_table(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """(header, rows) of a ``metrics.csv``, every cell a float (NaN where empty).

    Raises:
        ValueError: a cell that is not a number (naming its column).
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = []
        for raw in reader:
            row = {}
            for key, value in raw.items():
                try:
                    row[key] = float(value) if value not in ("", None) else float("nan")
                except ValueError as exc:
                    raise FileFormatError(
                        f"{path}: column {key!r} holds a value that is not a number"
                    ) from exc
            rows.append(row)
    return header, rows


def read_metrics(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``models/{model}/metrics.csv`` as {column: (epochs,) float64}, sorted by epoch.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no ``epoch`` column or no rows, or a value that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"training metrics not found: {path}")
    header, rows = _metrics_table(path)
    if not rows or "epoch" not in header:
        raise FileFormatError(f"{path}: expected a CSV file with a header row holding 'epoch'")
    out = {key: np.array([row[key] for row in rows]) for key in header}
    order = np.argsort(out["epoch"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def read_metrics_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of ``metrics.csv`` in file order as dicts of floats (``epoch`` an int); [] when
    the file does not exist (a training that has not finished an epoch)."""
    path = Path(path)
    if not path.is_file():
        return []
    _, rows = _metrics_table(path)
    for row in rows:
        row["epoch"] = int(row["epoch"])
    return rows
