"""Dataset files: round trip, validation of damaged files, and the BOTAN importer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import BOTAN_BOX, BOTAN_REFERENCE, botan_file
from tbotan.checks.benchmark import synthetic_attrs
from tbotan.formats.dataset import (
    REQUIRED_ATTRS,
    DatasetContent,
    DatasetError,
    DatasetFile,
    Graph,
    configuration_record,
    dataset_attrs,
    select_configurations,
    write_dataset,
)
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


# ---------------------------------------------------------------------------- shared builders


def extra_content(n_conf=5, seed=1) -> DatasetContent:
    """tiny_content with everything a pipeline file has: origins, extra-time labels and the
    configurations attribute."""
    content = tiny_content(n_conf, seed=seed)
    rng = np.random.default_rng(seed)
    content.origin = np.stack([np.arange(n_conf) // 2, np.arange(n_conf) % 2], axis=1)
    content.cb_extra = rng.uniform(0, 1, (n_conf, 2, content.n_particles))
    content.extra_times = np.array([0.25, 0.5])
    content.attrs.update(configurations=list(range(10, 10 + n_conf)))
    return content


def file_contents(path) -> tuple[dict, dict]:
    """Every dataset (as an array) and every attribute of an HDF5 file."""
    arrays = {}
    with h5py.File(path, "r") as f:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays, attrs


def assert_same_file(a, b):
    (arrays_a, attrs_a), (arrays_b, attrs_b) = file_contents(a), file_contents(b)
    assert attrs_a == attrs_b
    assert sorted(arrays_a) == sorted(arrays_b)
    for key, value in arrays_a.items():
        assert value.dtype == arrays_b[key].dtype, key
        np.testing.assert_array_equal(value, arrays_b[key], err_msg=key)


def records(source, indices):
    return [source.configuration(c, extras=True) for c in indices]


def test_records_rebuild_the_content_they_came_from(tmp_path):
    content = extra_content()
    write_dataset(tmp_path / "whole.h5", content)
    n = content.n_configurations
    rebuilt = DatasetContent.from_configurations(
        content.attrs, records(content, range(n)), content.extra_times
    )
    write_dataset(tmp_path / "rebuilt.h5", rebuilt)
    assert_same_file(tmp_path / "whole.h5", tmp_path / "rebuilt.h5")
    # the records of the file are the records of the content
    f = DatasetFile(tmp_path / "whole.h5")
    from_file = DatasetContent.from_configurations(f.attrs, records(f, range(n)), f.extra_times)
    write_dataset(tmp_path / "from_file.h5", from_file)
    assert_same_file(tmp_path / "whole.h5", tmp_path / "from_file.h5")
    one, back = content.configuration(3, extras=True), f.configuration(3, extras=True)
    assert sorted(one) == sorted(back)
    for key in one:
        np.testing.assert_allclose(one[key], back[key], rtol=1e-7, err_msg=key)


def test_selection_from_memory_and_from_file_agree(tmp_path):
    content = extra_content()
    write_dataset(tmp_path / "whole.h5", content)
    idx = [3, 1, 4]
    memory = select_configurations(content, idx, "validation")
    from_file = select_configurations(DatasetFile(tmp_path / "whole.h5"), idx, "validation")
    write_dataset(tmp_path / "memory.h5", memory)
    write_dataset(tmp_path / "file.h5", from_file)
    assert_same_file(tmp_path / "memory.h5", tmp_path / "file.h5")
    back = DatasetFile(tmp_path / "file.h5").load()
    assert back.attrs["split"] == "validation" and back.attrs["configurations"] == [13, 11, 14]
    np.testing.assert_array_equal(back.thermal_positions, content.thermal_positions[idx])
    np.testing.assert_array_equal(back.origin, content.origin[idx])
    np.testing.assert_array_equal(back.cb_extra, content.cb_extra[idx].astype(np.float32))
    np.testing.assert_array_equal(back.extra_times, content.extra_times)
    for k, c in enumerate(idx):
        for name in ("graph", "graph_ts"):
            got, want = getattr(back, name).edges_of(k), getattr(content, name).edges_of(c)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1].astype(np.float32))
    # without a split, the split and every other attribute stay
    assert select_configurations(content, [0]).attrs["split"] == content.attrs["split"]


def test_selections_joined_give_back_the_whole(tmp_path):
    content = extra_content()
    parts = [select_configurations(content, [0, 1]), select_configurations(content, [2, 3, 4])]
    joined = DatasetContent.from_configurations(
        content.attrs,
        [r for part in parts for r in records(part, range(part.n_configurations))],
        content.extra_times,
    )
    write_dataset(tmp_path / "whole.h5", content)
    write_dataset(tmp_path / "joined.h5", joined)
    assert_same_file(tmp_path / "whole.h5", tmp_path / "joined.h5")


def test_builder_refuses_incomplete_records():
    content = extra_content(3)
    with pytest.raises(ValueError, match="at least one configuration"):
        DatasetContent.from_configurations(content.attrs, [])
    with pytest.raises(ValueError, match="no extra_times"):
        DatasetContent.from_configurations(content.attrs, records(content, range(3)))
    # cb_extra is kept only when every configuration has it
    mixed = records(content, range(3))
    mixed[1]["cb_extra"] = None
    built = DatasetContent.from_configurations(content.attrs, mixed, content.extra_times)
    assert built.cb_extra is None and built.extra_times is None
    record = configuration_record(
        types=content.types[0],
        thermal_positions=content.thermal_positions[0],
        inherent_positions=content.inherent_positions[0],
        inherent_energy=-6.5,
        cb=content.cb[0],
        propensity=content.propensity[0],
        n_bonds=content.n_bonds[0],
        graph=content.graph.edges_of(0),
        graph_ts=content.graph_ts.edges_of(0),
        origin=(4, 1),
    )
    assert sorted(record) == sorted(content.configuration(0, extras=True))
    one = DatasetContent.from_configurations(content.attrs, [record])
    assert one.origin.tolist() == [[4, 1]] and one.inherent_energy.tolist() == [-6.5]


def test_dataset_attrs_are_the_schema_attributes():
    common = dict(
        temperature=np.float64(0.5),
        tau_alpha=217,
        tau_alpha_source="table",
        label_time=217,
        n_replicas=np.int64(32),
        box_length=15.05658,
        bond_in=1.3,
        bond_out=1.6,
        graph_cutoff=2,
        engine={"engine": "torch"},
        config_hash="abc",
        seeds=[np.int64(1), 2],
        split="chunk",
        source="pipeline",
    )
    attrs = dataset_attrs(**common, chunk=3)
    written = {"schema_version", "kind", "complete"}  # set by write_dataset
    assert set(attrs) == (set(REQUIRED_ATTRS) - written) | {"git_commit", "chunk"}
    assert type(attrs["temperature"]) is float and type(attrs["n_replicas"]) is int
    assert attrs["seeds"] == [1, 2] and all(type(s) is int for s in attrs["seeds"])
    assert attrs["package_versions"] and attrs["chunk"] == 3
    bare = dataset_attrs(**common, provenance=False)
    assert "git_commit" not in bare and bare["package_versions"] == {}
    # the benchmarks' synthetic attributes are the same builder's
    assert set(synthetic_attrs(5.0)) == set(bare)


def test_importer_builds_its_content_from_labelled_records(tmp_path, cpu_engine, liquid_256):
    """Small BOTAN-style inputs: file c is system c, sample 0; the attributes are the
    schema's; every array comes from configuration_labels of that file."""
    from tbotan.labels.replicas import configuration_labels

    paths, rng = [], np.random.default_rng(5)
    L = float(liquid_256.box[0, 0])
    for c in range(2):
        initial = np.mod(liquid_256.positions[0] + rng.normal(0, 0.01 * c, (256, 3)), L)
        final = initial[None] + rng.normal(0, 0.3, (3, 256, 3))
        paths.append(tmp_path / f"in{c}.npz")
        np.savez(paths[-1], types=liquid_256.types[0], initial_positions=initial, positions=final)
    content = import_botan(paths, box=L, temperature=0.8, engine=cpu_engine, split="train")
    assert content.origin.tolist() == [[0, 0], [1, 0]]
    assert content.attrs["n_replicas"] == 3 and content.attrs["source"] == "botan-import"
    assert set(content.attrs) == set(REQUIRED_ATTRS) - {"schema_version", "kind", "complete"} | {
        "git_commit",
        "inputs",
    }
    with np.load(paths[1]) as data:
        lab = configuration_labels(
            data["initial_positions"],
            data["positions"],
            content.inherent_positions[1],
            data["types"],
            L,
            content.attrs["bond_in"],
            content.attrs["bond_out"],
            content.attrs["graph_cutoff"],
        )
    np.testing.assert_array_equal(content.cb[1], lab.cb)
    np.testing.assert_array_equal(content.graph.edges_of(1)[0], lab.graph_is)
    np.testing.assert_array_equal(content.graph_ts.edges_of(1)[1], lab.edge_ts.astype(np.float32))
    write_dataset(tmp_path / "small.h5", content)
    assert DatasetFile(tmp_path / "small.h5").n_configurations == 2
