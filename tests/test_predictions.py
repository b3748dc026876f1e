"""Predictions files: round trip and validation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tbotan.dataset import DatasetFile, write_dataset
from tbotan.predictions import PredictionsError, read_predictions, write_predictions
from test_dataset import tiny_content

ATTRS = dict(
    dataset="d.h5",
    temperature=0.8,
    split="test",
    model="is+ts_lg0.01_s0",
    variant="is+ts",
    seed=0,
    lambda_global=0.01,
    epoch=5,
    edge_graph="graph",
)


def arrays(content):
    c, n = content.types.shape
    e = content.graph.index.shape[1]
    rng = np.random.default_rng(1)
    return dict(
        cb=rng.uniform(size=(c, n)),
        edge=rng.normal(size=e),
        t_pred=rng.uniform(size=c),
        embedding=rng.normal(size=(c, 64)),
    )


def test_round_trip_and_dataset_match(tmp_path):
    content = tiny_content()
    write_dataset(tmp_path / "d.h5", content)
    data = arrays(content)
    write_predictions(tmp_path / "p.h5", **data, attrs=ATTRS)
    pred = read_predictions(tmp_path / "p.h5", DatasetFile(tmp_path / "d.h5"))
    np.testing.assert_array_equal(pred.cb, data["cb"].astype(np.float32))
    assert pred.attrs["model"] == "is+ts_lg0.01_s0" and pred.n_configurations == 3


def test_mismatch_and_damage_are_reported(tmp_path):
    content = tiny_content()
    write_dataset(tmp_path / "d.h5", content)
    data = arrays(content)
    data["edge"] = data["edge"][:-1]
    write_predictions(tmp_path / "p.h5", **data, attrs=ATTRS)
    with pytest.raises(PredictionsError, match="edge has shape"):
        read_predictions(tmp_path / "p.h5", DatasetFile(tmp_path / "d.h5"))
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(PredictionsError, match="incomplete"):
        read_predictions(tmp_path / "p.h5")
    bad = arrays(content)
    bad["t_pred"][0] = np.nan
    with pytest.raises(PredictionsError, match="NaN"):
        write_predictions(tmp_path / "q.h5", **bad, attrs=ATTRS)
    with pytest.raises(PredictionsError, match="missing attributes"):
        write_predictions(tmp_path / "q.h5", **arrays(content), attrs={"model": "x"})
