"""scripts/peer_botan.py: BOTAN's public code beside tbotan and the ridge baselines.

The run needs a checkout of h3-Open-BDEC/pyg_botan, named by $TBOTAN_PYG_BOTAN (never part of
this repository), and the BOTAN data ($TBOTAN_BOTAN_DATA); without them it is skipped, saying
why.  It trains every model for a few CPU seconds on BOTAN file 1 and tests on file 2 (the
imported dataset files are kept in .botan/peer/ between runs, as the other BOTAN tests keep
theirs in .botan/).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, botan_data_dir

SCRIPT = ROOT / "scripts" / "peer_botan.py"


def load_script():
    spec = importlib.util.spec_from_file_location("peer_botan", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyg_botan_checkout() -> Path:
    env = os.environ.get("TBOTAN_PYG_BOTAN")
    if not env:
        pytest.skip(
            "no pyg_botan checkout: set TBOTAN_PYG_BOTAN to a clone of h3-Open-BDEC/pyg_botan"
        )
    path = Path(env)
    if not (path / "train.py").is_file() or not (path / "initial_model").is_dir():
        pytest.skip(
            f"TBOTAN_PYG_BOTAN={env} is not a pyg_botan checkout (no train.py, initial_model)"
        )
    return path


def test_refuses_a_folder_that_is_not_a_pyg_botan_checkout(tmp_path, capsys):
    script = load_script()
    argv = ["--pyg-botan", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --pyg-botan {tmp_path}: not a pyg_botan checkout (missing ")
    assert "\n" not in err and not (tmp_path / "o").exists()


def test_leave_one_out_adds_the_mean_and_the_worst_fold():
    """The 5-fold table's summary rows, on hand-made fold rows: the mean of each column, and
    the fold with the lowest ρ of the model's own target."""
    script = load_script()
    assert script.splits([1, 2, 3], "holdout") == [([1, 2], 3)]
    assert script.splits([1, 2, 3], "loo") == [([2, 3], 1), ([1, 3], 2), ([1, 2], 3)]
    rows = [
        script.row("s", k, "tbotan", target, 1.0, 3, {"rho_propensity": p, "rho_cb": c})
        for k, (p, c) in enumerate([(0.5, -0.4), (0.3, -0.6), (0.4, -0.2)], 1)
        for target in ("propensity", "C_B")
    ]
    summary = script.summary_rows(rows)
    by = {(r["target"], r["split"].split()[0]): r for r in summary}
    assert by[("propensity", "mean")]["rho_propensity"] == pytest.approx(0.4)
    assert by[("propensity", "mean")]["rho_cb"] == pytest.approx(-0.4)
    assert by[("propensity", "worst")]["test"] == 2  # lowest ρ(propensity)
    assert by[("C_B", "worst")]["test"] == 2  # lowest ρ(C_B): −0.6
    assert by[("C_B", "mean")]["split"] == "mean of 3 folds"
    table = script.markdown(rows + summary).splitlines()
    assert len(table) == 2 + 6 + 4
    assert table[-1].endswith("| +0.300 | -0.600 |") and "| worst of 3 folds | 2 |" in table[-1]


def test_runs_every_model_and_writes_every_column(tmp_path):
    checkout = pyg_botan_checkout()
    data = botan_data_dir()
    if data is None:
        pytest.skip("BOTAN data not found: set TBOTAN_BOTAN_DATA")
    script = load_script()
    out = tmp_path / "peer"
    command = [sys.executable, str(SCRIPT), "--pyg-botan", str(checkout), "--data", str(data)]
    command += ["--out", str(out), "--budget", "3", "--files", "1", "2"]
    command += ["--datasets", str(ROOT / ".botan" / "peer")]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads((out / "peer_botan.json").read_text())
    assert result["columns"] == list(script.COLUMNS)
    models = [(r["model"], r["target"]) for r in result["rows"]]
    assert models == [
        ("pyg_botan", "propensity + edges (p = 0.4)"),
        ("tbotan", "propensity"),
        ("tbotan", "C_B"),
        ("ridge", "propensity"),
        ("ridge", "C_B"),
    ]
    for r in result["rows"]:
        assert set(r) == set(script.COLUMNS)
        assert r["split"] == "train 1 / test 2" and r["test"] == 2
        for key in ("rho_propensity", "rho_cb"):
            assert math.isfinite(r[key]) and -1 <= r[key] <= 1
        if r["model"] != "ridge":
            assert r["epochs"] >= 1 and r["cpu_s"] >= 1.0
    details = result["details"]["test2"]
    # pyg_botan computed its node target itself: the same propensity as ours, particle by particle
    assert details["pyg_botan_target_vs_ours_max_abs"] < 1e-4
    assert details["pyg_botan_steps"] >= 1
    table = (out / "peer_botan.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| split"))
    assert header == "| " + " | ".join(script.HEADER[c] for c in script.COLUMNS) + " |"
    assert sum(line.startswith("| train 1 / test 2 |") for line in table.splitlines()) == 5
    assert list((out / "test2" / "pyg_botan").glob("loss_p0.40_T0.44_tc7_1.dat"))
