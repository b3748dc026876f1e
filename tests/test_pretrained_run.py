"""Ensembles packed from a finished pipeline run (``kalj-mixed-T``, scripts/train_pretrained.py).

A miniature run folder (the pipeline's layout: ``config.yaml``, ``datasets/``, ``models/``,
``benchmarks/``) is built from synthetic dataset files at two trained temperatures and one
untrained one, with two one-epoch members; the packaging is checked against direct NumPy
computations, its refusals against missing files, and the packed entry by ``tbotan models`` and
``tbotan predict --model NAME``.  The physics check of the shipped kalj-mixed-T (a fresh KALJ
liquid: T_pred within 10 % of its temperature; other N or density refused) skips while the
model is not shipped.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT
from learning_helpers import write_synthetic
from tbotan import cli
from tbotan import config as cfgmod
from tbotan.errors import InputError
from tbotan.formats.dataset import DatasetFile
from tbotan.formats.predictions import read_predictions
from tbotan.learning import pretrained
from tbotan.learning.graphs import graph_from_dataset
from tbotan.learning.inference import load_model, predict_graph
from tbotan.learning.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

MIXED = "kalj-mixed-T"
#: The miniature run: trained temperatures (training / validation / test seeds of the synthetic
#: configurations) and one untrained temperature (test only).
TRAINED = {"0.50": ((0, 1), (2,), (3, 4)), "0.80": ((10, 11), (12,), (13, 14))}
UNTRAINED = {"0.65": (20, 21)}
BENCHMARK_HEADER = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
)


def load_script():
    spec = importlib.util.spec_from_file_location(
        "train_pretrained", ROOT / "scripts" / "train_pretrained.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def benchmark(path, wall: float, cpu: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{BENCHMARK_HEADER}\n{wall}\t0:00:{wall:02.0f}\t1\t1\t1\t1\t0\t0\t90\t{cpu}\n")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A finished miniature pipeline run: (run folder, its configuration files, config)."""
    root = tmp_path_factory.mktemp("run")
    overlay = root / "fake.yaml"
    temperatures = [{"T": float(t), "tau_alpha": 1.0, "train": True} for t in TRAINED]
    temperatures += [{"T": float(t), "tau_alpha": 1.0, "train": False} for t in UNTRAINED]
    overlay.write_text(
        yaml.safe_dump(
            {
                "run_name": "fake",
                "system": {"n_particles": 250},
                "temperatures": temperatures,
                "dataset": {"n_train": 2, "n_validation": 1, "n_test": 2},
                "model": {"hidden": 16, "message_passing_steps": 2},
                "training": {
                    "epochs": 1,
                    "warmup_epochs": 0,
                    "global_refit_epochs": 3,  # as config/reduced.yaml (500 there)
                    "seeds": [0, 1],
                    "device": "cpu",
                    "corr_distances": [1.0, 2.0, 2.5],
                },
            }
        )
    )
    overlays = [str(ROOT / "config.yaml"), str(overlay)]
    config = cfgmod.load(overlays, check_engine=False)
    run = root / "results" / "fake"
    (run / "datasets").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    files = {"train": [], "validation": []}
    for label, seeds in TRAINED.items():
        for split, s in zip(("train", "validation", "test"), seeds, strict=True):
            path = run / "datasets" / f"T{label}_{split}.h5"
            write_synthetic(path, seeds=s, temperature=float(label), split=split)
            files.setdefault(split, []).append(path)
    for label, s in UNTRAINED.items():
        write_synthetic(
            run / "datasets" / f"T{label}_test.h5", seeds=s, temperature=float(label), split="test"
        )
    for model in cfgmod.model_ids(config)["main"]:
        seed = int(model.rsplit("_s", 1)[1])
        train(
            config,
            files["train"],
            files["validation"],
            run / "models" / model,
            seed=seed,
            progress=False,
        )
    benchmark(run / "benchmarks" / "train" / "is+ts_lg0.01_s0.tsv", 10.0, "12.5")
    benchmark(run / "benchmarks" / "train" / "is+ts_lg0.01_s1.tsv", 6.0, "7.5")
    benchmark(run / "benchmarks" / "iso" / "T0.50_chunk000.tsv", 3.0, "NA")
    return run, overlays, config


@pytest.fixture(scope="module")
def packed(fake_run, tmp_path_factory):
    """The miniature run packed by the script into a scratch registry: (registry, card)."""
    run, overlays, _ = fake_run
    registry = tmp_path_factory.mktemp("registry")
    argv = ["train_pretrained.py", MIXED, "--run", str(run), "--run-config", *overlays]
    old = sys.argv
    sys.argv = [*argv, "--registry", str(registry)]
    try:
        load_script().main()
    finally:
        sys.argv = old
    return registry, json.loads((registry / MIXED / pretrained.CARD_JSON).read_text())


def test_run_inputs_are_the_main_model_seeds_and_the_splits(fake_run):
    run, _, config = fake_run
    found = pretrained.run_inputs(run, config)
    assert found["model_ids"] == ["is+ts_lg0.01_s0", "is+ts_lg0.01_s1"]
    assert found["trained"] == ["0.50", "0.80"] and found["untrained"] == ["0.65"]
    assert found["test"]["0.65"] == run / "datasets" / "T0.65_test.h5"
    assert set(found["validation"]) == {"0.50", "0.80"}


def test_per_temperature_scores_match_a_direct_numpy_computation(fake_run):
    """Ensemble = members' float64 mean; ρ over A particles by np.corrcoef; mean and worst
    over the configurations; T_pred / T of the ensemble and of each member."""
    run, _, config = fake_run
    found = pretrained.run_inputs(run, config)
    result = pretrained.evaluate_temperatures(found["models"], found["test"], found["trained"])
    assert list(result) == ["0.50", "0.65", "0.80"]
    members = [load_model(p, "cpu") for p in found["models"]]
    for label, path in found["test"].items():
        entry = result[label]
        dataset = DatasetFile(path)
        assert entry["temperature"] == pytest.approx(float(label))
        assert entry["trained"] is (label in TRAINED)
        assert entry["files"] == [f"T{label} test 0", f"T{label} test 1"]
        rho_cb, rho_edge, t_ens, t_members = [], [], [], []
        for c in range(dataset.n_configurations):
            data = graph_from_dataset(dataset, c, "is+ts", "cb")
            a = data.a_mask.numpy()
            preds = [predict_graph(m, data) for m in members]
            cb = np.mean([p["cb"].astype(np.float64) for p in preds], axis=0)
            edge = np.mean([p["edge"].astype(np.float64) for p in preds], axis=0)
            rho_cb.append(np.corrcoef(cb[a], data.y.numpy()[a])[0, 1])
            rho_edge.append(np.corrcoef(edge, data.y_edge.numpy())[0, 1])
            t_members.append([float(p["t_pred"]) for p in preds])
            t_ens.append(np.mean(t_members[-1]))
        ens = entry["ensemble"]
        assert ens["rho_cb"]["mean"] == pytest.approx(np.mean(rho_cb), abs=2e-4)
        assert ens["rho_cb"]["worst"] == pytest.approx(np.min(rho_cb), abs=2e-4)
        assert ens["rho_cb"]["worst_file"] == entry["files"][int(np.argmin(rho_cb))]
        assert ens["rho_edge"]["mean"] == pytest.approx(np.mean(rho_edge), abs=2e-4)
        assert entry["t_pred_mean"] == pytest.approx(np.mean(t_ens), abs=2e-4)
        assert entry["t_ratio"] == pytest.approx(np.mean(t_ens) / float(label), abs=2e-4)
        for k, seed in enumerate(("0", "1")):
            t_k = np.mean([t[k] for t in t_members])
            assert entry["members"][seed]["t_pred_mean"] == pytest.approx(t_k, abs=2e-4)
            assert entry["members"][seed]["t_ratio"] == pytest.approx(t_k / float(label), abs=2e-4)


def test_benchmark_cpu_seconds_sums_the_jobs(fake_run):
    run, _, config = fake_run
    cpu = pretrained.benchmark_cpu_seconds(run, cfgmod.model_ids(config)["main"])
    assert cpu["stages"]["train"] == {
        "jobs": 2,
        "cpu_s": 20.0,
        "wall_s": 16.0,
        "jobs_without_cpu": 0,
    }
    assert cpu["stages"]["iso"] == {"jobs": 1, "cpu_s": 0.0, "wall_s": 3.0, "jobs_without_cpu": 1}
    assert cpu["total"] == {"cpu_s": 20.0, "wall_s": 19.0}
    assert cpu["members"]["is+ts_lg0.01_s1"] == {"cpu_s": 7.5, "wall_s": 6.0}
    assert pretrained.benchmark_cpu_seconds(run / "datasets", []) is None


def test_the_packed_card_holds_the_scores_baselines_and_recipe(fake_run, packed):
    run, overlays, config = fake_run
    registry, card = packed
    assert sorted(p.name for p in (registry / MIXED).iterdir()) == [
        "card.json",
        "card.md",
        "seed0.pt",
        "seed1.pt",
    ]
    assert (registry / MIXED / "card.md").read_text() == pretrained.render_card(card)
    per_t = card["evaluation"]["per_temperature"]
    found = pretrained.run_inputs(run, config)
    # the card's scores are those of the packed (float32) members on the test splits
    fresh = pretrained.evaluate_temperatures(
        [registry / MIXED / "seed0.pt", registry / MIXED / "seed1.pt"],
        found["test"],
        found["trained"],
    )
    for label in fresh:
        assert per_t[label]["ensemble"] == fresh[label]["ensemble"]
        assert per_t[label]["t_pred_mean"] == fresh[label]["t_pred_mean"]
    # the baselines: the pipeline's own, fitted on the training split
    from tbotan.learning.baselines import structural_baselines

    direct = structural_baselines(
        [found["train"][t] for t in TRAINED],
        [found["validation"][t] for t in TRAINED],
        found["test"],
    )
    fits = card["evaluation"]["baselines"]
    assert fits["ridge_cb"]["fit_temperatures"] == ["0.50", "0.80"]
    assert (
        fits["t_from_energy"]["coefficients"] == direct["t_pred"]["thermal_energy"]["coefficients"]
    )
    for label, entry in per_t.items():
        rho = direct["cb"]["per_temperature"][label]["per_configuration"]
        assert entry["ridge"]["cb"]["mean"] == pytest.approx(np.mean(rho), abs=1e-4)
        fit = direct["t_pred"]["thermal_energy"]["per_temperature"][label]
        assert entry["t_from_energy"]["mean"] == pytest.approx(fit["mean"], abs=1e-4)
        assert entry["t_from_energy"]["t_ratio"] == pytest.approx(
            fit["mean"] / float(label), abs=1e-4
        )
    # applicability and provenance
    app = card["applicability"]
    assert app["temperatures_trained"] == [0.5, 0.8]
    assert app["temperatures_tested_untrained"] == [0.65]
    assert app["n_particles"] == [250] and "pulled back towards the trained range" in app["note"]
    tr = card["training"]
    assert tr["model_ids"] == ["is+ts_lg0.01_s0", "is+ts_lg0.01_s1"]
    assert tr["run"]["config_hash"] == cfgmod.section_hash(config)
    assert tr["run"]["config_overlays"] == overlays
    assert tr["cpu"]["members"]["is+ts_lg0.01_s0"]["cpu_s"] == 12.5
    assert set(tr["global_refit"]) == {"0", "1"} and tr["global_refit"]["1"]["t_rmse_after"] >= 0
    assert (
        "Global head refitted on the final trunk (training.global_refit_epochs 3)"
        in (registry / MIXED / "card.md").read_text()
    )
    assert tr["commands"]["pipeline"].startswith("snakemake --workflow-profile profiles/laptop")
    assert (
        f"--run {run}" in tr["commands"]["package"] and "--run-config" in tr["commands"]["package"]
    )


def test_models_and_predict_use_the_packed_entry_by_name(
    fake_run, packed, monkeypatch, tmp_path, capsys
):
    run, _, _ = fake_run
    registry, card = packed
    monkeypatch.setattr(pretrained, "registry_dir", lambda: registry)
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{MIXED}: cb + edges + T; T 0.5-0.8 (trained; also tested at 0.65); N 250" in out
    assert pretrained.summary_line(card) in out
    assert cli.main(["models", "--show", MIXED]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith(f"# Model card: {MIXED}")
        and "temperatures tested, never trained on: 0.65" in out
    )
    test = run / "datasets" / "T0.80_test.h5"
    argv = ["predict", "--model", MIXED, "--dataset", str(test), "--output", str(tmp_path / "p.h5")]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    pred = read_predictions(tmp_path / "p.h5")
    assert np.mean(pred.t_pred) == pytest.approx(
        card["evaluation"]["per_temperature"]["0.80"]["t_pred_mean"], abs=2e-4
    )


def test_packaging_refuses_an_unfinished_run(fake_run, tmp_path):
    run, overlays, config = fake_run
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    (partial / "models" / "is+ts_lg0.01_s1" / "model.pt").unlink()
    (partial / "datasets" / "T0.65_test.h5").unlink()
    with pytest.raises(InputError) as info:
        pretrained.run_inputs(partial, config)
    message = str(info.value)
    assert "2 of the 9 files the ensemble needs are missing" in message
    assert "models/is+ts_lg0.01_s1/model.pt" in message and "datasets/T0.65_test.h5" in message
    script = load_script()
    args = type("Args", (), {"run": str(partial), "run_config": overlays, "name": MIXED})()
    args.registry = str(tmp_path / "registry")
    with pytest.raises(SystemExit, match="models/is\\+ts_lg0.01_s1/model.pt"):
        script.package_run(args, script.MODELS[MIXED])
    assert not (tmp_path / "registry").exists()  # nothing written
    # a run made with other configuration files than those named
    args.run, args.run_config = str(run), None
    with pytest.raises(SystemExit, match="is not that of config.yaml config/reduced.yaml"):
        script.package_run(args, script.MODELS[MIXED])
    args.run = str(tmp_path / "none")
    with pytest.raises(SystemExit, match="no such folder"):
        script.package_run(args, script.MODELS[MIXED])


# ============================================================================ the shipped model


def fresh_liquid(n: int, temperature: float, seed: int):
    """A KALJ liquid of ``n`` particles at ρ = 1.2 equilibrated at ``temperature`` with the
    project's torch engine: melted at T = 2 for 1000 steps, then 6000 steps (t = 30 τ_LJ, about
    10 τ_α at T = 0.80) at ``temperature`` (at N = 1000, T = 0.80: U/N within the spread of
    the reduced study's equilibrated systems)."""
    from tbotan.md import DynamicsParameters
    from tbotan.md.torch_engine import TorchEngine
    from tbotan.physics.configurations import maxwell_boltzmann_velocities, random_configuration

    engine = TorchEngine(device="cpu", precision="float64")
    conf = random_configuration(n, seed=seed)
    conf = conf.with_velocities(maxwell_boltzmann_velocities(n, 2.0, seed=seed, stream=0)[None])
    sim = engine.simulation(conf, DynamicsParameters(dt=0.003, kT=2.0, tau=0.1, seed=seed))
    sim.run(1000)
    state = sim.state()
    sim = engine.simulation(
        state, DynamicsParameters(dt=0.005, kT=temperature, tau=0.5, seed=seed + 1)
    )
    sim.run(6000)
    return sim.state()


def shipped_mixed_card() -> dict:
    if MIXED not in pretrained.available():
        pytest.skip(f"{MIXED} not in the registry")
    return pretrained.read_card(MIXED)


def test_shipped_mixed_model_predicts_the_temperature_of_a_fresh_liquid(tmp_path, capsys):
    """A fresh N = 1000 liquid at T = 0.80 (a trained temperature), never seen by the model:
    ``predict --model kalj-mixed-T`` (FIRE quench, graphs, five members) gives T_pred within
    10 % of 0.80."""
    from tbotan.physics.configurations import write_gsd

    card = shipped_mixed_card()
    n = card["applicability"]["n_particles"][0]
    temperature = 0.80
    assert temperature in card["applicability"]["temperatures_trained"]
    write_gsd(tmp_path / "liquid.gsd", fresh_liquid(n, temperature, seed=5))
    argv = ["predict", "--model", MIXED, "--gsd", str(tmp_path / "liquid.gsd"), "--device", "cpu"]
    assert cli.main([*argv, "--output", str(tmp_path / "p.h5")]) == 0
    t_pred = float(np.mean(read_predictions(tmp_path / "p.h5").t_pred))
    assert abs(t_pred / temperature - 1) < 0.10, t_pred


@pytest.mark.parametrize("change", ["density", "size"])
def test_shipped_mixed_model_refuses_another_system(tmp_path, capsys, change):
    """Another density (every distance × 1.05) or another N: exit status 2 before any quench,
    unless --allow-extrapolation."""
    from tbotan.physics.configurations import ConfigurationBatch, random_configuration, write_gsd

    card = shipped_mixed_card()
    n = card["applicability"]["n_particles"][0]
    conf = random_configuration(n if change == "density" else 2 * n, seed=3)
    if change == "density":
        conf = ConfigurationBatch(conf.positions[0] * 1.05, conf.types[0], conf.box[0] * 1.05)
    write_gsd(tmp_path / "c.gsd", conf)
    argv = ["predict", "--model", MIXED, "--gsd", str(tmp_path / "c.gsd"), "--device", "cpu"]
    assert cli.main([*argv, "--output", str(tmp_path / "p.h5")]) == 2
    err = capsys.readouterr().err
    assert ("density" if change == "density" else f"N = {2 * n}") in err
    assert "--allow-extrapolation" in err and not (tmp_path / "p.h5").exists()


@pytest.mark.slow
def test_kalj_mixed_t_card_matches_a_fresh_evaluation_of_its_run():
    """The shipped card's held-out numbers are those of its shipped members on the run it
    names: every temperature's ensemble and member scores and T_pred, re-evaluated on the run's
    test splits.  The run's data are not in the repository (tens of MB of trajectories and
    labels): ``TBOTAN_REDUCED_RUN`` points to the reduced study's run folder
    (``results/reduced`` after its snakemake command)."""
    import os
    from pathlib import Path

    if "kalj-mixed-T" not in pretrained.available():
        pytest.skip("kalj-mixed-T not in the registry")
    run = os.environ.get("TBOTAN_REDUCED_RUN")
    if not run:
        pytest.skip("set TBOTAN_REDUCED_RUN to the reduced study's run folder (results/reduced)")
    config = cfgmod.load([Path(run) / "config.yaml"])
    inputs = pretrained.run_inputs(run, config)
    fresh = pretrained.evaluate_temperatures(
        pretrained.member_paths("kalj-mixed-T"), inputs["test"], inputs["trained"]
    )
    card = pretrained.read_card("kalj-mixed-T")["evaluation"]["per_temperature"]
    assert sorted(fresh) == sorted(card)
    for label, new in fresh.items():
        old = card[label]
        assert new["t_pred_mean"] == pytest.approx(old["t_pred_mean"], abs=2e-4), label
        assert new["t_ratio"] == pytest.approx(old["t_ratio"], abs=2e-4), label
        for metric, summary in new["ensemble"].items():
            assert summary["mean"] == pytest.approx(old["ensemble"][metric]["mean"], abs=2e-3)
        for seed, member in new["members"].items():
            assert member["t_ratio"] == pytest.approx(old["members"][seed]["t_ratio"], abs=2e-4)
