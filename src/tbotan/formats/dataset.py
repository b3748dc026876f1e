"""Dataset files: one HDF5 file per temperature and split (schema in docs/formats.md).

A dataset file holds C configurations of N particles at one temperature: thermal and
inherent-structure positions, types, labels (bond-breaking C_B, propensity, edge labels) and
two graphs (IS graph and thermal-structure graph, both with cut-off ``graph_cutoff``).

Writing is atomic (temporary name, then rename; the ``complete`` attribute is set last), and
:class:`DatasetFile` validates everything on opening: schema version, required datasets,
shapes, dtypes, finiteness, graph consistency.  A truncated or damaged file fails with a
message naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
KIND = "tbotan-dataset"

#: Attributes every dataset file carries.
REQUIRED_ATTRS = (
    "schema_version",
    "kind",
    "temperature",
    "tau_alpha",
    "tau_alpha_source",
    "label_time",
    "n_replicas",
    "box_length",
    "bond_in",
    "bond_out",
    "graph_cutoff",
    "engine",
    "package_versions",
    "config_hash",
    "seeds",
    "split",
    "source",
    "complete",
)

GRAPHS = ("graph", "graph_ts")  # IS graph, thermal-structure graph


class DatasetError(ValueError):
    """A dataset file is missing, damaged or does not follow the schema."""


@dataclass
class Graph:
    """Directed edges of C graphs, concatenated.

    Attributes:
        offsets: (C+1,) int64; edges of configuration c are ``index[:, offsets[c]:offsets[c+1]]``.
        index: (2, E) int32 local particle indices (source j, target k), both directions, no
            self-loops.
        labels: (E,) float32 edge labels ``⟨r_jk(t)⟩ − r_jk(0)`` in the thermal structure.
    """

    offsets: np.ndarray
    index: np.ndarray
    labels: np.ndarray

    def edges_of(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(2, E_c) edge index and (E_c,) labels of configuration c."""
        lo, hi = int(self.offsets[c]), int(self.offsets[c + 1])
        return self.index[:, lo:hi], self.labels[lo:hi]

    @staticmethod
    def concatenate(per_config: list[tuple[np.ndarray, np.ndarray]]) -> Graph:
        """From a list of per-configuration (index (2, E_c), labels (E_c,))."""
        counts = [idx.shape[1] for idx, _ in per_config]
        offsets = np.zeros(len(per_config) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(counts)
        index = (
            np.concatenate([idx for idx, _ in per_config], axis=1).astype(np.int32)
            if per_config
            else np.zeros((2, 0), np.int32)
        )
        labels = (
            np.concatenate([lab for _, lab in per_config]).astype(np.float32)
            if per_config
            else np.zeros(0, np.float32)
        )
        return Graph(offsets=offsets, index=index, labels=labels)


@dataclass
class DatasetContent:
    """Everything a dataset file holds (see the module documentation for shapes)."""

    attrs: dict
    types: np.ndarray  # (C, N) int8
    thermal_positions: np.ndarray  # (C, N, 3) float64 in [0, L)
    inherent_positions: np.ndarray  # (C, N, 3) float64 in [0, L)
    inherent_energy: np.ndarray  # (C,) float64, per particle
    cb: np.ndarray  # (C, N) float32
    propensity: np.ndarray  # (C, N) float32
    n_bonds: np.ndarray  # (C, N) int16, neighbours at t = 0 (r < bond_in σ)
    graph: Graph  # IS graph
    graph_ts: Graph  # thermal-structure graph
    origin: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32))  # (C, 2)
    extra_times: np.ndarray | None = None  # (T_x,) label times in units of tau_alpha
    cb_extra: np.ndarray | None = None  # (C, T_x, N) float32

    @property
    def n_configurations(self) -> int:
        return self.types.shape[0]

    @property
    def n_particles(self) -> int:
        return self.types.shape[1]


def package_versions() -> dict:
    """Versions of the packages that shape the data."""
    import importlib.metadata as md

    out = {}
    for name in ("tbotan", "numpy", "torch", "gsd", "h5py", "freud-analysis", "hoomd"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    try:
        import hoomd

        out["hoomd"] = hoomd.version.version
    except ImportError:
        pass
    return out


def git_commit() -> str | None:
    """The checkout's commit, when the package runs from a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_dataset(path: str | os.PathLike, content: DatasetContent) -> None:
    """Validate ``content`` and write it atomically to ``path``."""

    from tbotan.formats.io_utils import write_hdf5

    _check_content(content, str(path))
    attrs = dict(content.attrs)
    attrs.update(
        schema_version=SCHEMA_VERSION,
        kind=KIND,
        n_configurations=content.n_configurations,
        n_particles=content.n_particles,
    )

    def fill(f) -> None:
        for key, value in attrs.items():
            if key == "complete":
                continue
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        f.create_dataset("types", data=content.types.astype(np.int8))
        f.create_dataset("thermal/positions", data=content.thermal_positions.astype(np.float64))
        f.create_dataset("inherent/positions", data=content.inherent_positions.astype(np.float64))
        f.create_dataset("inherent/energy", data=content.inherent_energy.astype(np.float64))
        f.create_dataset("labels/cb", data=content.cb.astype(np.float32))
        f.create_dataset("labels/propensity", data=content.propensity.astype(np.float32))
        f.create_dataset("labels/n_bonds", data=content.n_bonds.astype(np.int16))
        for name, graph in zip(GRAPHS, (content.graph, content.graph_ts), strict=True):
            f.create_dataset(f"{name}/edge_offsets", data=graph.offsets.astype(np.int64))
            f.create_dataset(f"{name}/edge_index", data=graph.index.astype(np.int32))
            label_key = "labels/edge" if name == "graph" else "labels/edge_ts"
            f.create_dataset(label_key, data=graph.labels.astype(np.float32))
        f.create_dataset("meta/origin", data=np.asarray(content.origin, dtype=np.int32))
        if content.cb_extra is not None:
            f.create_dataset("labels/cb_extra", data=content.cb_extra.astype(np.float32))
            f.create_dataset("labels/extra_times", data=np.asarray(content.extra_times, float))
        f.attrs["complete"] = True  # last: a file without it was interrupted

    write_hdf5(path, fill)


def _check_content(c: DatasetContent, where: str) -> None:
    n_conf, n = c.types.shape
    expect = {
        "thermal/positions": (c.thermal_positions, (n_conf, n, 3)),
        "inherent/positions": (c.inherent_positions, (n_conf, n, 3)),
        "inherent/energy": (c.inherent_energy, (n_conf,)),
        "labels/cb": (c.cb, (n_conf, n)),
        "labels/propensity": (c.propensity, (n_conf, n)),
        "labels/n_bonds": (c.n_bonds, (n_conf, n)),
    }
    for key, (array, shape) in expect.items():
        if array.shape != shape:
            raise DatasetError(f"{where}: {key} has shape {array.shape}, expected {shape}")
        if not np.all(np.isfinite(array)):
            raise DatasetError(f"{where}: {key} contains NaN or infinite values")
    for attr in ("box_length", "temperature", "tau_alpha", "label_time"):
        value = c.attrs.get(attr)
        if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value > 0):
            raise DatasetError(f"{where}: attribute {attr} = {value!r} is not a positive number")
    box = float(c.attrs["box_length"])
    if c.types.size and (c.types.min() < 0 or c.types.max() > 1):
        raise DatasetError(f"{where}: types must be 0 (A) or 1 (B)")
    for key in ("thermal/positions", "inherent/positions"):
        pos = expect[key][0]
        if pos.size and (pos.min() < 0 or pos.max() >= box):
            raise DatasetError(f"{where}: {key} must lie in [0, box_length = {box})")
    for name, graph in zip(GRAPHS, (c.graph, c.graph_ts), strict=True):
        _check_graph(graph, n_conf, n, f"{where}: {name}")
    missing = [
        k
        for k in REQUIRED_ATTRS
        if k not in c.attrs and k not in ("schema_version", "kind", "complete")
    ]
    if missing:
        raise DatasetError(f"{where}: missing attributes {missing}")


def _check_graph(graph: Graph, n_conf: int, n: int, where: str) -> None:
    if graph.offsets.shape != (n_conf + 1,):
        raise DatasetError(
            f"{where}/edge_offsets has shape {graph.offsets.shape}, expected ({n_conf + 1},)"
        )
    if graph.offsets[0] != 0 or np.any(np.diff(graph.offsets) < 0):
        raise DatasetError(f"{where}/edge_offsets must start at 0 and never decrease")
    n_edges = int(graph.offsets[-1])
    if graph.index.shape != (2, n_edges):
        raise DatasetError(
            f"{where}/edge_index has shape {graph.index.shape}, expected (2, {n_edges})"
        )
    if graph.labels.shape != (n_edges,):
        raise DatasetError(
            f"{where}: edge labels have shape {graph.labels.shape}, expected ({n_edges},)"
        )
    if n_edges and (graph.index.min() < 0 or graph.index.max() >= n):
        raise DatasetError(f"{where}/edge_index holds indices outside [0, {n})")
    if n_edges and np.any(graph.index[0] == graph.index[1]):
        raise DatasetError(f"{where}/edge_index contains self-loops")
    if not np.all(np.isfinite(graph.labels)):
        raise DatasetError(f"{where}: edge labels contain NaN or infinite values")


#: Edges checked at once when a file is opened (bounds the memory of validation).
_EDGE_BLOCK = 1 << 22


def _validate_graph_file(f, name: str, label_key: str, n: int, where: str) -> None:
    """The graph invariants of docs/formats.md, read block by block from an open file."""
    offsets_key, index_key = f"{name}/edge_offsets", f"{name}/edge_index"
    offsets = f[offsets_key][...]
    if offsets[0] != 0:
        raise DatasetError(f"{where}: '{offsets_key}' starts at {offsets[0]}, not 0")
    if np.any(np.diff(offsets) < 0):
        c = int(np.argmax(np.diff(offsets) < 0))
        raise DatasetError(
            f"{where}: '{offsets_key}' decreases at configuration {c}; offsets must never decrease"
        )
    for key in (index_key, label_key):
        if key not in f:
            raise DatasetError(f"{where}: dataset '{key}' is missing")
    index, labels = f[index_key], f[label_key]
    if index.ndim != 2 or index.shape[0] != 2:
        raise DatasetError(f"{where}: '{index_key}' has shape {index.shape}, expected (2, E)")
    n_edges = index.shape[1]
    if offsets[-1] != n_edges:
        raise DatasetError(
            f"{where}: '{offsets_key}' ends at {offsets[-1]} but '{index_key}' holds {n_edges} "
            "edges; they must agree"
        )
    if labels.shape != (n_edges,):
        raise DatasetError(
            f"{where}: '{label_key}' has shape {labels.shape}, expected ({n_edges},)"
        )
    if not np.issubdtype(index.dtype, np.integer):
        raise DatasetError(f"{where}: '{index_key}' has dtype {index.dtype}, expected integers")
    if not np.issubdtype(labels.dtype, np.floating):
        raise DatasetError(f"{where}: '{label_key}' has dtype {labels.dtype}, expected floats")
    for lo in range(0, n_edges, _EDGE_BLOCK):
        hi = min(lo + _EDGE_BLOCK, n_edges)
        block = index[:, lo:hi]
        if block.min() < 0 or block.max() >= n:
            raise DatasetError(
                f"{where}: '{index_key}' holds particle indices in [{block.min()}, {block.max()}], "
                f"outside [0, N = {n})"
            )
        if np.any(block[0] == block[1]):
            raise DatasetError(f"{where}: '{index_key}' contains self-loops")
        if not np.all(np.isfinite(labels[lo:hi])):
            raise DatasetError(f"{where}: '{label_key}' contains NaN or infinite values")


class DatasetFile:
    """A validated, lazily read dataset file.

    Opening checks the schema (version, kind, completeness, every required dataset with its
    shape and dtype); :meth:`load` reads everything, :meth:`configuration` one configuration
    (what a training loop needs, without reading the whole file).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"dataset file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: _decode(v) for k, v in f.attrs.items()}
                self._validate(f)
        except DatasetError:
            raise
        except Exception as exc:  # truncated or corrupted HDF5 file
            reason = " ".join(str(exc).split())
            raise DatasetError(
                f"cannot read dataset file {self.path} ({reason}): it is truncated or damaged; "
                "rerun the stage that wrote it"
            ) from exc

    def _validate(self, f) -> None:
        where = str(self.path)
        if self.attrs.get("kind") != KIND:
            raise DatasetError(
                f"{where} is not a tbotan dataset file (kind = {self.attrs.get('kind')!r})"
            )
        version = self.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DatasetError(
                f"{where} has schema_version {version}; this tbotan reads version {SCHEMA_VERSION} "
                "(regenerate the dataset with `tbotan dataset`)"
            )
        if not self.attrs.get("complete", False):
            raise DatasetError(f"{where} is incomplete (its writer was interrupted)")
        missing = [k for k in REQUIRED_ATTRS if k not in self.attrs]
        if missing:
            raise DatasetError(f"{where}: missing attributes {missing}")
        n_conf, n = int(self.attrs["n_configurations"]), int(self.attrs["n_particles"])
        shapes = {
            "types": ((n_conf, n), np.integer),
            "thermal/positions": ((n_conf, n, 3), np.floating),
            "inherent/positions": ((n_conf, n, 3), np.floating),
            "inherent/energy": ((n_conf,), np.floating),
            "labels/cb": ((n_conf, n), np.floating),
            "labels/propensity": ((n_conf, n), np.floating),
            "labels/n_bonds": ((n_conf, n), np.integer),
            "graph/edge_offsets": ((n_conf + 1,), np.integer),
            "graph_ts/edge_offsets": ((n_conf + 1,), np.integer),
        }
        for key, (shape, kind) in shapes.items():
            if key not in f:
                raise DatasetError(f"{where}: dataset '{key}' is missing")
            if f[key].shape != shape:
                raise DatasetError(f"{where}: '{key}' has shape {f[key].shape}, expected {shape}")
            if not np.issubdtype(f[key].dtype, kind):
                raise DatasetError(f"{where}: '{key}' has dtype {f[key].dtype}")
        box = self.attrs.get("box_length")
        if not (isinstance(box, (int, float)) and math.isfinite(box) and box > 0):
            raise DatasetError(f"{where}: attribute box_length = {box!r} is not a positive number")
        for attr in ("temperature", "tau_alpha", "label_time"):
            value = self.attrs.get(attr)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise DatasetError(
                    f"{where}: attribute {attr} = {value!r} is not a positive number"
                )
        types = f["types"][...]
        if types.size and (types.min() < 0 or types.max() > 1):
            raise DatasetError(
                f"{where}: 'types' holds values in [{types.min()}, {types.max()}]; only 0 (A) and "
                "1 (B) are allowed"
            )
        for key in ("thermal/positions", "inherent/positions"):
            pos = f[key][...]
            if not np.all(np.isfinite(pos)):
                raise DatasetError(f"{where}: '{key}' contains NaN or infinite values")
            if pos.size and (pos.min() < 0 or pos.max() >= box):
                raise DatasetError(
                    f"{where}: '{key}' holds values in [{pos.min():g}, {pos.max():g}], outside "
                    f"[0, box_length = {box:g})"
                )
        for key in ("labels/cb", "labels/propensity", "inherent/energy"):
            if not np.all(np.isfinite(f[key][...])):
                raise DatasetError(f"{where}: '{key}' contains NaN or infinite values")
        for name, label_key in (("graph", "labels/edge"), ("graph_ts", "labels/edge_ts")):
            _validate_graph_file(f, name, label_key, n, where)
        if "meta/origin" in f and f["meta/origin"].shape != (n_conf, 2):
            raise DatasetError(
                f"{where}: 'meta/origin' has shape {f['meta/origin'].shape}, expected ({n_conf}, 2)"
            )

    # ---------------------------------------------------------------- access
    @property
    def n_configurations(self) -> int:
        return int(self.attrs["n_configurations"])

    @property
    def n_particles(self) -> int:
        return int(self.attrs["n_particles"])

    @property
    def temperature(self) -> float:
        return float(self.attrs["temperature"])

    @property
    def box_length(self) -> float:
        return float(self.attrs["box_length"])

    def __len__(self) -> int:
        return self.n_configurations

    def configuration(self, c: int, graphs: tuple[str, ...] = GRAPHS) -> dict:
        """One configuration as a dict of NumPy arrays (reads only that slice)."""
        import h5py

        if not 0 <= c < self.n_configurations:
            raise IndexError(f"{self.path} has {self.n_configurations} configurations, not {c + 1}")
        with h5py.File(self.path, "r") as f:
            out = {
                "types": f["types"][c].astype(np.int64),
                "thermal_positions": f["thermal/positions"][c],
                "inherent_positions": f["inherent/positions"][c],
                "inherent_energy": float(f["inherent/energy"][c]),
                "cb": f["labels/cb"][c],
                "propensity": f["labels/propensity"][c],
                "n_bonds": f["labels/n_bonds"][c],
            }
            for name in graphs:
                label_key = "labels/edge" if name == "graph" else "labels/edge_ts"
                lo, hi = (int(v) for v in f[f"{name}/edge_offsets"][c : c + 2])
                out[f"{name}_index"] = f[f"{name}/edge_index"][:, lo:hi].astype(np.int64)
                out[f"{name}_labels"] = f[label_key][lo:hi]
        return out

    def load(self) -> DatasetContent:
        """Everything in the file."""
        import h5py

        with h5py.File(self.path, "r") as f:

            def graph(name, label_key):
                return Graph(
                    offsets=f[f"{name}/edge_offsets"][...],
                    index=f[f"{name}/edge_index"][...],
                    labels=f[label_key][...],
                )

            return DatasetContent(
                attrs=dict(self.attrs),
                types=f["types"][...],
                thermal_positions=f["thermal/positions"][...],
                inherent_positions=f["inherent/positions"][...],
                inherent_energy=f["inherent/energy"][...],
                cb=f["labels/cb"][...],
                propensity=f["labels/propensity"][...],
                n_bonds=f["labels/n_bonds"][...],
                graph=graph("graph", "labels/edge"),
                graph_ts=graph("graph_ts", "labels/edge_ts"),
                origin=f["meta/origin"][...] if "meta/origin" in f else np.zeros((0, 2), np.int32),
                extra_times=f["labels/extra_times"][...] if "labels/extra_times" in f else None,
                cb_extra=f["labels/cb_extra"][...] if "labels/cb_extra" in f else None,
            )


def _decode(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value
