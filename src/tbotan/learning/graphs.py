"""Graphs of configurations for T-BOTAN (docs/physics.md §6) and a lazy dataset over many files.

One configuration becomes one PyTorch Geometric :class:`~torch_geometric.data.Data`:

========================  ==================  ==================================================
attribute                 shape, dtype        meaning
========================  ==================  ==================================================
``x``                     (N, 2) float32      node input: one-hot species (A, B)
``edge_index``            (2, E) int64        directed edges (source j, target k)
``edge_attr``             (E, F) float32      edge input (variant below)
``y``                     (N,) float32        node target: C_B or the propensity (below)
``y_edge``                (E,) float32        edge target ⟨r_jk(t)⟩_iso − r_jk(0)
``temperature``           (1,) float32        global target T (never an input)
``a_mask``                (N,) bool           type-A particles
``corr_positions``        (N_A, 3) float32    thermal positions of A particles (for L_Corr)
``box``                   (3,) float32        box edges (σ_AA)
========================  ==================  ==================================================

plus ``source`` (file name) and ``configuration`` (index in the file) for messages.

Node targets (``model.node_target``, :data:`tbotan.config.NODE_TARGETS`): ``cb``, the
bond-breaking correlation C_B (dataset ``labels/cb``, the paper's target), or ``propensity``,
⟨|r_j(t) − r_j(0)|⟩_iso in σ_AA (``labels/propensity``, the target of BOTAN and GlassBench).
Whichever is chosen is ``y``; every loss, metric and prediction reads it from there.

Input variants (``model.variant``):

* ``is+ts`` (default, the paper): edges of the inherent-structure (IS) graph (r_jk < cut-off in
  the IS, both directions, no self-loops); features ``[r_k − r_j (IS, minimum image, 3),
  |r_k − r_j| (thermal structure, 1)]``, F = 4; edge targets ``labels/edge``.
* ``is``: IS graph, features ``r_k − r_j`` in the IS only (F = 3; the IS distance is not added,
  so ``is`` and ``ts`` differ only in which structure they see); targets ``labels/edge``.
* ``ts``: thermal-structure graph, features ``r_k − r_j`` in the thermal structure (F = 3, as in
  BOTAN); targets ``labels/edge_ts``.

No input tensor depends on the temperature: it enters only as the target ``temperature``.
Dataset files already store both graphs (built by :func:`tbotan.physics.neighbors.graph_edges`, the
project's one freud-based edge builder); :func:`graph_from_positions` builds them with the same
function for configurations that come without a dataset file.

Training-time augmentation (ours, as Bapst et al. and BOTAN): :func:`octahedral_augment` applies
one random element of the octahedral group (axis permutation and reflections) to every relative
vector of a sample; distances are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tbotan.config import NODE_TARGETS, VARIANT_GRAPH, VARIANTS
from tbotan.errors import ConfigError
from tbotan.formats.dataset import DatasetFile
from tbotan.physics import kalj

#: Number of edge features per variant.
EDGE_FEATURES = {"is+ts": 4, "is": 3, "ts": 3}

#: Number of node features (one-hot species A, B).
NODE_FEATURES = len(kalj.TYPE_NAMES)


def check_variant(variant: str) -> str:
    """``variant`` if it is one of :data:`VARIANTS`, else a ValueError naming the choices."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown input variant {variant!r}; choose one of {VARIANTS}")
    return variant


def check_node_target(node_target: str) -> str:
    """``node_target`` if it is one of :data:`NODE_TARGETS`, else a ValueError naming them."""
    if node_target not in NODE_TARGETS:
        raise ConfigError(f"unknown node target {node_target!r}; choose one of {NODE_TARGETS}")
    return node_target


def graph_name(variant: str) -> str:
    """The dataset graph a variant uses: ``'graph'`` (IS) or ``'graph_ts'`` (thermal)."""
    return VARIANT_GRAPH[check_variant(variant)]


def relative_vectors(positions: np.ndarray, edge_index: np.ndarray, box) -> np.ndarray:
    """(E, 3) float64 minimum-image vectors ``r_k − r_j`` of edges (j, k) = edge_index."""
    positions = np.asarray(positions, dtype=np.float64)
    src, dst = edge_index
    return kalj.minimum_image(positions[dst] - positions[src], np.asarray(box, np.float64))


def edge_features(
    variant: str,
    edge_index: np.ndarray,
    thermal_positions: np.ndarray,
    inherent_positions: np.ndarray | None,
    box,
) -> np.ndarray:
    """(E, F) float32 edge features of a variant (see the module documentation).

    Args:
        variant: ``'is+ts'``, ``'is'`` or ``'ts'``.
        edge_index: (2, E) edges of the variant's graph.
        thermal_positions: (N, 3) thermal configuration (σ_AA).
        inherent_positions: (N, 3) inherent structure; unused (may be None) for ``'ts'``.
        box: cubic edge or (3,) edges.
    """
    check_variant(variant)
    if variant == "ts":
        return relative_vectors(thermal_positions, edge_index, box).astype(np.float32)
    if inherent_positions is None:
        raise ValueError(f"variant {variant!r} needs the inherent structure")
    vec_is = relative_vectors(inherent_positions, edge_index, box)
    if variant == "is":
        return vec_is.astype(np.float32)
    vec_ts = relative_vectors(thermal_positions, edge_index, box)
    dist_ts = np.sqrt(np.einsum("ed,ed->e", vec_ts, vec_ts))
    return np.concatenate([vec_is, dist_ts[:, None]], axis=1).astype(np.float32)


def one_hot_species(types: np.ndarray) -> torch.Tensor:
    """(N, 2) float32 one-hot species (column 0 = A, 1 = B)."""
    types = torch.as_tensor(np.asarray(types, dtype=np.int64))
    return torch.nn.functional.one_hot(types, NODE_FEATURES).to(torch.float32)


def make_graph(
    *,
    variant: str,
    types: np.ndarray,
    thermal_positions: np.ndarray,
    inherent_positions: np.ndarray | None,
    box,
    edge_index: np.ndarray,
    node_labels: np.ndarray | None = None,
    edge_labels: np.ndarray | None = None,
    temperature: float | None = None,
    source: str = "",
    configuration: int = 0,
):
    """One configuration as a PyG ``Data`` (attributes in the module documentation).

    ``node_labels`` (N,) are the node target ``y`` (C_B or the propensity, whichever the model
    learns).  Targets that are not given (``node_labels``, ``edge_labels``, ``temperature``)
    are filled with NaN, as for a user configuration at inference time.
    """
    from torch_geometric.data import Data

    types = np.asarray(types, dtype=np.int64)
    n = types.shape[0]
    box3 = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    edge_index = np.asarray(edge_index, dtype=np.int64)
    features = edge_features(variant, edge_index, thermal_positions, inherent_positions, box3)
    n_edges = edge_index.shape[1]
    a_mask = types == kalj.TYPE_A
    thermal = np.asarray(thermal_positions, dtype=np.float64)
    return Data(
        x=one_hot_species(types),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=torch.from_numpy(features),
        y=torch.from_numpy(
            np.full(n, np.nan, np.float32)
            if node_labels is None
            else np.asarray(node_labels, np.float32)
        ),
        y_edge=torch.from_numpy(
            np.full(n_edges, np.nan, np.float32)
            if edge_labels is None
            else np.asarray(edge_labels, np.float32)
        ),
        temperature=torch.tensor(
            [np.nan if temperature is None else temperature], dtype=torch.float32
        ),
        a_mask=torch.from_numpy(a_mask),
        corr_positions=torch.from_numpy(thermal[a_mask].astype(np.float32)),
        box=torch.from_numpy(box3.astype(np.float32)),
        source=source,
        configuration=int(configuration),
        num_nodes=n,
    )


def graph_from_dataset(dataset: DatasetFile, c: int, variant: str, node_target: str = "cb"):
    """Configuration ``c`` of a dataset file as a ``Data`` of ``variant`` (reads only it), its
    ``y`` the labels of ``node_target`` (``'cb'`` or ``'propensity'``)."""
    check_node_target(node_target)
    name = graph_name(variant)
    conf = dataset.configuration(c, graphs=(name,))
    return make_graph(
        variant=variant,
        types=conf["types"],
        thermal_positions=conf["thermal_positions"],
        inherent_positions=conf["inherent_positions"],
        box=dataset.box_length,
        edge_index=conf[f"{name}_index"],
        node_labels=conf[node_target],
        edge_labels=conf[f"{name}_labels"],
        temperature=dataset.temperature,
        source=dataset.path.name,
        configuration=c,
    )


def graph_from_positions(
    *,
    variant: str,
    types: np.ndarray,
    thermal_positions: np.ndarray,
    inherent_positions: np.ndarray | None,
    box,
    cutoff: float,
    source: str = "",
):
    """A ``Data`` for a configuration without a dataset file (no targets).

    The edges are built with :func:`tbotan.physics.neighbors.graph_edges` (cut-off ``cutoff``) in
    the inherent structure (``is+ts``, ``is``) or the thermal structure (``ts``), exactly as the
    data stage builds the graphs stored in dataset files.
    """
    from tbotan.physics.neighbors import graph_edges

    check_variant(variant)
    if variant != "ts" and inherent_positions is None:
        raise ValueError(f"variant {variant!r} needs the inherent structure")
    graph_positions = thermal_positions if variant == "ts" else inherent_positions
    edges = graph_edges(graph_positions, box, cutoff)
    return make_graph(
        variant=variant,
        types=types,
        thermal_positions=thermal_positions,
        inherent_positions=inherent_positions,
        box=box,
        edge_index=edges,
        source=source,
    )


# ---------------------------------------------------------------------------- augmentation


def octahedral_operation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random element of the octahedral group: (axis permutation (3,), signs (3,)).

    The operation maps a vector v to ``signs * v[permutation]``; all 48 elements are equally
    likely.
    """
    permutation = rng.permutation(3)
    signs = 1.0 - 2.0 * rng.integers(0, 2, size=3)
    return permutation, signs


def octahedral_matrix(permutation: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(3, 3) matrix M with ``M @ v == signs * v[permutation]``."""
    m = np.zeros((3, 3))
    m[np.arange(3), permutation] = signs
    return m


def octahedral_augment(data, permutation: np.ndarray, signs: np.ndarray):
    """A copy of ``data`` whose relative vectors (edge features 0–2) are transformed.

    ``v → signs * v[permutation]``; the thermal distance of ``is+ts`` (feature 3) and every
    other attribute are unchanged.  For a cubic box this equals building the graph from the
    configuration rotated/reflected by :func:`octahedral_matrix`.
    """
    out = data.clone()
    attr = out.edge_attr
    perm = torch.as_tensor(np.asarray(permutation), dtype=torch.long, device=attr.device)
    sign = torch.as_tensor(np.asarray(signs), dtype=attr.dtype, device=attr.device)
    vectors = attr[:, :3].index_select(1, perm) * sign
    out.edge_attr = torch.cat([vectors, attr[:, 3:]], dim=1)
    return out


# ---------------------------------------------------------------------------- dataset


class GraphDataset(torch.utils.data.Dataset):
    """Every configuration of several dataset files (any mix of temperatures), read lazily.

    Item ``i`` is configuration ``index[i] = (file f, configuration c)`` as a ``Data`` of the
    chosen variant; only that configuration is read from disk, so the dataset never holds more
    than one graph in memory (a training keeps the graphs it built in its
    :class:`~tbotan.learning.feeder.GraphFeeder`).

    Args:
        paths: dataset files (docs/formats.md); each is validated on opening.
        variant: ``'is+ts'``, ``'is'`` or ``'ts'``.
        node_target: the labels ``y`` of every graph, ``'cb'`` or ``'propensity'``.
    """

    def __init__(
        self, paths: Sequence[str | os.PathLike], variant: str, node_target: str = "cb"
    ) -> None:
        if not paths:
            raise ValueError("GraphDataset needs at least one dataset file")
        self.variant = check_variant(variant)
        self.node_target = check_node_target(node_target)
        self.files = [DatasetFile(p) for p in paths]
        self.index: list[tuple[int, int]] = [
            (f_i, c) for f_i, f in enumerate(self.files) for c in range(f.n_configurations)
        ]

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]

    def __len__(self) -> int:
        return len(self.index)

    def temperature(self, i: int) -> float:
        """Temperature of item ``i`` (from its file's attributes)."""
        return self.files[self.index[i][0]].temperature

    def temperatures(self) -> list[float]:
        """Distinct temperatures of the files, ascending."""
        return sorted({f.temperature for f in self.files})

    def locate(self, i: int) -> tuple[Path, int]:
        """(file, configuration index) of item ``i``."""
        f_i, c = self.index[i]
        return self.files[f_i].path, c

    def __getitem__(self, i: int):
        f_i, c = self.index[i]
        return graph_from_dataset(self.files[f_i], c, self.variant, self.node_target)
