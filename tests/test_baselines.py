"""Structural baselines (tbotan.learning.baselines) against independent references, and in the
summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthetic_run import MODELS, make_dataset, make_synthetic_run, random_packing, synthetic_config
from tbotan.analysis import figures, runs
from tbotan.analysis import summary as run_summary
from tbotan.analysis.metrics import node_pearson
from tbotan.cli import main
from tbotan.formats.dataset import write_dataset
from tbotan.learning import baselines
from tbotan.physics import kalj

N = 320  # L = 6.43 at ρ = 1.2: every radius up to 3.0 is below L/2


@pytest.fixture(scope="module")
def configuration():
    """(thermal, inherent, types, L) of one random N-particle configuration."""
    rng = np.random.default_rng(3)
    L = kalj.box_length(N)
    thermal = random_packing(N, L, rng, min_distance=0.8)
    inherent = np.mod(thermal + rng.normal(0, 0.04, thermal.shape), L)
    types = rng.permutation(kalj.standard_types(N)).astype(np.int64)
    return thermal, inherent, types, L


# ------------------------------------------------------------------------------ descriptors


def test_particle_energies_are_kalj_per_particle_energies(configuration):
    thermal, inherent, types, L = configuration
    for positions in (thermal, inherent):
        reference = kalj.evaluate(positions, types, L)
        e = baselines.particle_energies(positions, types, L)
        assert e.sum() == pytest.approx(reference.total_potential_energy, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(e, reference.per_particle_energy, rtol=1e-10, atol=1e-12)
    d = baselines.particle_descriptors(thermal, inherent, types, L)
    names = baselines.descriptor_names()
    assert d.features.shape == (N, len(names)) and names[0] == "e_IS"
    # column 0 is the IS energy, summing to N e_IS/N; the thermal U/N comes from the TS
    assert d.features[:, 0].sum() == pytest.approx(
        kalj.evaluate(inherent, types, L).total_potential_energy, rel=1e-10
    )
    assert d.thermal_energy == pytest.approx(
        kalj.evaluate(thermal, types, L).total_potential_energy / N, rel=1e-10
    )
    np.testing.assert_array_equal(d.features[:, -1], types == 1)


def brute_force_coordination(positions, types, L, radii):
    """(N, R, 2) by the definition: every pair, float64 minimum image, O(N²)."""
    delta = positions[:, None, :] - positions[None, :, :]
    delta -= L * np.round(delta / L)
    r = np.sqrt((delta**2).sum(axis=-1))
    np.fill_diagonal(r, np.inf)
    out = np.zeros((len(positions), len(radii), 2))
    for k, rc in enumerate(radii):
        for s in (0, 1):
            out[:, k, s] = ((r < rc) & (types[None, :] == s)).sum(axis=1)
    return out


def test_coordination_numbers_match_a_brute_force_count(configuration):
    thermal, inherent, types, L = configuration
    for positions in (thermal, inherent):
        counts = baselines.coordination_numbers(positions, types, L, baselines.RADII)
        np.testing.assert_array_equal(
            counts, brute_force_coordination(positions, types, L, baselines.RADII)
        )
    d = baselines.particle_descriptors(thermal, inherent, types, L)
    n_r = len(baselines.RADII)
    is_counts = d.features[:, 1 : 1 + 2 * n_r].reshape(N, n_r, 2)
    ts_counts = d.features[:, 1 + 2 * n_r : 1 + 4 * n_r].reshape(N, n_r, 2)
    np.testing.assert_array_equal(
        is_counts, brute_force_coordination(inherent, types, L, baselines.RADII)
    )
    np.testing.assert_array_equal(
        ts_counts, brute_force_coordination(thermal, types, L, baselines.RADII)
    )
    assert baselines.usable_radii(baselines.RADII, 5.9) == (1.0, 1.2, 1.4, 1.6, 2.0, 2.5)


# ------------------------------------------------------------------------------ ridge


def test_ridge_is_the_closed_form_solution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)) * [1.0, 5.0, 0.1] + [0.0, 2.0, -1.0]
    x[:, 2] += 0.5 * x[:, 0]
    y = 1.0 + x @ [0.5, -0.2, 3.0] + 0.1 * rng.normal(size=20)
    n = len(y)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    lams = (1e-3, 1.0, 100.0)
    for lam, model in zip(lams, baselines.fit_ridge(x, y, lams), strict=True):
        # augmented least squares: min |Zβ − (y − ȳ)|² + nλ|β|²
        a = np.vstack([z, np.sqrt(n * lam) * np.eye(3)])
        b = np.concatenate([y - y.mean(), np.zeros(3)])
        reference = np.linalg.lstsq(a, b, rcond=None)[0]
        np.testing.assert_allclose(model.coef, reference, rtol=1e-10, atol=1e-12)
        assert model.intercept == pytest.approx(y.mean())
        np.testing.assert_allclose(model.predict(x), y.mean() + z @ reference, rtol=1e-10)
    # streaming moments over batches equal one pass
    moments = baselines.Moments()
    for part in np.array_split(np.arange(n), 4):
        moments.add(x[part], y[part])
    streamed = baselines.ridge_from_moments(moments, (1.0,))[0]
    np.testing.assert_allclose(streamed.coef, baselines.fit_ridge(x, y, (1.0,))[0].coef)
    np.testing.assert_allclose(streamed.mean, x.mean(axis=0))
    np.testing.assert_allclose(streamed.scale, x.std(axis=0))


def test_select_penalty_takes_the_best_finite_score():
    assert baselines.select_penalty({0.1: 0.2, 1.0: 0.5, 10.0: np.nan}) == 1.0
    assert baselines.select_penalty({0.1: 0.5, 1.0: 0.5}) == 1.0
    with pytest.raises(ValueError, match="finite"):
        baselines.select_penalty({1.0: np.nan})


# ------------------------------------------------------------------------------ T from energy


def test_temperature_fit_recovers_t_where_the_energy_is_linear_or_quadratic_in_t():
    temperatures = np.repeat([0.44, 0.50, 0.64, 0.80], 5)
    u = -7.2 + 1.3 * temperatures  # U/N linear in T: T is linear in U/N
    coef = baselines.fit_temperature(u, temperatures)
    assert coef.size == 3 and abs(coef[2]) < 1e-8
    np.testing.assert_allclose(baselines.predict_temperature(coef, u), temperatures, atol=1e-10)
    u_new = -7.2 + 1.3 * np.array([0.47, 0.7])  # between the training temperatures
    np.testing.assert_allclose(baselines.predict_temperature(coef, u_new), [0.47, 0.7], atol=1e-10)
    t_of_u = 0.3 + 0.2 * (u + 7) + 0.5 * (u + 7) ** 2  # an exact quadratic
    np.testing.assert_allclose(
        baselines.predict_temperature(baselines.fit_temperature(u, t_of_u), u), t_of_u, atol=1e-10
    )
    # two training temperatures: a line; one: their mean
    two = baselines.fit_temperature(u[:10], temperatures[:10])
    assert two.size == 2
    np.testing.assert_allclose(baselines.predict_temperature(two, u[:10]), temperatures[:10])
    assert baselines.fit_temperature(u[:5], temperatures[:5]).tolist() == [pytest.approx(0.44)]
    stats = baselines.temperature_statistics(np.array([0.4, 0.6]), 0.5)
    assert stats == pytest.approx(
        {"mean": 0.5, "std_configurations": 0.1, "rmse": 0.1, "n_configurations": 2}
    )


# ------------------------------------------------------------------------------ dataset files


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return synthetic_config(tmp_path_factory.mktemp("baselines"), N, 2, 4)


def write_file(path, config, T, split, n_conf, seed, cb=None, energy=None):
    """A synthetic dataset file; ``cb(content)`` and ``energy(T, C)`` replace C_B and e_IS/N."""
    content = make_dataset(config, T, 1.0, split, n_conf, np.random.default_rng(seed))
    if cb is not None:
        content.cb = cb(content).astype(np.float32)
    if energy is not None:
        content.inherent_energy = energy(T, n_conf)
    write_dataset(path, content)
    return path


def is_energy_field(content):
    """C_B = an exact linear function of the per-particle IS energy (kalj's own evaluator)."""
    L = content.attrs["box_length"]
    e = np.stack(
        [
            kalj.evaluate(p, t, L).per_particle_energy
            for p, t in zip(content.inherent_positions, content.types, strict=True)
        ]
    )
    return 0.4 + 0.01 * e


def test_exact_linear_cb_and_linear_energy_are_recovered(config, tmp_path):
    def energy(T, c):
        return -7.0 + 0.9 * T + np.zeros(c)

    train = [
        write_file(tmp_path / f"T{T}_train.h5", config, T, "train", 2, k, is_energy_field, energy)
        for k, T in enumerate((0.44, 0.64))
    ]
    val = [write_file(tmp_path / "v.h5", config, 0.44, "validation", 1, 5, is_energy_field, energy)]
    tests = {
        label: write_file(
            tmp_path / f"t{label}.h5", config, T, "test", 2, 9, is_energy_field, energy
        )
        for label, T in (("0.44", 0.44), ("0.50", 0.50))
    }
    result = baselines.structural_baselines(train, val, tests)
    json.dumps(result, allow_nan=False)
    for label in tests:
        assert result["cb"]["per_temperature"][label]["mean"] > 0.999
        assert result["cb"]["per_temperature"][label]["n_configurations"] == 2
        t_fit = result["t_pred"]["inherent_energy"]["per_temperature"][label]
        assert t_fit["mean"] == pytest.approx(float(label), abs=1e-9)
        assert t_fit["rmse"] < 1e-9
    assert result["t_pred"]["inherent_energy"]["degree"] == 1  # two training temperatures
    assert result["cb"]["fit_temperatures"] == ["0.44", "0.64"]
    assert result["cb"]["n_fit_configurations"] == 4
    assert result["cb"]["n_fit_particles"] == 4 * N
    assert len(result["cb"]["coefficients"]) == len(baselines.descriptor_names())


def test_penalty_is_chosen_on_the_validation_split_never_the_test_split(config, tmp_path):
    """The validation C_B is what the most penalised model predicts, the test C_B what the
    least penalised one predicts: choosing on the test split would give the other penalty."""
    penalties = baselines.PENALTIES
    radii = baselines.RADII
    train = [
        write_file(tmp_path / f"T{T}_train.h5", config, T, "train", 2, k)
        for k, T in enumerate((0.44, 0.64))
    ]
    moments = baselines.Moments()
    for p in train:
        baselines.scan_file(p, radii, lambda x, y, _t: moments.add(x, y))
    models = baselines.ridge_from_moments(moments, penalties)

    def predicted_by(model):
        def cb(content):
            L = content.attrs["box_length"]
            out = []
            for th, inh, t in zip(
                content.thermal_positions, content.inherent_positions, content.types, strict=True
            ):
                pred = model.predict(baselines.particle_descriptors(th, inh, t, L, radii).features)
                out.append(0.5 + 0.1 * (pred - pred.mean()) / pred.std())
            return np.stack(out)

        return cb

    largest, smallest = models[-1], models[0]
    val = write_file(tmp_path / "val.h5", config, 0.44, "validation", 2, 7, predicted_by(largest))
    test = write_file(tmp_path / "test.h5", config, 0.44, "test", 2, 8, predicted_by(smallest))

    def scores(path):
        rho = []
        baselines.scan_file(path, radii, baselines.pearson_collector(models, rho))
        return np.mean(np.stack(rho, axis=1), axis=1)

    val_scores, test_scores = scores(val), scores(test)
    assert np.argmax(val_scores) == len(penalties) - 1 and np.argmax(test_scores) == 0

    result = baselines.structural_baselines(train, [val], {"0.44": test}, radii, penalties)
    assert result["cb"]["penalty"] == largest.penalty != smallest.penalty
    assert result["cb"]["validation_score"]["1000"] == pytest.approx(val_scores[-1])
    rho = result["cb"]["per_temperature"]["0.44"]["mean"]
    assert rho == pytest.approx(test_scores[-1]) and rho < test_scores[0]


def test_node_pearson_of_the_baseline_is_the_networks_measure(configuration):
    """The collector evaluates ρ exactly as analysis.node_pearson does (A particles only)."""
    thermal, inherent, types, L = configuration
    d = baselines.particle_descriptors(thermal, inherent, types, L)
    rng = np.random.default_rng(1)
    y = rng.normal(size=N)
    model = baselines.fit_ridge(d.features, y, (1.0,))[0]
    rho = []
    baselines.pearson_collector([model], rho)(d.features, y, types)
    expected = node_pearson(model.predict(d.features)[None], y[None], types[None])
    np.testing.assert_allclose(rho[0], expected)


# ------------------------------------------------------------------------------ a run


def test_summary_of_a_synthetic_run_carries_the_baselines(tmp_path, monkeypatch):
    subset = {k: figures.FIGURES[k] for k in ("fig04_t_pred", "fig07_pearson")}
    monkeypatch.setattr(figures, "FIGURES", subset)
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS[:1])
    assert main(["figures", "--run-dir", str(run_dir)]) == 0
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    b = summary["baselines"]
    assert b["cb"]["fit_split"] == "train" and b["cb"]["validation_split"] == "validation"
    assert b["cb"]["penalty"] in b["cb"]["penalty_grid"]
    assert b["cb"]["features"] == baselines.descriptor_names()
    assert set(b["t_pred"]) == {"thermal_energy", "inherent_energy"}
    labels = ["0.44", "0.50", "0.64"]
    per_t = summary["groups"]["is+ts_lg0.01"]["per_temperature"]
    for label, entry in zip(labels, summary["temperatures"], strict=True):
        for where in (entry, per_t[label]):
            assert where["baseline_pearson_cb"] == b["cb"]["per_temperature"][label]
            assert (
                where["baseline_t_pred"] == b["t_pred"]["thermal_energy"]["per_temperature"][label]
            )
            assert set(where["baseline_t_pred"]) == {
                "mean",
                "std_configurations",
                "rmse",
                "n_configurations",
            }
        assert "pearson_node" in per_t[label] and "t_pred" in per_t[label]  # kept
    text = (run_dir / "analysis" / "summary.md").read_text()
    assert "ρ ridge baseline" in text and "## Baselines" in text
    run = runs.analyse_run(run_dir, runs.load_run_config(run_dir / "config.yaml"))
    legend = [t.get_text() for t in figures.fig07_pearson(run).axes[0].get_legend().get_texts()]
    assert "ridge baseline (structure)" in legend
    legend = [t.get_text() for t in figures.fig04_t_pred(run).axes[0].get_legend().get_texts()]
    assert any("energy-fit baseline" in t for t in legend)


def test_baselines_without_validation_files_are_noted_and_left_out(tmp_path):
    run_dir = make_synthetic_run(tmp_path, n_test=2, models=MODELS[:1])
    for path in (run_dir / "datasets").glob("*_validation.h5"):
        path.unlink()
    run = runs.analyse_run(run_dir, runs.load_run_config(run_dir / "config.yaml"))
    assert run.baselines is None and any("baselines: not computed" in n for n in run.notes)
    summary = run_summary.summarise(run)
    assert summary["baselines"] is None
    assert "baseline_pearson_cb" not in summary["temperatures"][0]
    run_summary.summary_markdown(summary)
