"""``tbotan benchmark train --batch-sizes``: training throughput per mini-batch size."""

from __future__ import annotations

import pytest

from tbotan.checks.benchmark import benchmark_train_batches, format_train_batches


def test_train_batch_benchmark_counts_steps_and_configurations():
    result = benchmark_train_batches(
        n_particles=250,
        batch_sizes=(1, 2),
        configurations=3,
        rounds=1,
        device="cpu",
        hidden=8,
        message_passing_steps=1,
        progress=lambda *_: None,
    )
    rows = {r["batch_size"]: r for r in result["batches"]}
    assert rows[1]["optimizer_steps"] == 3 and rows[2]["optimizer_steps"] == 2  # ceil(3 / 2)
    for r in rows.values():
        assert r["epoch_seconds"] > 0
        assert r["configurations_per_second"] == pytest.approx(3 / r["epoch_seconds"])
        assert r["steps_per_second"] == pytest.approx(r["optimizer_steps"] / r["epoch_seconds"])
    assert rows[1]["configurations_per_second_vs_first"] == 1.0
    text = format_train_batches(result)
    assert "configs/s" in text and len(text.splitlines()) == 4
