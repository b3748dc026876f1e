"""Observables of the analysis stage against direct computations and hand-computed values."""

from __future__ import annotations

import itertools
import json
import math

import h5py
import numpy as np
import pytest

from learning_helpers import prediction_attrs
from synthetic_run import make_synthetic_run
from tbotan.analysis import runs
from tbotan.analysis import summary as run_summary
from tbotan.analysis.metrics import (
    edge_pearson,
    embedding_distance_matrices_per_seed,
    embedding_distance_matrix,
    node_pearson,
    pearson,
    ratio_distribution,
    seed_statistics,
)
from tbotan.analysis.runs import ModelId
from tbotan.analysis.structure_factor import (
    bin_wavevectors,
    four_point_structure_factor,
    reciprocal_lattice,
)
from tbotan.formats import model_file
from tbotan.formats.dataset import DatasetError, DatasetFile
from tbotan.formats.predictions import PredictionsError, read_predictions, write_predictions

# ------------------------------------------------------------------------------------ S_B(q)


def direct_sb(positions, field, types, L, q_max, bin_width):
    """S_B(q) by the definition: a Python loop over the *full* reciprocal lattice (both ±q)."""
    sel = types == 0
    r = positions[sel]
    delta = field[sel] - field[sel].mean()
    n_max = int(q_max * L / (2 * np.pi)) + 1
    sums: dict[int, list[float]] = {}
    qs: dict[int, list[float]] = {}
    for n in itertools.product(range(-n_max, n_max + 1), repeat=3):
        if n == (0, 0, 0):
            continue
        q = 2 * np.pi / L * np.array(n, dtype=float)
        qn = float(np.linalg.norm(q))
        if qn > q_max:
            continue
        w = np.sum(delta * np.exp(1j * (r @ q)))
        k = int(np.floor(qn / bin_width))
        sums.setdefault(k, []).append(abs(w) ** 2 / sel.sum())
        qs.setdefault(k, []).append(qn)
    keys = sorted(sums)
    return (
        np.array([np.mean(qs[k]) for k in keys]),
        np.array([np.mean(sums[k]) for k in keys]),
        np.array([len(sums[k]) for k in keys]),
    )


def test_sb_matches_a_direct_sum_over_the_full_reciprocal_lattice():
    rng = np.random.default_rng(1)
    L, n, n_conf, q_max, width = 4.7, 60, 2, 4.5, 0.4
    positions = rng.uniform(0, L, (n_conf, n, 3))
    types = (rng.random((n_conf, n)) < 0.25).astype(np.int8)
    field = rng.random((n_conf, n)) + np.sin(positions[..., 0])  # spatially correlated part
    sb = four_point_structure_factor(positions, field, types, L, q_max, width)
    assert sb.per_configuration.shape == (n_conf, sb.q.size)
    for c in range(n_conf):
        q, s, counts = direct_sb(positions[c], field[c], types[c], L, q_max, width)
        np.testing.assert_allclose(sb.q, q, rtol=1e-12)
        np.testing.assert_allclose(sb.per_configuration[c], s, rtol=1e-10)
        np.testing.assert_array_equal(2 * sb.counts, counts)  # half lattice: one of each ±q
    np.testing.assert_allclose(sb.mean, sb.per_configuration.mean(axis=0))


def test_sb_of_several_fields_equals_each_field_alone():
    rng = np.random.default_rng(2)
    L, n = 5.0, 80
    positions = rng.uniform(0, L, (3, n, 3))
    types = np.zeros((3, n), np.int8)
    fields = rng.random((4, 3, n))
    together = four_point_structure_factor(positions, fields, types, L, 5.0, 0.25)
    assert together.per_configuration.shape[:2] == (4, 3)
    for f in range(4):
        alone = four_point_structure_factor(positions, fields[f], types, L, 5.0, 0.25)
        np.testing.assert_allclose(together.per_configuration[f], alone.per_configuration)


def test_sb_of_spatially_uncorrelated_labels_is_their_variance_at_every_q():
    rng = np.random.default_rng(3)
    L, n, n_conf = 9.0, 900, 6
    positions = rng.uniform(0, L, (n_conf, n, 3))
    types = np.zeros((n_conf, n), np.int8)
    labels = rng.random((n_conf, n))  # independent of position and of each other
    sb = four_point_structure_factor(positions, labels, types, L, 6.0, 0.5)
    variance = labels.var(axis=1).mean() * (1 - 1 / n)  # E|W|²/N with the mean subtracted
    # |W(q)|²/N is exponentially distributed around the variance: relative error of a bin
    # mean is 1/sqrt(samples); allow 5 of those
    tolerance = 5 / np.sqrt(sb.counts * n_conf)
    assert np.all(np.abs(sb.mean / variance - 1) < tolerance)
    pooled = np.sum(sb.mean * sb.counts) / sb.counts.sum()
    assert pooled == pytest.approx(variance, rel=0.03)


def test_q_binning_covers_the_reciprocal_lattice_exactly_once():
    L, q_max, width = 7.3, 5.0, 0.3
    n_half, q_half = reciprocal_lattice(L, q_max)
    unit = 2 * np.pi / L
    full = [
        n
        for n in itertools.product(range(-10, 11), repeat=3)
        if n != (0, 0, 0) and unit * math.sqrt(sum(x * x for x in n)) <= q_max
    ]
    half = {tuple(v) for v in n_half}
    assert len(half) == len(n_half)  # no vector twice
    assert len(full) == 2 * len(n_half)  # with its mirror, every lattice vector once
    for n in full:  # each vector or its mirror (never both) is in the half lattice
        mirror = tuple(-x for x in n)
        assert (n in half) != (mirror in half)
    bins = bin_wavevectors(q_half, width)
    assert bins.counts.sum() == len(n_half)
    assert bins.index.shape == (len(n_half),)
    lower, upper = bins.edges[bins.index, 0], bins.edges[bins.index, 1]
    assert np.all((lower <= q_half) & (q_half < upper))
    assert np.all(np.diff(bins.edges[:, 0]) > 0)  # disjoint bins, ascending
    np.testing.assert_allclose(
        bins.centres, [q_half[bins.index == k].mean() for k in range(bins.counts.size)]
    )


def test_reciprocal_lattice_includes_a_shell_at_exactly_q_max():
    n, q = reciprocal_lattice(2 * np.pi, 2.0)  # unit 1: |n| = 2 lies exactly on q_max
    assert {(2, 0, 0), (0, 2, 0), (0, 0, 2)} <= {tuple(v) for v in n}
    assert q.max() == pytest.approx(2.0)


# ------------------------------------------------------------------------------------ Pearson


def test_pearson_matches_a_hand_computed_value():
    # δx = (-1.5, -0.5, 0.5, 1.5), δy = (-3, -1, 0, 4): Σδxδy = 11, Σδx² = 5, Σδy² = 26
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert np.isnan(pearson([1, 2, 3], [5, 5, 5]))


def test_node_pearson_uses_only_a_particles_of_each_configuration():
    x = np.array([[1, 2, 3, 4, 100, -7], [1, 2, 3, 0, 0, 0]], float)
    y = np.array([[2, 4, 5, 9, -50, 3], [3, 2, 1, 0, 0, 0]], float)
    types = np.array([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]])
    rho = node_pearson(x, y, types)
    np.testing.assert_allclose(rho, [11 / math.sqrt(130), -1.0])


def test_edge_pearson_is_per_configuration_segment():
    pred = np.array([1, 2, 3, 4, 1, 2, 3, 5, 5])
    target = np.array([2, 4, 5, 9, 3, 2, 1, 1, 2])
    rho = edge_pearson(pred, target, np.array([0, 4, 7, 9]))
    np.testing.assert_allclose(rho[:2], [11 / math.sqrt(130), -1.0])
    assert np.isnan(rho[2])  # constant prediction: no correlation defined


def test_seed_statistics_matches_hand_computed_values():
    s = seed_statistics({1: np.array([0.6, 1.0]), 0: np.array([0.5, 0.7])})
    assert s.seeds == [0, 1]
    np.testing.assert_allclose(s.per_seed_mean, [0.6, 0.8])
    np.testing.assert_allclose(s.per_seed_std, [0.1, 0.2])
    assert s.mean == pytest.approx(0.7)
    assert s.std_seeds == pytest.approx(0.1)
    assert s.std_configurations == pytest.approx(math.sqrt((0.01 + 0.04) / 2))
    with pytest.raises(ValueError):
        seed_statistics({0: np.ones(2), 1: np.ones(3)})


# ------------------------------------------------------------------------------------ T_pred, D


def test_ratio_distribution_is_normalised_as_eq_b1():
    centres, density, edges = ratio_distribution(np.array([0.96, 1.01, 1.01, 1.03]), 0.05)
    np.testing.assert_allclose(edges, [0.95, 1.0, 1.05])
    np.testing.assert_allclose(density, [5.0, 15.0])  # counts / (4 samples × 0.05)
    np.testing.assert_allclose(centres, [0.975, 1.025])
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)


def test_embedding_distances_match_hand_computed_values():
    t1 = np.array([[[0, 0], [2, 0]], [[1, 1], [1, 3]]], float)  # seed means (1,0), (1,2)
    t2 = np.array([[[4, 0], [4, 0]], [[1, 6], [1, 6]]], float)  # seed means (4,0), (1,6)
    d = embedding_distance_matrix([t1, t2])  # ⟨u⟩ = (1,1) and (2.5,3): distance 2.5
    np.testing.assert_allclose(d, [[0, 2.5], [2.5, 0]])
    per_seed = embedding_distance_matrices_per_seed([t1, t2])
    np.testing.assert_allclose(per_seed[:, 0, 1], [3.0, 4.0])
    np.testing.assert_allclose(per_seed, per_seed.transpose(0, 2, 1))


# ------------------------------------------------------------------------------------ files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def run(run_dir):
    return runs.analyse_run(run_dir, runs.load_run_config(run_dir / "config.yaml"))


def _arrays(c=3, n=5, e=7, h=4):
    return dict(cb=np.ones((c, n)), edge=np.zeros(e), t_pred=np.ones(c), embedding=np.ones((c, h)))


def test_predictions_round_trip(tmp_path):
    path = tmp_path / "p.h5"
    arrays = _arrays()
    write_predictions(path, **arrays, attrs=prediction_attrs())
    pred = read_predictions(path)
    assert pred.attrs["complete"] and pred.attrs["model"] == "is+ts_lg0.01_s0"
    assert pred.cb.shape == (3, 5) and pred.cb.dtype == np.float32
    assert pred.temperature == 0.44 and pred.edge_graph == "graph"
    assert not list(tmp_path.glob("*.tmp"))


def test_write_predictions_rejects_missing_attributes_and_bad_shapes(tmp_path):
    with pytest.raises(PredictionsError, match="seed"):
        write_predictions(tmp_path / "a.h5", **_arrays(), attrs=prediction_attrs(seed=None))
    bad = _arrays()
    bad["t_pred"] = np.ones(4)
    with pytest.raises(PredictionsError, match="t_pred"):
        write_predictions(tmp_path / "b.h5", **bad, attrs=prediction_attrs())
    bad = _arrays()
    bad["cb"][0, 0] = np.nan
    with pytest.raises(PredictionsError, match="NaN"):
        write_predictions(tmp_path / "c.h5", **bad, attrs=prediction_attrs())


def test_read_predictions_rejects_damaged_files(tmp_path):
    path = tmp_path / "p.h5"
    write_predictions(path, **_arrays(), attrs=prediction_attrs())
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(PredictionsError, match="incomplete"):
        read_predictions(path)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = True
        f.attrs["schema_version"] = 2
    with pytest.raises(PredictionsError, match="schema_version"):
        read_predictions(path)
    path.write_bytes(b"not an HDF5 file")
    with pytest.raises(PredictionsError, match="cannot read"):
        read_predictions(path)
    with pytest.raises(PredictionsError, match="not found"):
        read_predictions(tmp_path / "missing.h5")


def test_read_predictions_checks_shapes_against_the_dataset(run_dir, tmp_path):
    dataset = DatasetFile(run_dir / "datasets" / "T0.44_test.h5")
    with h5py.File(dataset.path) as f:
        n_edges = int(f["graph/edge_offsets"][-1])
    c, n = dataset.n_configurations, dataset.n_particles
    path = tmp_path / "p.h5"
    write_predictions(path, **_arrays(c, n, n_edges), attrs=prediction_attrs())
    assert read_predictions(path, dataset).edge.shape == (n_edges,)
    write_predictions(path, **_arrays(c, n, n_edges), attrs=prediction_attrs(edge_graph="graph_ts"))
    with pytest.raises(PredictionsError, match="graph_ts"):
        read_predictions(path, dataset)
    write_predictions(path, **_arrays(c, n - 1, n_edges), attrs=prediction_attrs())
    with pytest.raises(PredictionsError, match="'cb' has shape"):
        read_predictions(path, dataset)
    write_predictions(path, **_arrays(c, n, n_edges), attrs=prediction_attrs(temperature=0.5))
    with pytest.raises(PredictionsError, match="temperature"):
        read_predictions(path, dataset)


def test_model_ids_parse_and_format():
    m = ModelId.parse("is+ts_lg0.01_s3")
    assert (m.variant, m.lambda_global, m.seed) == ("is+ts", 0.01, 3)
    assert m.name == "is+ts_lg0.01_s3" and m.group.name == "is+ts_lg0.01"
    assert ModelId.parse("ts_lg1e-05_s0").lambda_global == 1e-5
    with pytest.raises(ValueError, match="model id"):
        ModelId.parse("gnn_s0")


# ------------------------------------------------------------------------------------ a run


def test_analyse_run_reads_every_temperature_and_model(run):
    assert [t.label for t in run.temperatures] == ["0.44", "0.50", "0.64"]
    assert [t.trained for t in run.temperatures] == [True, False, True]
    assert run.main_group.name == "is+ts_lg0.01"
    assert [g.name for g in run.groups()] == ["is+ts_lg0.01", "is+ts_lg0.1", "is_lg0.01"]
    assert [m.seed for m in run.seeds(run.main_group)] == [0, 1]
    assert not run.notes
    node = run.pearson(run.main_group, "0.44", "node")
    assert node.seeds == [0, 1] and 0.3 < node.mean < 1.0
    assert 0.3 < run.pearson(run.main_group, "0.44", "edge").mean < 1.0


def test_run_observables_agree_with_the_building_blocks(run, run_dir):
    content = DatasetFile(run_dir / "datasets" / "T0.50_test.h5").load()
    pred = read_predictions(run_dir / "predictions" / "is+ts_lg0.01_s1" / "T0.50_test.h5")
    result = run.results[("is+ts_lg0.01_s1", "0.50")]
    np.testing.assert_allclose(
        result.pearson_node, node_pearson(pred.cb, content.cb, content.types)
    )
    np.testing.assert_allclose(
        result.pearson_edge, edge_pearson(pred.edge, content.graph.labels, content.graph.offsets)
    )
    a = run.config["analysis"]
    L = content.attrs["box_length"]
    md = four_point_structure_factor(
        content.thermal_positions, content.cb, content.types, L, a["sb_q_max"], a["sb_bin_width"]
    )
    t = run.temperature("0.50")
    np.testing.assert_allclose(t.sb.per_configuration, md.per_configuration)
    np.testing.assert_allclose(
        result.sb,
        four_point_structure_factor(
            content.thermal_positions, pred.cb, content.types, L, a["sb_q_max"], a["sb_bin_width"]
        ).per_configuration,
    )
    # the ts ablation would use the thermal graph; the IS variant uses the IS graph
    assert pred.edge_graph == "graph"


def test_slab_is_scaled_to_the_box(run):
    a = run.config["analysis"]
    for t in run.temperatures:
        scale = t.box_length / a["slab_reference_box_length"]
        assert t.slab == pytest.approx((a["slab"][0] * scale, a["slab"][1] * scale))
        assert len(t.slab_xy) == len(t.slab_cb) == len(t.slab_types) > 0
        assert np.all((t.slab_xy >= 0) & (t.slab_xy < t.box_length))


def test_embedding_distances_of_the_run(run):
    d = run.embedding_distances(run.main_group)
    assert d["labels"] == ["0.44", "0.50", "0.64"] and d["seeds"] == [0, 1]
    assert d["D"].shape == (3, 3) and d["per_seed"].shape == (2, 3, 3)
    np.testing.assert_allclose(np.diag(d["D"]), 0)
    np.testing.assert_allclose(d["D"], d["D"].T)
    # T = 0.50 is predicted near 0.47 (pulled towards 0.44): closer to 0.44 than to 0.64
    assert d["D"][1, 0] < d["D"][1, 2]


def test_summary_is_strict_json_with_the_headline_numbers(run):
    summary = run_summary.summarise(run)
    text = json.dumps(summary, allow_nan=False)
    back = json.loads(text)
    main = back["groups"]["is+ts_lg0.01"]["per_temperature"]
    assert set(main) == {"0.44", "0.50", "0.64"}
    assert main["0.44"]["t_pred"]["mean"] == pytest.approx(run.t_pred(run.main_group, "0.44").mean)
    assert back["embedding_distance"]["is+ts_lg0.01"]["D"][0][0] == 0.0
    dist = back["t_pred_distribution"]["is+ts_lg0.01"]["0.50"]
    assert np.sum(np.array(dist["density"]) * np.diff(dist["edges"])) == pytest.approx(1.0)
    md = run_summary.summary_markdown(back)
    assert "| 0.50* | no |" in md and "Embedding distances" in md


def test_the_seed_ensemble_is_the_mean_of_its_seeds_predictions(run, run_dir):
    """The ensemble's ρ, T_pred and S_B(q) are those of the seeds' mean prediction, computed
    here independently from the predictions files; the summary carries per-seed and ensemble
    values and the worst configuration beside the ridge baseline on it."""
    content = DatasetFile(run_dir / "datasets" / "T0.50_test.h5").load()
    preds = [
        read_predictions(run_dir / "predictions" / f"is+ts_lg0.01_s{s}" / "T0.50_test.h5")
        for s in (0, 1)
    ]
    mean_cb = (preds[0].cb.astype(np.float64) + preds[1].cb) / 2
    ens = run.ensemble(run.main_group, "0.50")
    np.testing.assert_allclose(
        ens.pearson_node, node_pearson(mean_cb, content.cb, content.types), rtol=1e-5
    )
    np.testing.assert_allclose(ens.t_pred, (preds[0].t_pred + preds[1].t_pred) / 2, rtol=1e-6)
    np.testing.assert_allclose(
        ens.t_pred_std, np.abs(preds[0].t_pred - preds[1].t_pred) / 2, rtol=1e-5
    )
    a = run.config["analysis"]
    sb = four_point_structure_factor(
        content.thermal_positions,
        mean_cb,
        content.types,
        content.attrs["box_length"],
        a["sb_q_max"],
        a["sb_bin_width"],
    )
    np.testing.assert_allclose(ens.sb, sb.per_configuration, rtol=1e-5)
    summary = json.loads(json.dumps(run_summary.summarise(run), allow_nan=False))
    entry = summary["groups"]["is+ts_lg0.01"]["per_temperature"]["0.50"]
    assert set(entry["pearson_node"]["per_seed"]) == {"0", "1"}
    e = entry["ensemble"]
    assert e["pearson_node"]["mean"] == pytest.approx(ens.pearson_node.mean())
    worst = int(np.argmin(ens.pearson_node))
    assert e["worst_configuration"]["index"] == worst
    ridge = summary["baselines"]["cb"]["per_temperature"]["0.50"]["per_configuration"]
    assert e["worst_configuration"]["baseline_pearson_node"] == pytest.approx(ridge[worst])
    dist = summary["t_pred_distribution"]["is+ts_lg0.01"]["0.50"]["per_seed"]
    assert set(dist) == {"0", "1"}
    assert "Seed ensemble of seeds [0, 1]" in run_summary.summary_markdown(summary)


def test_missing_temperature_is_noted_and_no_dataset_is_an_error(tmp_path):
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS_MAIN_ONLY)
    (run_dir / "datasets" / "T0.64_test.h5").unlink()
    config = runs.load_run_config(run_dir / "config.yaml")
    run = runs.analyse_run(run_dir, config)
    assert [t.label for t in run.temperatures] == ["0.44", "0.50"]
    assert any("0.64" in note for note in run.notes)
    for path in (run_dir / "datasets").glob("*_test.h5"):
        path.unlink()
    with pytest.raises(DatasetError, match="no test dataset"):
        runs.analyse_run(run_dir, config)


def test_predictions_in_the_wrong_folder_are_an_error(tmp_path):
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS_MAIN_ONLY)
    src = run_dir / "predictions" / "is+ts_lg0.01_s0"
    src.rename(run_dir / "predictions" / "is+ts_lg0.01_s7")
    config = runs.load_run_config(run_dir / "config.yaml")
    with pytest.raises(PredictionsError, match="do not match its folder"):
        runs.analyse_run(run_dir, config)


def test_read_metrics_sorts_by_epoch_and_rejects_text(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\n2,0.5\n1,0.7\n")
    m = model_file.read_metrics(path)
    np.testing.assert_array_equal(m["epoch"], [1, 2])
    np.testing.assert_array_equal(m["loss"], [0.7, 0.5])
    path.write_text("epoch,loss\n1,abc\n")
    with pytest.raises(ValueError, match="'loss'"):
        model_file.read_metrics(path)


MODELS_MAIN_ONLY = (("is+ts", 0.01, 0, 0.6),)
