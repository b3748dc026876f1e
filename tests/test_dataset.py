"""Dataset files: round trip, validation of damaged files, and the BOTAN importer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import BOTAN_BOX, BOTAN_REFERENCE, botan_file
from tbotan.checks.benchmark import synthetic_attrs
from tbotan.formats.dataset import DatasetContent, DatasetError, DatasetFile, Graph, write_dataset
from tbotan.labels.botan import BotanImportError, import_botan
from tbotan.physics import kalj, neighbors


def tiny_content(n_conf=3, n=250, seed=0) -> DatasetContent:
    rng = np.random.default_rng(seed)
    L = kalj.box_length(n)
    pos = rng.uniform(0, L, size=(n_conf, n, 3))
    graphs = [neighbors.graph_edges(p, L, 2.0) for p in pos]
    attrs = synthetic_attrs(
        L,
        temperature=0.8,
        tau_alpha=3.42,
        tau_alpha_source="table",
        label_time=3.42,
        n_replicas=4,
        engine={"engine": "torch"},
        config_hash="abc",
        seeds=[1, 2],
    )
    return DatasetContent(
        attrs=attrs,
        types=np.tile(kalj.standard_types(n), (n_conf, 1)),
        thermal_positions=pos,
        inherent_positions=np.mod(pos + 0.01, L),
        inherent_energy=rng.normal(-6.8, 0.01, n_conf),
        cb=rng.uniform(0, 1, (n_conf, n)),
        propensity=rng.uniform(0, 2, (n_conf, n)),
        n_bonds=rng.integers(8, 16, (n_conf, n)),
        graph=Graph.concatenate([(g, rng.normal(size=g.shape[1])) for g in graphs]),
        graph_ts=Graph.concatenate([(g, rng.normal(size=g.shape[1])) for g in graphs]),
        origin=np.zeros((n_conf, 2), int),
    )


def test_round_trip_keeps_every_array_and_attribute(tmp_path):
    content = tiny_content()
    write_dataset(tmp_path / "d.h5", content)
    f = DatasetFile(tmp_path / "d.h5")
    back = f.load()
    assert f.n_configurations == 3 and f.temperature == 0.8
    np.testing.assert_array_equal(back.thermal_positions, content.thermal_positions)
    np.testing.assert_array_equal(back.graph.index, content.graph.index)
    np.testing.assert_array_equal(back.graph.labels, content.graph.labels.astype(np.float32))
    assert back.attrs["seeds"] == [1, 2] and back.attrs["engine"] == {"engine": "torch"}
    one = f.configuration(1)
    idx, labels = content.graph.edges_of(1)
    np.testing.assert_array_equal(one["graph_index"], idx)
    np.testing.assert_array_equal(one["cb"], content.cb[1].astype(np.float32))
    assert not (tmp_path / "d.h5.tmp").exists()


def test_writer_rejects_bad_content(tmp_path):
    content = tiny_content()
    content.cb[0, 5] = np.nan
    with pytest.raises(DatasetError, match="labels/cb contains NaN"):
        write_dataset(tmp_path / "x.h5", content)
    content = tiny_content()
    content.thermal_positions[0, 0, 0] = -0.5
    with pytest.raises(DatasetError, match="must lie in"):
        write_dataset(tmp_path / "x.h5", content)
    content = tiny_content()
    content.graph.index[0, 3] = content.graph.index[1, 3]
    with pytest.raises(DatasetError, match="self-loops"):
        write_dataset(tmp_path / "x.h5", content)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.attrs.__setitem__("schema_version", 99), "schema_version 99"),
        (lambda f: f.attrs.__delitem__("complete"), "missing attributes|incomplete"),
        (lambda f: f.attrs.__setitem__("complete", False), "incomplete"),
        (lambda f: f.__delitem__("labels/propensity"), "'labels/propensity' is missing"),
        (lambda f: f["labels/cb"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda f: f.attrs.__setitem__("kind", "other"), "not a tbotan dataset"),
    ],
)
def test_reader_rejects_damaged_files(tmp_path, damage, message):
    path = tmp_path / "d.h5"
    write_dataset(path, tiny_content())
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(DatasetError, match=message):
        DatasetFile(path)


def test_reader_rejects_truncated_and_missing_files(tmp_path):
    path = tmp_path / "d.h5"
    write_dataset(path, tiny_content())
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(DatasetError, match="cannot read dataset file"):
        DatasetFile(cut)
    with pytest.raises(DatasetError, match="not found"):
        DatasetFile(tmp_path / "none.h5")


def test_importer_on_botan_files_reproduces_reference(botan_dir, cpu_engine, tmp_path):
    paths = [botan_file(botan_dir, k) for k in (2, 4)]
    content = import_botan(paths, box=BOTAN_BOX, temperature=0.44, engine=cpu_engine)
    write_dataset(tmp_path / "botan.h5", content)
    data = DatasetFile(tmp_path / "botan.h5").load()
    assert data.attrs["tau_alpha"] == 4120 and data.attrs["n_replicas"] == 32
    assert data.attrs["source"] == "botan-import"
    for c, k in enumerate((2, 4)):
        ref = BOTAN_REFERENCE[k]
        a = data.types[c] == 0
        assert data.inherent_energy[c] == pytest.approx(ref["e_is"], abs=1e-4)
        assert data.cb[c][a].mean() == pytest.approx(ref["cb_mean"], abs=1e-5)
        assert data.propensity[c][a].mean() == pytest.approx(ref["prop_mean"], abs=1e-5)
        assert data.n_bonds[c][a].mean() == pytest.approx(ref["n0"], abs=1e-3)
        idx, edge = data.graph.edges_of(c)
        assert 38 < idx.shape[1] / 4096 < 44  # about 41 edges per particle
        # the IS graph uses inherent-structure distances
        r = neighbors.pair_distances(data.inherent_positions[c], idx[0], idx[1], BOTAN_BOX)
        assert r.max() < 2.0


def test_importer_rejects_wrong_inputs(tmp_path, cpu_engine, botan_dir):
    bad = tmp_path / "bad.npz"
    np.savez(bad, types=np.zeros(10), initial_positions=np.zeros((10, 3)))
    with pytest.raises(BotanImportError, match="missing arrays"):
        import_botan([bad], box=5.0, temperature=0.44, engine=cpu_engine)
    with pytest.raises(BotanImportError, match="far from KALJ"):
        import_botan([botan_file(botan_dir, 1)], box=20.0, temperature=0.44, engine=cpu_engine)
    with pytest.raises(BotanImportError, match="not a Table I temperature"):
        import_botan([botan_file(botan_dir, 1)], box=BOTAN_BOX, temperature=0.6, engine=cpu_engine)
