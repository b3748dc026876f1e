"""``tbotan benchmark train``: the configuration's model and training, timed (steps, an epoch,
and epochs per mini-batch size)."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import ROOT
from tbotan import cli
from tbotan import config as cfgmod
from tbotan.checks import benchmark
from tbotan.checks.benchmark import (
    benchmark_config,
    benchmark_train,
    benchmark_train_batches,
    format_train,
    format_train_batches,
)
from tbotan.learning.model import TBotan, count_parameters

SMALL = {
    "system": {"n_particles": 250},
    "model": {"hidden": 16, "message_passing_steps": 1},
    "training": {"corr_distances": [1.0, 2.0, 2.5]},  # ≤ L/2 at N = 250
}


def quiet(*_):
    pass


def small_config(**model) -> dict:
    return cfgmod.validate(cfgmod.merge(SMALL, {"model": model}))


def test_benchmark_config_is_the_configuration_with_what_a_benchmark_varies():
    config = cfgmod.validate(
        {
            "model": {"hidden": 16, "mlp_layers": 1, "variant": "is"},
            "training": {
                "epochs": 10,
                "warmup_epochs": 5,
                "learning_rate": 3e-4,
                "corr_block_rows": 256,
                "compile": True,
            },
        }
    )
    out = benchmark_config(config, device="cpu", amp=True, batch_size=4, box_length=6.0)
    assert out["model"] == config["model"]
    t = out["training"]
    assert t["device"] == "cpu" and t["amp"] is True and t["batch_size"] == 4
    assert t["compile"] is True  # not given: the configuration's
    assert t["learning_rate"] == 3e-4 and t["corr_block_rows"] == 256 and t["epochs"] == 10
    assert t["warmup_epochs"] == 0  # every loss term active
    assert t["corr_distances"] == pytest.approx([1.0, 2.0, 3.0])  # 2, 4, 6 scaled to L/2 = 3
    # no configuration: the schema's defaults, which the repository's config.yaml restates
    default = benchmark_config(None)
    repo = benchmark_config(cfgmod.load(ROOT / "config.yaml", check_engine=False))
    assert default["model"] == repo["model"] and default["training"] == repo["training"]
    assert default["model"]["hidden"] == 64 and default["model"]["message_passing_steps"] == 7


def test_training_benchmark_times_the_configured_model():
    config = small_config()
    result = benchmark_train(
        config, steps=2, warmup=1, device="cpu", epoch_configurations=2, progress=quiet
    )
    w = result["workload"]
    assert w["n_particles"] == 250  # system.n_particles
    assert w["hidden"] == 16 and w["message_passing_steps"] == 1 and w["variant"] == "is+ts"
    assert w["parameters"] == count_parameters(TBotan.from_config(config))
    assert w["corr_distances"] == [1.0, 2.0, 2.5] and w["compile"] is False
    step = result["step"]
    assert step["seconds"] > 0 and step["corr_seconds"] > 0
    # a ratio of two timings (< 1 on a quiet machine; not asserted: load can invert it)
    assert step["corr_fraction"] == pytest.approx(step["corr_seconds"] / step["seconds"])
    assert result["epoch"]["seconds"] > 0 and result["memory"]["peak_bytes"] > 0
    assert result["reference"]["step_seconds"] > 0
    assert "H = 16, 1 steps" in format_train(result)


def test_training_benchmark_times_bf16_beside_float32(monkeypatch):
    """With bf16 on (native here or not: autocast is forced on), the float32 step is timed
    interleaved with it and the speed-up reported; without, no float32 entry."""
    monkeypatch.setattr("tbotan.learning.training.native_bf16", lambda device: True)
    result = benchmark_train(
        small_config(),
        amp=True,
        steps=2,
        warmup=1,
        device="cpu",
        epoch_configurations=2,
        reference=False,
        progress=quiet,
    )
    step = result["step"]
    assert result["workload"]["amp_bf16"] is True
    assert step["float32_seconds"] > 0
    assert step["speedup_over_float32"] == pytest.approx(step["float32_seconds"] / step["seconds"])
    assert "the same step in float32 (interleaved)" in format_train(result)
    plain = benchmark_train(
        small_config(),
        steps=1,
        warmup=1,
        device="cpu",
        epoch_configurations=2,
        reference=False,
        progress=quiet,
    )
    assert "float32_seconds" not in plain["step"]


def test_train_batch_benchmark_counts_steps_and_configurations():
    config = small_config(hidden=8)
    result = benchmark_train_batches(
        config, batch_sizes=(1, 2), configurations=3, rounds=1, device="cpu", progress=quiet
    )
    w = result["workload"]
    assert w["n_particles"] == 250 and w["hidden"] == 8
    assert w["parameters"] == count_parameters(TBotan.from_config(config))
    rows = {r["batch_size"]: r for r in result["batches"]}
    assert rows[1]["optimizer_steps"] == 3 and rows[2]["optimizer_steps"] == 2  # ceil(3 / 2)
    for r in rows.values():
        assert r["epoch_seconds"] > 0
        assert r["configurations_per_second"] == pytest.approx(3 / r["epoch_seconds"])
        assert r["steps_per_second"] == pytest.approx(r["optimizer_steps"] / r["epoch_seconds"])
    assert rows[1]["configurations_per_second_vs_first"] == 1.0
    text = format_train_batches(result)
    assert "configs/s" in text and len(text.splitlines()) == 4


@pytest.fixture
def recorded(monkeypatch):
    """The arguments ``tbotan benchmark train`` passes on (nothing is timed)."""
    seen = {}

    def record(name):
        def fake(config, **kwargs):
            seen.clear()
            seen.update(kwargs, function=name, config=config)
            return {"benchmark": name}

        return fake

    monkeypatch.setattr(benchmark, "benchmark_train", record("train"))
    monkeypatch.setattr(benchmark, "benchmark_train_batches", record("batches"))
    monkeypatch.setattr(benchmark, "format_train", lambda result: "report")
    monkeypatch.setattr(benchmark, "format_train_batches", lambda result: "report")
    return seen


def test_cli_times_the_configuration_given(tmp_path, recorded, capsys):
    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump({"model": {"hidden": 16}, "training": {"compile": True}}))
    out = tmp_path / "train.json"
    argv = ["benchmark", "train", "--output", str(out)]
    assert cli.main([*argv, "--config", str(overlay), "--n-particles", "250"]) == 0
    assert recorded["function"] == "train" and json.loads(out.read_text())["benchmark"] == "train"
    assert recorded["config"]["model"]["hidden"] == 16
    assert recorded["config"]["training"]["compile"] is True
    # what the command line leaves open comes from the configuration
    assert recorded["n_particles"] == 250 and recorded["device"] is None
    assert recorded["compile"] is None and recorded["amp"] is None
    # --configfile, --no-compile; the batch-size benchmark takes the same configuration
    more = ["--configfile", str(overlay), "--no-compile", "--batch-sizes", "1", "4"]
    assert cli.main([*argv, *more]) == 0
    assert recorded["function"] == "batches" and recorded["batch_sizes"] == (1, 4)
    assert recorded["config"]["model"]["hidden"] == 16 and recorded["compile"] is False
    # without --config: the schema's defaults
    assert cli.main([*argv, "--device", "cpu", "--amp"]) == 0
    assert recorded["config"] == cfgmod.validate({}, check_engine=False)
    assert recorded["device"] == "cpu" and recorded["amp"] is True


def test_cli_former_model_options_still_work_with_a_note(tmp_path, recorded, capsys):
    argv = ["benchmark", "train", "--output", str(tmp_path / "t.json")]
    argv += ["--hidden", "12", "--message-passing-steps", "3", "--variant", "is"]
    assert cli.main([*argv, "--corr-block-rows", "64"]) == 0
    model, training = recorded["config"]["model"], recorded["config"]["training"]
    assert model["hidden"] == 12 and model["message_passing_steps"] == 3
    assert model["variant"] == "is" and training["corr_block_rows"] == 64
    err = capsys.readouterr().err
    assert "--hidden is deprecated" in err and "model.hidden in a --config file" in err
    assert "--corr-block-rows is deprecated" in err


def test_cli_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--config YAML [YAML ...], --configfile YAML [YAML ...]" in text
    assert "timed steps (interleaved) (default: 10)" in text
    assert "default: training.compile" in text and "default: system.n_particles" in text
    assert "--hidden" not in text  # deprecated: the configuration's model.hidden
