"""Small atomic-file helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_default) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike):
    """Read a JSON file, with a clear error when it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
