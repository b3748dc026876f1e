"""The helper scripts under scripts/ on small inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
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


def test_t_head_diagnosis_probes_against_independent_references():
    diag = load_script("t_head_diagnosis")
    # minimum image: a particle across the boundary is 0.2 away, not L - 0.2
    thermal = np.array([[0.1, 0.0, 0.0], [1.0, 1.0, 1.0]])
    inherent = np.array([[9.9, 0.0, 0.0], [1.0, 1.3, 1.4]])
    assert diag.mean_squared_displacement(thermal, inherent, 10.0) == pytest.approx(
        (0.2**2 + 0.3**2 + 0.4**2) / 2
    )
    # a reading pulled halfway toward the mean of T has slope 0.5 against T
    t = np.repeat([0.7, 0.8, 1.0], 4)
    a, b = diag.reading_slope(0.5 * t + 0.5 * t.mean(), t)
    assert b == pytest.approx(0.5) and a == pytest.approx(0.5 * t.mean())
    # leave-one-system-out: a feature exactly linear in T is read exactly by a held-out fit,
    # a feature that is pure noise reads the held-out systems at the others' mean T
    rng = np.random.default_rng(0)
    system = np.tile(np.arange(3), 4)
    exact, ratios = diag.leave_one_system_out(
        (2.0 * t - 1.0)[:, None], t, system, diag.ridge_fit(1e-9)
    )
    assert exact < 1e-6 and all(r == pytest.approx(1.0) for rs in ratios.values() for r in rs)
    noise, _ = diag.leave_one_system_out(rng.normal(size=(12, 1)), t, system, diag.ridge_fit(1e9))
    others_mean = np.array([t[system != s].mean() for s in system])
    assert noise == pytest.approx(np.sqrt(((others_mean - t) ** 2).mean()), rel=1e-6)
