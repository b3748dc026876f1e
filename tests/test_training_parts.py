"""The parts of a training, each on its own: the graph feeder (caches on the host and the
device, the loader), the training checkpoint (round trip, compatibility, exact RNG restore),
the global-head refit, the model's pooled states, and the resumable loop shared with the MD
segment runner (with the MD checkpoint folder's own check)."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

from learning_helpers import small_config, write_synthetic
from tbotan.formats.model_file import write_metrics
from tbotan.learning import graphs as graphs_module
from tbotan.learning.checkpoint import (
    TrainingCheckpoint,
    TrainingProgress,
    resumable_keys,
)
from tbotan.learning.feeder import GraphFeeder, resolve_cache_mode
from tbotan.learning.global_refit import pooled_vectors, refit_global
from tbotan.learning.graphs import GraphDataset
from tbotan.learning.model import TBotan

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("parts")
    return [
        write_synthetic(d / "T0.50.h5", seeds=(0, 1), temperature=0.5),
        write_synthetic(d / "T0.80.h5", seeds=(2,), temperature=0.8),
    ]


def counting_builds(monkeypatch) -> list:
    """Record every graph built from a dataset file."""
    builds = []
    original = graphs_module.graph_from_dataset

    def counted(dataset, c, variant, node_target="cb"):
        builds.append((dataset.path.name, c))
        return original(dataset, c, variant, node_target)

    monkeypatch.setattr(graphs_module, "graph_from_dataset", counted)
    return builds


def same_graph(a, b) -> bool:
    return all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("x", "edge_index", "edge_attr", "y")
    )


# ---------------------------------------------------------------------------- the feeder


def test_cache_mode_auto_is_the_device_on_cuda_and_the_host_on_the_cpu():
    assert resolve_cache_mode("auto", torch.device("cuda")) == "device"
    assert resolve_cache_mode("auto", CPU) == "host"
    assert resolve_cache_mode("none", torch.device("cuda")) == "none"
    with pytest.raises(ValueError, match="cache must be one of"):
        GraphFeeder(None, CPU, "auto")


def test_host_cache_builds_each_graph_once_and_none_builds_at_every_visit(two_files, monkeypatch):
    builds = counting_builds(monkeypatch)
    cached = GraphFeeder(GraphDataset(two_files, "is+ts"), CPU, "host")
    first = [cached.sample(i) for i in range(len(cached))]
    again = list(cached.feed([2, 0, 1]))
    assert len(builds) == 3 and cached.cached() == (3, 0)
    assert again[0] is first[2] and again[1] is first[0]  # on the CPU: the cached graphs

    plain = GraphFeeder(GraphDataset(two_files, "is+ts"), CPU, "none")
    fresh = list(plain.feed([2, 0, 1]))
    assert len(builds) == 6 and plain.cached() == (0, 0)
    assert all(same_graph(a, b) for a, b in zip(fresh, again, strict=True))
    assert fresh[0] is not plain.sample(2)  # built again


def test_device_cache_keeps_moved_copies_and_leaves_the_host_graphs(two_files):
    feeder = GraphFeeder(GraphDataset(two_files, "ts"), torch.device("meta"), "device")
    on_device = feeder.sample(1)
    assert on_device.x.device.type == "meta" and feeder.sample(1) is on_device
    assert feeder[1].x.device == CPU  # the host graph was copied, not moved in place
    assert feeder.cached() == (1, 1)


def test_loader_workers_feed_the_same_graphs_in_the_same_order(two_files):
    dataset = GraphDataset(two_files, "is+ts")
    order = np.array([1, 2, 0])
    with_workers = list(GraphFeeder(dataset, CPU, "none", num_workers=1).feed(order))
    in_process = [dataset[int(i)] for i in order]
    assert all(same_graph(a, b) for a, b in zip(with_workers, in_process, strict=True))


# ---------------------------------------------------------------------------- the checkpoint


def small_training(seed=0):
    torch.manual_seed(seed)
    model = TBotan(hidden=8, message_passing_steps=2, edge_features=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # an optimiser with state
        optimizer.zero_grad()
        sum(p.square().sum() for p in model.parameters()).backward()
        optimizer.step()
    return model, optimizer


def identity(config, **changes):
    base = {
        "model_id": "is+ts_lg0.01_s0",
        "variant": "is+ts",
        "lambda_global": 0.01,
        "seed": 0,
        "config": config,
        "hparams": {"hidden": 8},
        "train_files": ["/a.h5"],
        "validation_files": [],
    }
    return {**base, **changes}


def test_checkpoint_round_trip_restores_states_progress_and_rng(tmp_path):
    config = small_config()
    model, optimizer = small_training()
    progress = TrainingProgress(epoch=3, elapsed_s=1.5, metrics=[{"epoch": e} for e in (1, 2, 3)])
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoint.pt", identity(config), set())
    assert checkpoint.read() is None  # none yet
    random.seed(1), np.random.seed(2), torch.manual_seed(3)  # noqa: NPY002
    checkpoint.save(progress, model, optimizer)
    expected = (random.random(), np.random.random(), torch.rand(1))  # noqa: NPY002

    other, other_optimizer = small_training(seed=5)
    saved = checkpoint.read()
    assert checkpoint.problem(saved) is None
    restored = checkpoint.restore(saved, other, other_optimizer)
    assert restored == progress
    assert (random.random(), np.random.random()) == expected[:2]  # noqa: NPY002
    assert torch.equal(torch.rand(1), expected[2])
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    a, b = optimizer.state_dict()["state"], other_optimizer.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)


def test_checkpoint_says_why_another_training_cannot_resume(tmp_path):
    config = small_config(lr_schedule="constant")
    model, optimizer = small_training()
    path = tmp_path / "checkpoint.pt"
    TrainingCheckpoint(path, identity(config), set()).save(TrainingProgress(), model, optimizer)
    saved = TrainingCheckpoint(path, identity(config), set()).read()

    def problem(new_identity, training):
        return TrainingCheckpoint(path, new_identity, resumable_keys(training)).problem(saved)

    assert "seed differs (checkpoint 0, now 1)" in problem(
        identity(config, seed=1), config["training"]
    )
    changed = small_config(lr_schedule="constant", learning_rate=5e-4)
    assert "training.learning_rate (0.001 → 0.0005)" in problem(
        identity(changed), changed["training"]
    )
    longer = small_config(lr_schedule="constant", epochs=9, cache_graphs="none")
    assert problem(identity(longer), longer["training"]) is None  # resumable keys
    cosine = small_config(lr_schedule="cosine")
    TrainingCheckpoint(path, identity(cosine), set()).save(TrainingProgress(), model, optimizer)
    saved = TrainingCheckpoint(path, identity(cosine), set()).read()
    longer = small_config(lr_schedule="cosine", epochs=9)
    assert "training.epochs (4 → 9)" in problem(identity(longer), longer["training"])
    incomplete = {k: v for k, v in saved.items() if k != "optimizer"}
    why = TrainingCheckpoint(path, identity(cosine), set()).problem(incomplete)
    assert "not a complete checkpoint (no ['optimizer'])" in why


def test_checkpoint_without_history_takes_it_from_the_metrics_files(tmp_path):
    config = small_config()
    model, optimizer = small_training()
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoint.pt", identity(config), set())
    checkpoint.save(TrainingProgress(epoch=2, elapsed_s=1.0), model, optimizer)
    saved = checkpoint.read()
    del saved["metrics"]  # as written before the history lived in the checkpoint
    columns = ["epoch", "loss"]
    write_metrics(tmp_path / "live.csv", columns, [])
    write_metrics(tmp_path / "m.csv", columns, [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)])
    files = (tmp_path / "live.csv", tmp_path / "m.csv")
    restored = checkpoint.restore(saved, model, optimizer, files)
    assert [row["epoch"] for row in restored.metrics] == [1, 2]  # not beyond the checkpoint


# ---------------------------------------------------------------------------- pooled states, refit


def test_pooled_states_are_what_the_global_head_reads(two_files):
    feeder = GraphFeeder(GraphDataset(two_files, "is+ts"), CPU, "host")
    model = TBotan.from_config(small_config(), "is+ts").eval()
    a, b = feeder[0], feeder[2]
    with torch.no_grad():
        pooled = model.pooled_states(a.x, a.edge_index, a.edge_attr)
        assert pooled.shape == (model.steps, 1, model.hparams["hidden"])
        out = model(a.x, a.edge_index, a.edge_attr)
        assert torch.equal(model.global_head(pooled)[0], out.t_pred)
        # batched: graph by graph the same vectors (per-graph pooling)
        x = torch.cat([a.x, b.x])
        edges = torch.cat([a.edge_index, b.edge_index + a.num_nodes], dim=1)
        attrs = torch.cat([a.edge_attr, b.edge_attr])
        batch = torch.cat([torch.zeros(a.num_nodes), torch.ones(b.num_nodes)]).long()
        both = model.pooled_states(x, edges, attrs, batch)
        alone = model.pooled_states(b.x, b.edge_index, b.edge_attr)
    assert both.shape[1] == 2
    torch.testing.assert_close(both[:, :1], pooled, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both[:, 1:], alone, rtol=1e-5, atol=1e-6)


def test_refit_fits_the_global_head_alone_and_zero_steps_change_nothing(two_files):
    feeder = GraphFeeder(GraphDataset(two_files, "is+ts"), CPU, "host")
    torch.manual_seed(0)
    model = TBotan.from_config(small_config(), "is+ts")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    same, record = refit_global(model, weights, feeder, None, 0, 1e-2)
    assert same is weights and record == {}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())

    refitted, record = refit_global(model, weights, feeder, None, 200, 1e-2)
    assert record["selected_on"] == "training" and record["steps"] == 200
    assert record["t_rmse_after"] < 0.5 * record["t_rmse_before"], record
    head = ("global_mlp.", "global_decoder.", "pool_mean", "pool_var")
    for k, v in weights.items():
        if not k.startswith(head):
            assert torch.equal(refitted[k], v), k  # the trunk and the other heads are frozen
    assert any(not torch.equal(refitted[k], weights[k]) for k in weights if k.startswith(head))
    # the model holds the refitted weights, and its T_pred is the recorded RMSE's
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in refitted.items())
    model.eval()
    pooled, t = pooled_vectors(model, feeder)
    with torch.no_grad():
        preds = torch.stack(
            [model(d.x, d.edge_index, d.edge_attr).t_pred for d in feeder.feed([0, 1, 2])]
        )
    assert float((preds - t).square().mean().sqrt()) == pytest.approx(record["t_rmse_after"])
    torch.testing.assert_close(model.global_head(pooled).detach(), preds)


def test_save_model_writes_the_given_weights_and_leaves_the_model(two_files, tmp_path):
    from tbotan.formats.model_file import MODEL_FORMAT, load_file
    from tbotan.learning.training import Trainer

    config = small_config(global_refit_epochs=50)
    trainer = Trainer(config, two_files, [], tmp_path / "m")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    chosen = {k: torch.zeros_like(v) for k, v in before.items()}
    path = trainer.save_model(chosen, 3, {"steps": 0})
    saved = load_file(path, MODEL_FORMAT)
    assert saved["epoch"] == 3 and saved["global_refit"] == {"steps": 0}
    assert all(torch.equal(saved["state_dict"][k], chosen[k]) for k in chosen)
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in before.items())


# ---------------------------------------------------------------------------- resumable loops


def test_resumable_loop_checkpoints_on_schedule_interval_and_signal():
    from tbotan.resumable import ResumableLoop, set_checkpoint_interval

    previous = signal.getsignal(signal.SIGTERM)
    with ResumableLoop() as loop:
        assert not loop.boundary(False) and loop.boundary(True) and loop.stop is None
        set_checkpoint_interval(1e-9)
        try:
            assert loop.boundary(False)
            loop.checkpointed()
        finally:
            set_checkpoint_interval(None)
        assert not loop.boundary(False)
        os.kill(os.getpid(), signal.SIGTERM)
        assert loop.boundary(False) and loop.stop == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == previous
    error = loop.interrupted("run", " after step 2")
    assert str(error) == "run: stopped by SIGTERM after step 2"
    assert error.exit_code == 128 + signal.SIGTERM


def test_md_checkpoint_folder_says_what_is_wrong_with_it(tmp_path):
    from tbotan.md.checkpoint import Checkpointer
    from tbotan.physics.configurations import random_configuration

    folder = tmp_path / "run.ckpt"
    assert Checkpointer.problem(folder) is None  # absent: nothing to resume
    Checkpointer(folder, "abc").save(2, random_configuration(64, seed=0), {"x": 1})
    assert Checkpointer.problem(folder) is None
    current = folder / (folder / "latest").read_text()
    (current / "record.json").write_text("{not json")
    assert "record.json is damaged" in Checkpointer.problem(folder)
    (current / "record.json").write_text('{"fingerprint": "abc", "index": -1, "record": {}}')
    assert "no fingerprint, index and record" in Checkpointer.problem(folder)
    (current / "record.json").write_text('{"fingerprint": "abc", "index": 2, "record": {}}')
    (current / "state.gsd").write_bytes(b"truncated")
    assert Checkpointer.problem(folder).startswith(f"checkpoint {current}:")
    (folder / "latest").write_text("../elsewhere")
    assert "which is not a checkpoint here" in Checkpointer.problem(folder)
    Checkpointer.remove(folder)
    assert not folder.exists()
    Checkpointer.remove(folder)  # nothing to remove: no error
