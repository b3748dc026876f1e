"""The helper scripts under scripts/ on small inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_stage_times_sums_snakemake_benchmarks_per_rule(tmp_path, capsys):
    stage_times = load_script("stage_times")
    for rule, job, wall, rss, cpu in [
        ("iso", "T0.80_chunk000", 30.0, 200.5, 29.0),
        ("iso", "T0.80_chunk001", 90.0, 150.0, 60.0),
        ("train", "is_s0", 3600.0, 700.0, 1800.0),
    ]:
        (tmp_path / rule).mkdir(exist_ok=True)
        (tmp_path / rule / f"{job}.tsv").write_text(
            HEADER + f"{wall}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t50\t{cpu}\n"
        )
    stages = stage_times.stage_times(tmp_path)
    assert stages["iso"] == {"jobs": 2, "wall_s": 120.0, "cpu_s": 89.0, "max_rss_mib": 200.5}
    assert stages["train"]["cpu_s"] == 1800.0
    assert stage_times.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith("| iso | 2 | 0.03 | 0.02 | 200 |")  # pipeline order: iso first
    assert table[-1] == "| total | | 1.03 | 0.52 | |"


def test_stage_times_refuses_a_file_that_is_not_a_benchmark(tmp_path):
    stage_times = load_script("stage_times")
    (tmp_path / "iso").mkdir()
    (tmp_path / "iso" / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(SystemExit, match="x.tsv: not a Snakemake benchmark file"):
        stage_times.main([str(tmp_path)])
