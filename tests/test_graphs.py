"""Graphs and inputs of T-BOTAN (docs/physics.md §6): edges, features, variants, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learning_helpers import synthetic_content, write_synthetic
from tbotan.formats.dataset import DatasetFile, write_dataset
from tbotan.learning.graphs import (
    EDGE_FEATURES,
    GraphDataset,
    graph_from_dataset,
    graph_from_positions,
    octahedral_augment,
    octahedral_matrix,
    octahedral_operation,
)
from tbotan.physics import kalj

INPUTS = ("x", "edge_index", "edge_attr", "a_mask", "corr_positions", "box")


@pytest.fixture(scope="module")
def two_temperatures(tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    return (
        write_synthetic(d / "T0.50.h5", seeds=(0, 1), temperature=0.5),
        write_synthetic(d / "T0.80.h5", seeds=(2, 3, 4), temperature=0.8),
    )


def brute_force_edges(positions, box, cutoff):
    delta = positions[None, :, :] - positions[:, None, :]
    delta -= box * np.round(delta / box)
    r = np.sqrt((delta**2).sum(-1))
    j, k = np.nonzero((r < cutoff) & ~np.eye(len(positions), dtype=bool))
    return np.stack([j, k])


def test_is_graph_edges_are_pairs_within_the_cutoff_in_the_inherent_structure(two_temperatures):
    f = DatasetFile(two_temperatures[0])
    data = graph_from_dataset(f, 1, "is+ts")
    conf = f.configuration(1)
    expected = brute_force_edges(conf["inherent_positions"], f.box_length, 2.0)
    np.testing.assert_array_equal(data.edge_index.numpy(), expected)  # both directions, sorted
    assert not torch.any(data.edge_index[0] == data.edge_index[1])
    ts = graph_from_dataset(f, 1, "ts")
    expected_ts = brute_force_edges(conf["thermal_positions"], f.box_length, 2.0)
    np.testing.assert_array_equal(ts.edge_index.numpy(), expected_ts)
    assert 30 < data.edge_index.shape[1] / data.num_nodes < 50  # ≈ 40 neighbours at ρ = 1.2


def test_edge_features_of_each_variant(two_temperatures):
    f = DatasetFile(two_temperatures[1])
    conf = f.configuration(2)
    L = f.box_length
    for variant, structure, graph in (
        ("is+ts", "inherent_positions", "graph"),
        ("is", "inherent_positions", "graph"),
        ("ts", "thermal_positions", "graph_ts"),
    ):
        data = graph_from_dataset(f, 2, variant)
        j, k = conf[f"{graph}_index"]
        vec = kalj.minimum_image(conf[structure][k] - conf[structure][j], L)
        assert data.edge_attr.shape == (len(j), EDGE_FEATURES[variant])
        assert data.edge_attr.dtype == torch.float32
        np.testing.assert_allclose(data.edge_attr[:, :3].numpy(), vec, atol=1e-6)
        np.testing.assert_array_equal(data.y_edge.numpy(), conf[f"{graph}_labels"])
        if variant == "is+ts":
            d_ts = kalj.minimum_image(
                conf["thermal_positions"][k] - conf["thermal_positions"][j], L
            )
            np.testing.assert_allclose(
                data.edge_attr[:, 3].numpy(), np.linalg.norm(d_ts, axis=1), atol=1e-6
            )


def test_nodes_targets_and_correlation_inputs(two_temperatures):
    f = DatasetFile(two_temperatures[1])
    conf = f.configuration(0)
    data = graph_from_dataset(f, 0, "is+ts")
    types = conf["types"]
    np.testing.assert_array_equal(data.x.numpy(), np.eye(2, dtype=np.float32)[types])
    np.testing.assert_array_equal(data.y.numpy(), conf["cb"])
    assert data.temperature.item() == pytest.approx(0.8)
    np.testing.assert_array_equal(data.a_mask.numpy(), types == 0)
    np.testing.assert_allclose(
        data.corr_positions.numpy(), conf["thermal_positions"][types == 0], rtol=1e-6
    )
    assert data.source == "T0.80.h5" and data.configuration == 0


def test_no_input_depends_on_the_temperature(tmp_path):
    """The same configuration stored at two temperatures gives identical input tensors."""
    for T in (0.44, 0.80):
        write_dataset(tmp_path / f"T{T}.h5", synthetic_content(250, (7,), T))
    for variant in ("is+ts", "is", "ts"):
        cold = graph_from_dataset(DatasetFile(tmp_path / "T0.44.h5"), 0, variant)
        hot = graph_from_dataset(DatasetFile(tmp_path / "T0.8.h5"), 0, variant)
        for name in INPUTS:
            assert torch.equal(getattr(cold, name), getattr(hot, name)), (variant, name)
        assert cold.temperature.item() != hot.temperature.item()  # only the target differs


def test_augmentation_equals_rotating_the_configuration(two_temperatures):
    f = DatasetFile(two_temperatures[0])
    conf = f.configuration(0)
    L = f.box_length
    rng = np.random.default_rng(11)
    for _ in range(4):
        perm, signs = octahedral_operation(rng)
        m = octahedral_matrix(perm, signs)
        for variant in ("is+ts", "is", "ts"):
            data = graph_from_positions(
                variant=variant,
                types=conf["types"],
                thermal_positions=conf["thermal_positions"],
                inherent_positions=conf["inherent_positions"],
                box=L,
                cutoff=2.0,
            )
            rotated = graph_from_positions(
                variant=variant,
                types=conf["types"],
                thermal_positions=np.mod(conf["thermal_positions"] @ m.T, L),
                inherent_positions=np.mod(conf["inherent_positions"] @ m.T, L),
                box=L,
                cutoff=2.0,
            )
            augmented = octahedral_augment(data, perm, signs)
            assert torch.equal(augmented.edge_index, rotated.edge_index)
            torch.testing.assert_close(augmented.edge_attr, rotated.edge_attr, rtol=0, atol=1e-5)
            assert torch.equal(data.x, augmented.x)  # the original is untouched
            assert not torch.equal(data.edge_attr, augmented.edge_attr) or np.all(perm == [0, 1, 2])


def test_octahedral_operations_cover_the_group():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        perm, signs = octahedral_operation(rng)
        m = octahedral_matrix(perm, signs)
        assert np.allclose(m @ m.T, np.eye(3))
        seen.add(tuple(m.ravel()))
    assert len(seen) == 48


def test_graph_of_a_user_configuration_equals_the_dataset_graph(two_temperatures):
    f = DatasetFile(two_temperatures[1])
    conf = f.configuration(1)
    for variant in ("is+ts", "ts"):
        stored = graph_from_dataset(f, 1, variant)
        built = graph_from_positions(
            variant=variant,
            types=conf["types"],
            thermal_positions=conf["thermal_positions"],
            inherent_positions=conf["inherent_positions"],
            box=f.box_length,
            cutoff=2.0,
        )
        for name in INPUTS:
            assert torch.equal(getattr(stored, name), getattr(built, name)), (variant, name)
        assert torch.all(torch.isnan(built.y)) and torch.isnan(built.temperature).all()


def test_dataset_spans_files_and_temperatures_lazily(two_temperatures, monkeypatch):
    ds = GraphDataset(two_temperatures, "is+ts")
    assert len(ds) == 5 and ds.temperatures() == [0.5, 0.8]
    assert [ds.temperature(i) for i in range(5)] == [0.5, 0.5, 0.8, 0.8, 0.8]
    assert ds.locate(3) == (DatasetFile(two_temperatures[1]).path, 1)
    reads = []
    original = DatasetFile.configuration

    def counting(self, c, graphs=("graph", "graph_ts")):
        reads.append((self.path.name, c, graphs))
        return original(self, c, graphs)

    monkeypatch.setattr(DatasetFile, "configuration", counting)
    data = ds[3]
    assert reads == [("T0.80.h5", 1, ("graph",))]  # one configuration, one graph read
    assert data.temperature.item() == pytest.approx(0.8)
    ds[3]
    assert len(reads) == 2  # not kept in memory (a training's GraphFeeder caches)


def test_unknown_variant_is_rejected(two_temperatures):
    with pytest.raises(ValueError, match="unknown input variant 'IS'"):
        GraphDataset(two_temperatures, "IS")
