"""The string formats owned by tbotan.names: model ids, group (seed-ensemble) ids and the
validation columns of metrics.csv, built and parsed in one place; the workflow uses them."""

from __future__ import annotations

import re

import pytest

from tbotan import config as cfgmod
from tbotan.errors import InputError
from tbotan.names import (
    GROUP_PATTERN,
    MODEL_ID_PATTERN,
    Group,
    ModelId,
    NameFormatError,
    model_id,
    parse_validation_column,
    validation_column,
    validation_temperatures,
)

MODELS = [
    (("is+ts", 0.01, 0), "is+ts_lg0.01_s0"),
    (("is", 1e-05, 12), "is_lg1e-05_s12"),
    (("ts", 0.0, 3), "ts_lg0_s3"),
    (("is+ts", 1, 7), "is+ts_lg1_s7"),
    (("is", 0.25, 0), "is_lg0.25_s0"),
]


@pytest.mark.parametrize("parts, name", MODELS)
def test_model_ids_round_trip(parts, name):
    model = ModelId(*parts)
    assert model.name == name == model_id(*parts) == cfgmod.model_id(*parts)
    parsed = ModelId.parse(name)
    assert parsed == ModelId(parts[0], float(parts[1]), parts[2])
    assert parsed.name == name
    assert re.fullmatch(MODEL_ID_PATTERN, name)
    assert not re.fullmatch(GROUP_PATTERN, name)


@pytest.mark.parametrize("parts, name", MODELS)
def test_a_group_names_the_seed_ensemble_of_its_models(parts, name):
    variant, lg, seed = parts
    group = Group(variant, lg)
    group_name = name.rsplit("_s", 1)[0]
    assert group.name == group_name
    assert Group.parse(group_name) == group == ModelId.parse(name).group
    assert group.member(seed) == ModelId.parse(name)
    assert group.member(seed).name == name
    assert [m.name for m in map(group.member, (0, 1, 2))] == [
        f"{group_name}_s{s}" for s in (0, 1, 2)
    ]
    assert re.fullmatch(GROUP_PATTERN, group_name)
    assert not re.fullmatch(MODEL_ID_PATTERN, group_name)


def test_groups_equal_by_name():
    assert Group("is", 0.01) == Group("is", 0.010) and Group("is", 1) == Group("is", 1.0)
    assert Group("is", 0.01) != Group("is+ts", 0.01) and Group("is", 0.01) != Group("is", 0.1)
    assert len({Group("is", 0.01), Group("is", 0.010)}) == 1


@pytest.mark.parametrize(
    "name",
    ["gnn_lg0.01_s0", "is+ts_s0", "is+ts_lg0.01", "is+ts_lg0.01_s", "is+ts_lg0.01_sx",
     "is+ts_lg1e-5e_s0", "IS_lg0.01_s0", "is+ts_lg0.01_s0/", ""],
)  # fmt: skip
def test_bad_model_ids_are_refused_by_name(name):
    with pytest.raises(NameFormatError, match=re.escape(repr(name))):
        ModelId.parse(name)
    assert not re.fullmatch(MODEL_ID_PATTERN, name) or "1e-5e" in name  # the regex is lenient
    assert issubclass(NameFormatError, InputError) and issubclass(NameFormatError, ValueError)


def test_bad_group_ids_are_refused():
    for name in ("is+ts", "is+ts_lg0.01_s0", "gnn_lg0.01", "is_lg"):
        with pytest.raises(NameFormatError, match="group id"):
            Group.parse(name)


def test_every_model_of_a_configuration_parses_back():
    config = cfgmod.validate(
        {"training": {"seeds": [0, 1, 2], "ablation_seeds": 1, "lambda_global_sweep": [0, 1e-4]}}
    )
    ids = cfgmod.model_ids(config)
    main = [ModelId.parse(name) for name in ids["main"]]
    assert {m.group for m in main} == {
        Group(config["model"]["variant"], config["training"]["lambda_global"])
    }
    assert [m.seed for m in main] == [0, 1, 2]
    for name in ids["ablation"] + ids["lambda_global"]:
        assert ModelId.parse(name).name == name


def test_validation_columns_round_trip():
    assert validation_column("pearson", "0.44") == "val_pearson_T0.44"
    assert validation_column("loss_mse", "0.80") == "val_loss_mse_T0.80"
    assert validation_column("t_rmse") == "val_t_rmse"
    for quantity in ("pearson", "t_pred", "pearson_edge", "loss_mse", "loss_global"):
        for label in ("0.44", "0.455", "1.00"):
            column = validation_column(quantity, label)
            assert parse_validation_column(column) == (quantity, label)
    for other in ("val_t_rmse", "val_pearson", "val_objective", "loss_mse", "epoch", "lr"):
        assert parse_validation_column(other) is None


def test_validation_temperatures_ascending_and_by_quantity():
    columns = [
        "epoch",
        "val_pearson_T1.00",
        "val_pearson_T0.455",
        "val_t_pred_T0.44",
        "val_pearson_edge_T0.30",
        "val_loss_mse_T0.20",
        "val_t_rmse",
    ]
    assert validation_temperatures(columns, ("pearson", "t_pred")) == ["0.44", "0.455", "1.00"]
    assert validation_temperatures(columns, ("pearson_edge",)) == ["0.30"]
    assert validation_temperatures(columns, ("loss_mse",)) == ["0.20"]


def test_the_trainers_columns_parse_back_to_their_temperatures():
    training = pytest.importorskip("tbotan.learning.training")
    labels = ["0.44", "0.50", "0.455"]
    columns = training.metrics_columns(labels)
    per_t = [c for c in columns if parse_validation_column(c) is not None]
    assert {parse_validation_column(c)[1] for c in per_t} == set(labels)
    assert validation_temperatures(columns, ("pearson",)) == ["0.44", "0.455", "0.50"]
    assert "val_pearson_T0.44" in columns and "val_loss_mse_T0.50" in columns
    assert "val_objective" in columns and "val_t_rmse" in columns


def test_the_workflow_uses_the_one_model_id_format():
    from workflow_helpers import ROOT

    snakefile = (ROOT / "Snakefile").read_text()
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert "model=tbotan_names.MODEL_ID_PATTERN" in snakefile
    assert "_lg" not in snakefile and '"_lg"' not in common and "split(" not in common
    assert "tbotan_names.ModelId.parse(model)" in common
