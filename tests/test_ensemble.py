"""Seed ensembles: the ensemble prediction is its members' mean, the spread their standard
deviation, and one member is the member itself (predictions files and the CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from learning_helpers import prediction_attrs, small_config, write_synthetic
from tbotan import cli
from tbotan.formats.dataset import DatasetFile
from tbotan.formats.predictions import PredictionsError, read_predictions, write_predictions
from tbotan.learning.ensemble import combine_members, ensemble_attrs
from tbotan.learning.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _member(rng, c=3, n=7, e=11, h=4) -> dict:
    return {
        "cb": rng.normal(size=(c, n)).astype(np.float32),
        "edge": rng.normal(size=e).astype(np.float32),
        "t_pred": rng.uniform(0.4, 1.0, size=c).astype(np.float32),
        "embedding": rng.normal(size=(c, h)).astype(np.float32),
    }


def test_combine_members_is_the_float64_mean_and_population_spread():
    rng = np.random.default_rng(0)
    members = [_member(rng) for _ in range(3)]
    out = combine_members(members)
    for key in ("cb", "edge", "t_pred"):
        stack = np.stack([m[key].astype(np.float64) for m in members])
        assert np.array_equal(out[key], stack.mean(axis=0).astype(np.float32)), key
        np.testing.assert_allclose(out[f"{key}_std"], np.std(stack, axis=0, ddof=0), rtol=1e-6)
        # an independent spread: sqrt(mean of squared deviations), written out
        dev = np.sqrt(((stack - stack.mean(axis=0)) ** 2).sum(axis=0) / 3)
        np.testing.assert_allclose(out[f"{key}_std"], dev, rtol=1e-6)
    assert out["member_t_pred"].shape == (3, 3)
    assert np.array_equal(out["member_t_pred"][1], members[1]["t_pred"])
    assert out["embedding"].shape == (3, 12)
    assert np.array_equal(out["embedding"][:, 4:8], members[1]["embedding"])


def test_one_member_is_the_member():
    rng = np.random.default_rng(1)
    member = _member(rng)
    out = combine_members([member])
    for key in ("cb", "edge", "t_pred", "embedding"):
        assert np.array_equal(out[key], member[key]), key
    for key in ("cb_std", "edge_std", "t_pred_std"):
        assert not out[key].any()


def test_members_must_agree():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="at least one member"):
        combine_members([])
    with pytest.raises(ValueError, match="shape of 'cb'"):
        combine_members([_member(rng), _member(rng, n=8)])
    attrs = {"model": "is_lg0.01_s0", "variant": "is", "lambda_global": 0.01, "edge_graph": "graph"}
    other = dict(attrs, model="ts_lg0.01_s1", variant="ts", edge_graph="graph_ts")
    with pytest.raises(ValueError, match="share variant"):
        ensemble_attrs([attrs, other])
    assert ensemble_attrs([attrs]) == attrs


def test_predictions_file_refuses_a_partial_ensemble(tmp_path):
    rng = np.random.default_rng(3)
    m = _member(rng)
    attrs = prediction_attrs()
    with pytest.raises(PredictionsError, match="exactly the arrays"):
        write_predictions(tmp_path / "p.h5", **m, attrs=attrs, cb_std=m["cb"])
    spread = combine_members([m, _member(rng)])
    with pytest.raises(PredictionsError, match="'cb_std' has shape"):
        write_predictions(
            tmp_path / "p.h5",
            **m,
            attrs=attrs,
            cb_std=spread["cb_std"][:, :3],
            edge_std=spread["edge_std"],
            t_pred_std=spread["t_pred_std"],
            member_t_pred=spread["member_t_pred"],
        )


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """Three seeds of one tiny model (N = 250 synthetic data) and a test file."""
    d = tmp_path_factory.mktemp("ens")
    train_files = [
        write_synthetic(d / "T0.50_train.h5", seeds=(0,), temperature=0.5),
        write_synthetic(d / "T0.80_train.h5", seeds=(2,), temperature=0.8),
    ]
    test = write_synthetic(d / "T0.80_test.h5", seeds=(7, 8), temperature=0.8, split="test")
    config = small_config(epochs=1, warmup_epochs=0)
    models = [
        train(config, train_files, [], d / f"s{seed}", seed=seed, progress=False).model_path
        for seed in (0, 1, 2)
    ]
    return models, test


def test_predict_on_an_ensemble_writes_the_members_mean_and_spread(three_seeds, tmp_path):
    models, test = three_seeds
    singles = []
    for k, model in enumerate(models):
        out = tmp_path / f"single{k}.h5"
        assert (
            cli.main(
                ["predict", "--model", str(model), "--dataset", str(test), "--output", str(out)]
            )
            == 0
        )
        singles.append(read_predictions(out, DatasetFile(test)))
    ens_path = tmp_path / "ens.h5"
    argv = [
        "predict",
        "--model",
        *map(str, models),
        "--dataset",
        str(test),
        "--output",
        str(ens_path),
    ]
    assert cli.main(argv) == 0
    ens = read_predictions(ens_path, DatasetFile(test))
    assert ens.n_members == 3 and ens.attrs["seed"] == [0, 1, 2]
    for key in ("cb", "edge", "t_pred"):
        stack = np.stack([getattr(s, key).astype(np.float64) for s in singles])
        np.testing.assert_allclose(getattr(ens, key), stack.mean(axis=0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            getattr(ens, f"{key}_std"), stack.std(axis=0), rtol=1e-5, atol=1e-7
        )
    assert np.array_equal(ens.member_t_pred, np.stack([s.t_pred for s in singles]))
    # the members really differ: the spread is not zero
    assert ens.t_pred_std.max() > 0 and ens.cb_std.mean() > 0
    # one model through the ensemble path is that model's file, without ensemble arrays
    one = tmp_path / "one.h5"
    assert (
        cli.main(
            ["predict", "--model", str(models[1]), "--dataset", str(test), "--output", str(one)]
        )
        == 0
    )
    single = read_predictions(one, DatasetFile(test))
    assert single.n_members == 1 and single.cb_std is None
    assert np.array_equal(single.cb, singles[1].cb)


def test_an_ensemble_of_different_variants_is_refused(three_seeds, tmp_path, capsys):
    models, test = three_seeds
    config = small_config(epochs=1, warmup_epochs=0)
    train_file = write_synthetic(tmp_path / "T0.50_train.h5", seeds=(0,), temperature=0.5)
    ts = train(config, [train_file], [], tmp_path / "ts", variant="ts", progress=False).model_path
    argv = ["predict", "--model", str(models[0]), str(ts), "--dataset", str(test)]
    argv += ["--output", str(tmp_path / "p.h5")]
    assert cli.main(argv) == 2
    assert "cannot form one ensemble" in capsys.readouterr().err
    assert not (tmp_path / "p.h5").exists()


def test_the_demo_trains_a_seed_ensemble_of_the_main_model():
    from pathlib import Path

    from tbotan import config as cfg
    from tbotan.names import ModelId

    root = Path(__file__).resolve().parents[1]
    demo = cfg.load([root / "config.yaml", root / "config" / "demo.yaml"], check_engine=False)
    main = [ModelId.parse(m) for m in cfg.model_ids(demo)["main"]]
    assert {(m.variant, m.lambda_global) for m in main} == {
        (demo["model"]["variant"], demo["training"]["lambda_global"])
    }
    assert len({m.seed for m in main}) >= 3
