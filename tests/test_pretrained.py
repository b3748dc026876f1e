"""The pretrained ensembles shipped in the package (``tbotan models``, ``predict --model NAME``).

Every shipped model must load by name from the installed package, keep its files under 5 MB
and carry a card whose numbers a fresh evaluation reproduces.  The slow test re-imports one real
BOTAN configuration (FIRE quench, labels) and re-predicts it: a file the model never saw
(file 6 of a pyg_botan checkout, $TBOTAN_PYG_BOTAN) when there is one, else training file 1 of
$TBOTAN_BOTAN_DATA against the card's in-sample numbers.  ``predict`` must refuse a
configuration outside the card's range (another density, another composition) with exit
status 2, naming the range.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BOTAN_BOX, ROOT, botan_file
from tbotan import cli
from tbotan.analysis.metrics import pearson
from tbotan.formats.dataset import DatasetFile
from tbotan.formats.model_file import read_model_file
from tbotan.formats.predictions import read_predictions
from tbotan.learning import pretrained
from tbotan.learning.inference import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "kalj-T0.44"
MAX_BYTES = 5 * 1024 * 1024


def test_registry_lists_the_botan_ensemble():
    assert NAME in pretrained.available()
    card = pretrained.read_card(NAME)
    assert card["format"] == pretrained.CARD_FORMAT and card["name"] == NAME
    assert [m["seed"] for m in card["members"]] == [0, 1, 2, 3, 4]
    assert len(card["evaluation"]["held_out"]["files"]) == 10
    # the ten held-out files are not the training files
    train = {f["sha256"] for f in card["training"]["files"]}
    assert len(train) == 5 and not train & {f["sha256"] for f in card["held_out_files"]}


@pytest.mark.parametrize("name", pretrained.available())
def test_shipped_model_loads_by_name(name):
    card = pretrained.read_card(name)
    paths = pretrained.member_paths(name)
    assert len(paths) == len(card["members"]) >= 1
    for path, member in zip(paths, card["members"], strict=True):
        assert path.stat().st_size <= MAX_BYTES, f"{path}: {path.stat().st_size} bytes"
        assert path.stat().st_size == member["bytes"]
        assert pretrained.sha256(path) == member["sha256"]
        meta = read_model_file(path)
        assert set(meta) >= {"state_dict", "training_data"} and "optimizer" not in meta
        assert all(
            v.dtype == torch.float32 for v in meta["state_dict"].values() if v.is_floating_point()
        )
        trained = load_model(path, "cpu")
        assert trained.node_target == card["node_target"]
        # the range the card states is the one predict enforces (the model's training data)
        app = card["applicability"]
        data = trained.meta["training_data"]
        assert app["n_particles"] == data["n_particles"]
        assert app["density"] == pytest.approx(data["density"])
        assert app["fraction_a"] == pytest.approx(data["fraction_a"])
        assert app["temperatures_trained"] == pytest.approx(trained.meta["training_temperatures"])
        assert member["seed"] == trained.meta["seed"]
    assert pretrained.resolve_model_arguments([name]) == ([str(p) for p in paths], name)
    if pretrained.per_temperature(card):
        # a run's ensemble: scored at every trained temperature and at the untrained ones
        per_t = card["evaluation"]["per_temperature"]
        app = card["applicability"]
        assert sorted(e["temperature"] for e in per_t.values() if e["trained"]) == pytest.approx(
            sorted(app["temperatures_trained"])
        )
        assert sorted(e["temperature"] for e in per_t.values() if not e["trained"]) == (
            pytest.approx(sorted(app["temperatures_tested_untrained"]))
        )
        for entry in per_t.values():
            assert set(entry["members"]) == {str(m["seed"]) for m in card["members"]}
            assert entry["t_ratio"] == pytest.approx(
                entry["t_pred_mean"] / entry["temperature"], abs=1e-3
            )
            assert len(entry["ridge"]["cb"]["per_configuration"]) == len(entry["files"])
        commands = card["training"]["commands"]
        assert commands["pipeline"].startswith("snakemake ") and name in commands["package"]
    # card.md is the card rendered
    card_md = pretrained.registry_dir() / name / pretrained.CARD_TEXT
    assert card_md.read_text() == pretrained.render_card(card)


def test_package_data_includes_the_models():
    """pyproject's package-data globs match every shipped file (a wheel carries them)."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["tbotan"]
    package = ROOT / "src" / "tbotan"
    shipped = {
        p for name in pretrained.available() for p in (package / "data/models" / name).iterdir()
    }
    matched = {p for g in globs for p in package.glob(g) if p.is_file()}
    assert shipped and shipped <= matched


def test_models_command(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    card = pretrained.read_card(NAME)
    held = card["evaluation"]["held_out"]
    assert f"{NAME}: cb + edges + T; T 0.44 (trained); N 4096" in out
    assert f"rho_cb {held['ensemble']['rho_cb']['mean']:.3f}" in out
    assert f"ridge {held['ridge']['cb']['mean']:.3f}" in out
    assert cli.main(["models", "--show", NAME]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Model card: {NAME}") and "Applicability" in out
    assert cli.main(["models", "--show", "kalj-T9"]) == 2
    assert f"shipped models: {', '.join(pretrained.available())}" in capsys.readouterr().err


def test_models_lists_every_shipped_model(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in pretrained.available():
        assert pretrained.summary_line(pretrained.read_card(name)) in out


def test_predict_unknown_name_lists_the_shipped_models(tmp_path, capsys):
    argv = ["predict", "--model", "kalj-T0.45", "--npz", str(tmp_path / "x.npz")]
    assert cli.main([*argv, "--box", "15", "--output", str(tmp_path / "p.h5")]) == 2
    err = capsys.readouterr().err
    assert "--model kalj-T0.45: no such file and no shipped model" in err and NAME in err


@pytest.mark.parametrize(
    "change, message",
    [
        ("density", r"density 1.037 \(trained on 1.2–1.2; accepted 1.188–1.212\)"),
        ("composition", r"A fraction 0.8489 \(trained on 0.8–0.8; accepted 0.79–0.81\)"),
    ],
)
def test_predict_refuses_outside_the_card_range(botan_dir, tmp_path, capsys, change, message):
    """A real configuration made unlike the training data: refused before any quench."""
    import re

    with np.load(botan_file(botan_dir, 1)) as f:
        types, positions = f["types"].copy(), f["initial_positions"].copy()
    box = BOTAN_BOX
    if change == "density":  # every distance × 1.05: ρ = 1.2 / 1.05³
        positions, box = positions * 1.05, box * 1.05
    else:  # 200 B particles become A
        types[np.flatnonzero(types == 1)[:200]] = 0
    np.savez(tmp_path / "c.npz", types=types, initial_positions=positions, box=box)
    argv = ["predict", "--model", NAME, "--npz", str(tmp_path / "c.npz"), "--device", "cpu"]
    assert cli.main([*argv, "--output", str(tmp_path / "p.h5")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "--allow-extrapolation" in err and not (tmp_path / "p.h5").exists()


def _evaluation_file(botan_dir) -> tuple[Path, str]:
    """A real configuration to re-evaluate and the card's evaluation set it belongs to."""
    checkout = os.environ.get("TBOTAN_PYG_BOTAN")
    if checkout:
        held = Path(checkout) / "small_data" / "T0.44" / "train" / "isoconfig_N4096T0.44_6_tc07.npz"
        if not held.is_file():
            pytest.fail(f"TBOTAN_PYG_BOTAN={checkout} has no {held.name}")
        return held, "held_out"
    return botan_file(botan_dir, 1), "training_files"


@pytest.mark.slow
def test_card_numbers_match_a_fresh_evaluation(botan_dir, tmp_path, capsys):
    """One configuration re-imported (FIRE quench, labels) and predicted by name: the
    ensemble's and two members' ρ equal the card's (to the card's 4 decimals, plus the FIRE
    quench's reproducibility)."""
    npz, key = _evaluation_file(botan_dir)
    card = pretrained.read_card(NAME)
    evaluation = card["evaluation"][key]
    c = evaluation["files"].index(npz.name)
    assert (
        pretrained.sha256(npz)
        == {
            f["name"]: f["sha256"]
            for f in (card["held_out_files"] if key == "held_out" else card["training"]["files"])
        }[npz.name]
    )
    h5 = tmp_path / "one.h5"
    argv = ["import-botan", str(npz), "--box", str(BOTAN_BOX), "--temperature", "0.44"]
    argv += ["--engine", "torch", "--device", "cpu", "--output", str(h5)]
    config = [str(ROOT / "config.yaml"), str(ROOT / "config" / "botan.yaml")]
    assert cli.main([*argv, "--config", *config]) == 0

    # the ensemble, by name, through the command
    argv = ["predict", "--model", NAME, "--dataset", str(h5), "--output", str(tmp_path / "p.h5")]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    assert f"{NAME}: predicts C_B" in capsys.readouterr().out
    pred = read_predictions(tmp_path / "p.h5")
    conf = DatasetFile(h5).configuration(0, graphs=())
    a = conf["types"] == 0
    ensemble = evaluation["ensemble"]
    tol = 2e-3
    assert pearson(pred.cb[0][a], conf["cb"][a]) == pytest.approx(
        ensemble["rho_cb"]["per_configuration"][c], abs=tol
    )
    assert pearson(pred.cb[0][a], conf["propensity"][a]) == pytest.approx(
        ensemble["rho_propensity"]["per_configuration"][c], abs=tol
    )
    # two members, through the evaluation the card was made with
    fresh = pretrained.evaluate(pretrained.member_paths(NAME)[:2], h5)
    for seed in ("0", "1"):
        for metric in pretrained.METRICS:
            assert fresh["members"][seed][metric]["per_configuration"][0] == pytest.approx(
                evaluation["members"][seed][metric]["per_configuration"][c], abs=tol
            ), (seed, metric)
    print(json.dumps({"file": npz.name, "set": key}))


def test_regeneration_drops_held_out_files_identical_to_training_files(tmp_path):
    """scripts/train_pretrained.py: a held-out folder holding copies of training files (as
    pyg_botan's small_data/T0.44/train holds files 1-10) keeps only the others."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "train_pretrained", ROOT / "scripts" / "train_pretrained.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "train").mkdir()
    (tmp_path / "held").mkdir()
    for k in (1, 2):
        (tmp_path / "train" / f"f{k}.npz").write_bytes(bytes([k]) * 100)
    for k in (1, 2, 3, 10):  # 1, 2: copies of the training files
        (tmp_path / "held" / f"f{k}.npz").write_bytes(bytes([k]) * 100)
    (tmp_path / "extra.npz").write_bytes(bytes([3]) * 100)  # a second copy of f3
    training = {script.sha256(p): p for p in (tmp_path / "train").iterdir()}
    kept = script.held_out_files([str(tmp_path / "held"), str(tmp_path / "extra.npz")], training)
    assert [p.name for p in kept] == ["f3.npz", "f10.npz"]
    with pytest.raises(SystemExit, match="neither a file nor a folder"):
        script.held_out_files([str(tmp_path / "none")], training)
