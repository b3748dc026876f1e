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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tbotan.errors import FileFormatError

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

#: The per-configuration arrays: DatasetContent field -> (HDF5 dataset, dtype stored).
ARRAYS = {
    "types": ("types", np.int8),
    "thermal_positions": ("thermal/positions", np.float64),
    "inherent_positions": ("inherent/positions", np.float64),
    "inherent_energy": ("inherent/energy", np.float64),
    "cb": ("labels/cb", np.float32),
    "propensity": ("labels/propensity", np.float32),
    "n_bonds": ("labels/n_bonds", np.int16),
}

#: The HDF5 dataset of each graph's edge labels.
EDGE_LABELS = {"graph": "labels/edge", "graph_ts": "labels/edge_ts"}

#: The ``units`` attribute of every dataset (σ_AA, ε_AA and τα: the Lennard-Jones units of the
#: A–A interaction and the structural relaxation time).
UNITS = {
    "types": "species (0 = A, 1 = B)",
    "thermal/positions": "sigma_AA",
    "inherent/positions": "sigma_AA",
    "inherent/energy": "epsilon_AA per particle",
    "labels/cb": "dimensionless (fraction of bonds kept)",
    "labels/propensity": "sigma_AA",
    "labels/n_bonds": "count",
    "graph/edge_offsets": "edge index",
    "graph/edge_index": "particle index",
    "labels/edge": "sigma_AA",
    "graph_ts/edge_offsets": "edge index",
    "graph_ts/edge_index": "particle index",
    "labels/edge_ts": "sigma_AA",
    "meta/origin": "index (system, sample)",
    "labels/cb_extra": "dimensionless (fraction of bonds kept)",
    "labels/extra_times": "tau_alpha",
}


class DatasetError(FileFormatError):
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


def configuration_record(
    *,
    types: np.ndarray,
    thermal_positions: np.ndarray,
    inherent_positions: np.ndarray,
    inherent_energy: float,
    cb: np.ndarray,
    propensity: np.ndarray,
    n_bonds: np.ndarray,
    graph: tuple[np.ndarray, np.ndarray],
    graph_ts: tuple[np.ndarray, np.ndarray],
    origin: tuple[int, int],
    cb_extra: np.ndarray | None = None,
) -> dict:
    """One configuration as :meth:`DatasetContent.from_configurations` takes it.

    The keys are those of :meth:`DatasetFile.configuration` with ``extras=True``: the arrays
    of :data:`ARRAYS` ((N,), (N, 3) or a number), ``graph_index``/``graph_labels`` and
    ``graph_ts_index``/``graph_ts_labels`` from ``graph`` and ``graph_ts`` ((2, E) edges,
    (E,) edge labels), ``origin`` (system, sample) and ``cb_extra`` ((T_x, N) or None).
    """
    return {
        "types": types,
        "thermal_positions": thermal_positions,
        "inherent_positions": inherent_positions,
        "inherent_energy": inherent_energy,
        "cb": cb,
        "propensity": propensity,
        "n_bonds": n_bonds,
        "graph_index": graph[0],
        "graph_labels": graph[1],
        "graph_ts_index": graph_ts[0],
        "graph_ts_labels": graph_ts[1],
        "origin": origin,
        "cb_extra": cb_extra,
    }


def dataset_attrs(
    *,
    temperature: float,
    tau_alpha: float,
    tau_alpha_source: str,
    label_time: float,
    n_replicas: int,
    box_length: float,
    bond_in: float,
    bond_out: float,
    graph_cutoff: float,
    engine: dict,
    config_hash: str,
    seeds: Iterable[int],
    split: str,
    source: str,
    provenance: bool = True,
    **extra,
) -> dict:
    """The attributes of a dataset file (:data:`REQUIRED_ATTRS` but those
    :func:`write_dataset` sets), with the types the schema wants, and ``extra`` keys beside.

    ``provenance``: also the package versions and the git commit of this checkout
    (``git_commit``); False for synthetic data (empty versions, no commit).
    """
    attrs = dict(
        temperature=float(temperature),
        tau_alpha=float(tau_alpha),
        tau_alpha_source=tau_alpha_source,
        label_time=float(label_time),
        n_replicas=int(n_replicas),
        box_length=float(box_length),
        bond_in=float(bond_in),
        bond_out=float(bond_out),
        graph_cutoff=float(graph_cutoff),
        engine=engine,
        package_versions=package_versions() if provenance else {},
        config_hash=config_hash,
        seeds=[int(s) for s in seeds],
        split=split,
        source=source,
        **extra,
    )
    if provenance:
        attrs["git_commit"] = git_commit() or ""
    return attrs


@dataclass
class DatasetContent:
    """Everything a dataset file holds (see the module documentation for shapes).

    Built from per-configuration records by :meth:`from_configurations` (the pipeline's
    chunks and splits, the BOTAN importer, the synthetic data of the benchmarks), cut by
    :func:`select_configurations`, read from a file by :meth:`DatasetFile.load`.
    """

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

    @classmethod
    def from_configurations(
        cls,
        attrs: Mapping,
        configurations: Iterable[Mapping],
        extra_times: np.ndarray | None = None,
    ) -> DatasetContent:
        """A content from per-configuration records (:func:`configuration_record`), in order.

        ``cb_extra`` is kept when every record has it (then ``extra_times``, the label times
        in units of τα, is required), else dropped with ``extra_times``.
        """
        records = list(configurations)
        if not records:
            raise ValueError("a dataset holds at least one configuration; none were given")

        def stack(key):
            return np.stack([np.asarray(r[key]) for r in records])

        extras = [r.get("cb_extra") for r in records]
        cb_extra = None if any(e is None for e in extras) else np.stack(extras)
        if cb_extra is not None and extra_times is None:
            raise ValueError("the configurations carry cb_extra, but no extra_times were given")
        return cls(
            attrs=dict(attrs),
            **{name: stack(name) for name in ARRAYS},
            graph=Graph.concatenate([(r["graph_index"], r["graph_labels"]) for r in records]),
            graph_ts=Graph.concatenate(
                [(r["graph_ts_index"], r["graph_ts_labels"]) for r in records]
            ),
            origin=stack("origin"),
            extra_times=None if cb_extra is None else extra_times,
            cb_extra=cb_extra,
        )

    def configuration(self, c: int, graphs: tuple[str, ...] = GRAPHS, extras: bool = False):
        """Configuration ``c`` as a record, like :meth:`DatasetFile.configuration`."""
        out = {name: getattr(self, name)[c] for name in ARRAYS}
        out["inherent_energy"] = float(out["inherent_energy"])
        for name in graphs:
            out[f"{name}_index"], out[f"{name}_labels"] = getattr(self, name).edges_of(c)
        if extras:
            out["origin"] = self.origin[c] if len(self.origin) else np.zeros(2, np.int32)
            out["cb_extra"] = None if self.cb_extra is None else self.cb_extra[c]
        return out


def select_configurations(
    source: DatasetContent | DatasetFile, indices: Iterable[int], split: str | None = None
) -> DatasetContent:
    """Configurations ``indices`` of a content or of a dataset file, in that order.

    Every array, both graphs, the origins and the extra-time labels follow; so does the
    ``configurations`` attribute of pipeline files (their indices in the equilibrium file);
    ``split`` renames the split.  A file is read one configuration at a time.
    """
    idx = [int(i) for i in indices]
    attrs = dict(source.attrs)
    if split is not None:
        attrs["split"] = split
    if isinstance(attrs.get("configurations"), list):
        attrs["configurations"] = [attrs["configurations"][i] for i in idx]
    return DatasetContent.from_configurations(
        attrs, (source.configuration(i, extras=True) for i in idx), source.extra_times
    )


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
        for name, (key, dtype) in ARRAYS.items():
            f.create_dataset(key, data=getattr(content, name).astype(dtype))
        for name in GRAPHS:
            graph = getattr(content, name)
            f.create_dataset(f"{name}/edge_offsets", data=graph.offsets.astype(np.int64))
            f.create_dataset(f"{name}/edge_index", data=graph.index.astype(np.int32))
            f.create_dataset(EDGE_LABELS[name], data=graph.labels.astype(np.float32))
        f.create_dataset("meta/origin", data=np.asarray(content.origin, dtype=np.int32))
        if content.cb_extra is not None:
            f.create_dataset("labels/cb_extra", data=content.cb_extra.astype(np.float32))
            f.create_dataset("labels/extra_times", data=np.asarray(content.extra_times, float))
        f.attrs["complete"] = True  # last: a file without it was interrupted

    write_hdf5(path, fill, units=UNITS.__getitem__)


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
        for name, label_key in EDGE_LABELS.items():
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

    @property
    def extra_times(self) -> np.ndarray | None:
        """Label times of ``labels/cb_extra`` in units of τα (None: the file has none)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            return f["labels/extra_times"][...] if "labels/extra_times" in f else None

    def edge_offsets(self, graph: str = "graph") -> np.ndarray:
        """(C+1,) int64 offsets of ``graph`` (``graph`` or ``graph_ts``): the edges of
        configuration c are ``[offsets[c], offsets[c+1])`` of its concatenated edge arrays."""
        import h5py

        if graph not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
        with h5py.File(self.path, "r") as f:
            return f[f"{graph}/edge_offsets"][...].astype(np.int64)

    def configuration(self, c: int, graphs: tuple[str, ...] = GRAPHS, extras: bool = False) -> dict:
        """One configuration as a dict of NumPy arrays (reads only that slice).

        Keys: the fields of :data:`ARRAYS` (types as int64, the energy as a float), and
        ``{name}_index`` (int64) and ``{name}_labels`` of each graph in ``graphs``; with
        ``extras`` also ``origin`` and ``cb_extra`` (None when the file has none): then it is
        a whole record (:func:`configuration_record`).
        """
        import h5py

        if not 0 <= c < self.n_configurations:
            raise IndexError(f"{self.path} has {self.n_configurations} configurations, not {c + 1}")
        with h5py.File(self.path, "r") as f:
            out = {name: f[key][c] for name, (key, _) in ARRAYS.items()}
            out["types"] = out["types"].astype(np.int64)
            out["inherent_energy"] = float(out["inherent_energy"])
            for name in graphs:
                lo, hi = (int(v) for v in f[f"{name}/edge_offsets"][c : c + 2])
                out[f"{name}_index"] = f[f"{name}/edge_index"][:, lo:hi].astype(np.int64)
                out[f"{name}_labels"] = f[EDGE_LABELS[name]][lo:hi]
            if extras:
                origin = f["meta/origin"][c] if "meta/origin" in f else np.zeros(2, np.int32)
                out["origin"] = origin
                out["cb_extra"] = f["labels/cb_extra"][c] if "labels/cb_extra" in f else None
        return out

    def load(self) -> DatasetContent:
        """Everything in the file."""
        import h5py

        with h5py.File(self.path, "r") as f:

            def graph(name):
                return Graph(
                    offsets=f[f"{name}/edge_offsets"][...],
                    index=f[f"{name}/edge_index"][...],
                    labels=f[EDGE_LABELS[name]][...],
                )

            return DatasetContent(
                attrs=dict(self.attrs),
                **{name: f[key][...] for name, (key, _) in ARRAYS.items()},
                graph=graph("graph"),
                graph_ts=graph("graph_ts"),
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
