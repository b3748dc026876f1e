"""The node target (``model.node_target``): C_B (the paper's) or the propensity (the field's).

The synthetic files of learning_helpers carry propensity = 1 − C_B, so a model that learned the
wrong target, or a metric that compared with the wrong labels, shows up as a negative
correlation.  The slow test trains on the real BOTAN data (train 1–4, test 5) as
tests/test_training.py does for C_B.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ROOT
from learning_helpers import small_config, write_synthetic
from tbotan import cli
from tbotan.analysis.metrics import pearson
from tbotan.formats.dataset import DatasetFile
from tbotan.formats.predictions import read_predictions
from tbotan.learning import baselines
from tbotan.learning.graphs import GraphDataset, graph_from_dataset
from tbotan.learning.training import train


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("target")
    return dict(
        train=write_synthetic(d / "train.h5", seeds=(0, 1, 2), temperature=0.5),
        validation=write_synthetic(d / "val.h5", seeds=(4,), temperature=0.5, split="validation"),
        test=write_synthetic(d / "test.h5", seeds=(5, 6), temperature=0.5, split="test"),
    )


def test_graphs_carry_the_chosen_labels(files):
    f = DatasetFile(files["test"])
    conf = f.configuration(1, graphs=())
    for target in ("cb", "propensity"):
        data = graph_from_dataset(f, 1, "is+ts", target)
        np.testing.assert_array_equal(data.y.numpy(), conf[target])
        ds = GraphDataset([files["test"]], "ts", node_target=target)
        np.testing.assert_array_equal(ds[1].y.numpy(), conf[target])
    np.testing.assert_array_equal(
        graph_from_dataset(f, 0, "is").y.numpy(), f.configuration(0)["cb"]
    )
    with pytest.raises(ValueError, match="unknown node target 'mobility'"):
        graph_from_dataset(f, 0, "is+ts", "mobility")


def test_a_propensity_model_learns_predicts_and_says_so(files, tmp_path, capsys):
    """Trained on the propensity: its node output correlates positively with the propensity
    (negatively with C_B = 1 − propensity), the model file and the predictions file say which
    target it is, and ``tbotan predict`` prints the Pearson correlation of that target."""
    from tbotan.learning.inference import load_model, predict_dataset

    config = small_config(epochs=30, warmup_epochs=30, augment=False, checkpoint_every=30)
    config["model"]["node_target"] = "propensity"
    out = tmp_path / "m"
    train(config, [files["train"]], [], out, seed=0, progress=False)
    trained = load_model(out / "model.pt", "cpu")
    assert trained.node_target == "propensity"

    summary = predict_dataset(trained, files["test"], tmp_path / "p.h5")
    assert summary["node_target"] == "propensity"
    pred = read_predictions(tmp_path / "p.h5", DatasetFile(files["test"]))
    assert pred.node_target == "propensity" and pred.attrs["node_target"] == "propensity"
    content = DatasetFile(files["test"]).load()
    for c, reported in enumerate(summary["pearson"]):
        a = content.types[c] == 0
        assert reported == pytest.approx(pearson(pred.cb[c][a], content.propensity[c][a]))
        assert reported > 0.5  # learnt the propensity, not C_B (which would give ρ < 0)

    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text(
        "model: {hidden: 16, message_passing_steps: 2, node_target: propensity}\n"
        "training: {epochs: 1, warmup_epochs: 0, device: cpu, corr_distances: [1, 2, 2.5]}\n"
    )
    argv = ["train", "--config", str(yaml_path), "--train", str(files["train"]), "--no-progress"]
    assert cli.main([*argv, "--output", str(tmp_path / "cli")]) == 0
    assert "on propensity for 1 epochs" in capsys.readouterr().out

    argv = ["predict", "--model", str(out / "model.pt"), "--dataset", str(files["test"])]
    assert cli.main([*argv, "--output", str(tmp_path / "q.h5"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "predicts propensity per particle" in printed
    assert f"Pearson(propensity) over A particles: mean {np.mean(summary['pearson']):.3f}" in (
        printed
    )


def test_a_model_file_without_the_key_predicts_c_b(files, tmp_path):
    """Model files written before model.node_target existed learned C_B."""
    from tbotan.formats.model_file import MODEL_NAME
    from tbotan.learning.inference import load_model, predict_dataset

    config = small_config(epochs=1, warmup_epochs=1, checkpoint_every=1)
    train(config, [files["train"]], [], tmp_path / "m", seed=0, progress=False)
    path = tmp_path / "m" / MODEL_NAME
    obj = torch.load(path, weights_only=True)
    del obj["config"]["model"]["node_target"]
    torch.save(obj, path)
    trained = load_model(path, "cpu")
    assert trained.node_target == "cb"
    assert predict_dataset(trained, files["test"], tmp_path / "p.h5")["node_target"] == "cb"
    assert read_predictions(tmp_path / "p.h5").attrs["node_target"] == "cb"


def test_the_ridge_baseline_fits_the_chosen_target(files):
    """propensity = 1 − C_B in these files: the ridge fit on the propensity is 1 − the fit on
    C_B (intercept 1 − c, coefficients negated, same penalty, same ρ)."""
    args = ([files["train"]], [files["validation"]], {"0.5": files["test"]})
    on_cb = baselines.structural_baselines(*args)
    on_prop = baselines.structural_baselines(*args, node_target="propensity")
    assert on_cb["node_target"] == "cb" and on_prop["node_target"] == "propensity"
    cb, prop = on_cb["cb"], on_prop["propensity"]
    assert "propensity" not in on_cb and "cb" not in on_prop
    assert prop["target"].startswith("propensity per particle")
    assert prop["penalty"] == cb["penalty"]
    assert prop["intercept"] == pytest.approx(1.0 - cb["intercept"], abs=1e-6)
    for name, beta in cb["coefficients"].items():
        assert prop["coefficients"][name] == pytest.approx(
            -beta, rel=1e-4, abs=1e-6
        )  # float32 labels
    rho = prop["per_temperature"]["0.5"]["mean"]
    assert rho == pytest.approx(cb["per_temperature"]["0.5"]["mean"], abs=1e-6) and rho > 0.3
    assert on_prop["t_pred"] == on_cb["t_pred"]
    with pytest.raises(ValueError, match="unknown node target"):
        baselines.structural_baselines(*args, node_target="CB")


@pytest.fixture(scope="module")
def botan_propensity(tmp_path_factory):
    """config/botan.yaml with ``model.node_target: propensity``, trained on BOTAN configurations
    1–4 (T = 0.44) and tested on 5, with the untrained network's ρ (same initial weights) and
    the ridge baseline fitted on the propensity of 1–4."""
    from tbotan import config as cfgmod
    from tbotan.learning.inference import load_model, predict_dataset
    from tbotan.learning.model import TBotan
    from test_training import botan_datasets

    train_h5, test_h5 = botan_datasets(tmp_path_factory)
    config = cfgmod.load([ROOT / "config.yaml", ROOT / "config" / "botan.yaml"])
    config["model"]["node_target"] = "propensity"
    data = graph_from_dataset(DatasetFile(test_h5), 0, "is+ts", "propensity")
    a = data.a_mask
    torch.manual_seed(0)  # the initial weights of the training below (seed 0)
    with torch.no_grad():
        untrained = TBotan.from_config(config)(data.x, data.edge_index, data.edge_attr).cb
    out = tmp_path_factory.mktemp("botan_propensity")
    result = train(config, [train_h5], [test_h5], out, seed=0, progress=False)
    summary = predict_dataset(load_model(out / "model.pt", "cpu"), test_h5, out / "pred.h5")
    ridge = baselines.structural_baselines(
        [train_h5], [train_h5], {"5": test_h5}, node_target="propensity"
    )
    measured = dict(
        model=summary["pearson"][0],
        untrained=float(pearson(untrained[a], data.y[a])),
        ridge=ridge["propensity"]["per_temperature"]["5"]["mean"],
        curve=[round(r["val_pearson_T0.44"], 3) for r in result.metrics],
        node_target=summary["node_target"],
    )
    print(f"\nBOTAN file 5, Pearson(propensity) over A particles: {measured}")
    return measured


@pytest.mark.slow
def test_learns_the_real_propensity(botan_propensity):
    """Measured when written (docs/results.md, "Beside BOTAN's own code"): untrained −0.312 (the
    random features of the structure anticorrelate with the propensity, as they correlate with
    C_B), after 20 epochs 0.387, still rising by 0.002–0.004 per epoch."""
    m = botan_propensity
    assert m["node_target"] == "propensity"
    assert m["model"] > 0.3
    assert m["model"] > m["untrained"] + 0.5  # learnt the target's sign and more
    assert m["curve"][-1] > max(m["curve"][:5]) + 0.3


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="open (issue 25): with config/botan.yaml (made for C_B) the network reaches ρ = 0.387 "
    "on the propensity of file 5, below the ridge baseline's 0.471 (docs/results.md)",
)
def test_learns_the_real_propensity_better_than_the_ridge_baseline(botan_propensity):
    """The goal: a clear margin over the linear structural baseline, as on C_B (+0.07)."""
    assert botan_propensity["model"] > botan_propensity["ridge"] + 0.05
