"""The second training phase (``training.fluctuation_phase``, docs/physics.md §8.4).

A label field with a known structure-predictable fraction f = 0.25 of its variance (the rest is
particle-independent noise): a point-loss (MSE) predictor can at best learn the predictable
part, so its variance is about f Var(y) < Var(y) / 2; the second phase, with L_Var, brings the
variance of the prediction back to within 25 % of the labels'.  Variances are measured
independently of the trainer: the model file is loaded, a held-out file predicted, and the
variances computed with NumPy over its type-A particles.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from learning_helpers import small_config, synthetic_content
from tbotan.formats.dataset import DatasetFile, write_dataset
from tbotan.formats.model_file import CHECKPOINT_FORMAT, load_file
from tbotan.formats.model_file import read_metrics_rows as read_metrics
from tbotan.formats.predictions import read_predictions
from tbotan.learning.training import IncompatibleCheckpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

#: The fraction of the labels' variance that the structure predicts.
PREDICTABLE = 0.25
N = 250


def noisy_labels(seeds, temperature: float, split: str):
    """Synthetic configurations (learning_helpers) whose C_B is 0.6 + 0.1 (√f z + √(1−f) ε):
    z the standardised tanh of the smooth coordination score of learning_helpers (learnable),
    ε standard normal noise drawn per particle (unlearnable)."""
    content = synthetic_content(N, seeds, temperature, split)
    labels = []
    for k, seed in enumerate(seeds):
        structure = content.cb[k] - 0.05 * (content.types[k] == 1)  # 0.6 + 0.25 tanh(score)
        z = (structure - structure.mean()) / structure.std()
        noise = np.random.default_rng([seed, 99]).standard_normal(N)
        labels.append(0.6 + 0.1 * (np.sqrt(PREDICTABLE) * z + np.sqrt(1 - PREDICTABLE) * noise))
    cb = np.asarray(labels, dtype=np.float32)
    return dataclasses.replace(content, cb=cb, propensity=1.0 - cb)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fluct")
    paths = {}
    for name, seeds, split in (
        ("train", (0, 1, 2), "train"),
        ("validation", (3,), "validation"),
        ("test", (4, 5), "test"),
    ):
        paths[name] = d / f"{name}.h5"
        write_dataset(paths[name], noisy_labels(seeds, 0.5, split))
    return paths


def config(phase2_epochs: int, **training):
    base = dict(
        epochs=30,
        warmup_epochs=30,
        augment=False,
        checkpoint_every=10,
        learning_rate=3e-3,
        lr_schedule="cosine",
        lr_warmup_epochs=1,
        fluctuation_phase={"epochs": phase2_epochs, "w_var": 1.0, "w_corr": 0.5},
    )
    base.update(training)
    return small_config(**base)


def variance_ratio(model_path, dataset, out) -> float:
    """Var(predicted) / Var(true) over the type-A particles of every configuration of
    ``dataset``, pooled per configuration (mean of the ratios)."""
    from tbotan.learning.inference import load_model, predict_dataset

    predict_dataset(load_model(model_path, "cpu"), dataset, out)
    pred = read_predictions(out, DatasetFile(dataset))
    content = DatasetFile(dataset).load()
    ratios = []
    for c in range(content.n_configurations):
        a = content.types[c] == 0
        ratios.append(np.var(pred.cb[c][a]) / np.var(content.cb[c][a].astype(np.float64)))
    return float(np.mean(ratios))


def test_second_phase_restores_the_variance(files, tmp_path):
    """After the point loss the predicted variance is below half the labels'; the second phase,
    started from that model (a finished training resumed with fluctuation_phase set), brings it
    within 25 % of theirs; metrics.csv and the model file say which phase is which."""
    out = tmp_path / "m"
    args = ([files["train"]], [files["validation"]], out)
    train(config(0), *args, seed=0, progress=False)
    before = variance_ratio(out / "model.pt", files["test"], tmp_path / "p1.h5")
    assert before < 0.5, before
    assert torch.load(out / "model.pt", weights_only=True)["fluctuation_phase"] == {}

    result = train(config(30), *args, seed=0, progress=False, resume=True)
    after = variance_ratio(out / "model.pt", files["test"], tmp_path / "p2.h5")
    assert abs(after - 1.0) < 0.25, (before, after)

    rows = read_metrics(out / "metrics.csv")
    assert result.epochs == 60 and [r["epoch"] for r in rows] == list(range(1, 61))
    assert [r["phase"] for r in rows] == [1] * 30 + [2] * 30
    assert all(r["w_var"] == 0 for r in rows[:30]) and all(r["w_var"] == 1 for r in rows[30:])
    assert all(r["lr"] == pytest.approx(3e-4) for r in rows[30:])  # 0.1 x learning_rate
    assert rows[29]["val_var_ratio"] < 0.5 and abs(rows[-1]["val_var_ratio"] - 1) < 0.25
    model = torch.load(out / "model.pt", weights_only=True)
    assert model["epoch"] == 60 and model["fluctuation_phase"]["from_epoch"] == 30


def test_a_killed_second_phase_resumes_identically(files, tmp_path):
    """Killed in the second phase, resumed: the same model as without the kill, bit for bit;
    the checkpoint records the phase; the second phase's weights and rate are fixed once it
    began, its length may grow; the global-head refit runs on the second phase's trunk."""
    cfg = config(4, epochs=4, warmup_epochs=4, checkpoint_every=1, select_model="val_objective")
    args = ([files["train"]], [files["validation"]])
    straight = train(cfg, *args, tmp_path / "a", seed=1, progress=False)
    train(cfg, *args, tmp_path / "b", seed=1, progress=False, stop_after=6)
    assert load_file(tmp_path / "b" / "checkpoint.pt", CHECKPOINT_FORMAT)["phase"] == 2
    other = config(4, epochs=4, warmup_epochs=4, checkpoint_every=1, select_model="val_objective")
    other["training"]["fluctuation_phase"]["w_var"] = 2.0
    with pytest.raises(IncompatibleCheckpoint, match="fluctuation_phase"):
        train(other, *args, tmp_path / "b", seed=1, progress=False, resume=True)
    resumed = train(cfg, *args, tmp_path / "b", seed=1, progress=False, resume=True)
    assert resumed.epochs == straight.epochs == 8
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # the second phase started from the weights select_model kept, recorded in the model
    best = min(straight.metrics[:4], key=lambda r: r["val_objective"])["epoch"]
    assert a["fluctuation_phase"]["from_epoch"] == b["fluctuation_phase"]["from_epoch"] == best
    # the global-head refit runs on the trunk of the second phase's last epoch
    refit = config(4, epochs=4, warmup_epochs=4, checkpoint_every=1, select_model="val_objective")
    refit["training"]["global_refit_epochs"] = 20
    train(refit, *args, tmp_path / "b", seed=1, progress=False, resume=True)
    refitted = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    last = load_file(tmp_path / "b" / "checkpoint.pt", CHECKPOINT_FORMAT)["model"]
    assert refitted["global_refit"]["steps"] == 20 and refitted["epoch"] == 8
    head = ("global_mlp.", "global_decoder.", "pool_")
    trunk = [k for k in last if not k.startswith(head)]
    assert trunk and all(torch.equal(refitted["state_dict"][k], last[k]) for k in trunk)
    # a finished second phase may be lengthened (constant rate): one more epoch
    longer = config(5, epochs=4, warmup_epochs=4, checkpoint_every=1, select_model="val_objective")
    extended = train(longer, *args, tmp_path / "a", seed=1, progress=False, resume=True)
    assert [r["phase"] for r in extended.metrics] == [1] * 4 + [2] * 5
