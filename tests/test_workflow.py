"""The Snakemake workflow: DAG of the paper, configuration errors, the smoke pipeline end to end."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import numpy as np
import pytest
import yaml

from tbotan import config as cfg
from workflow_helpers import ROOT, SMOKE_ARGS, snakemake

pytest.importorskip(
    "snakemake", reason="the workflow extra is not installed (pip install .[workflow])"
)


def job_counts(*args) -> dict[str, int]:
    out = snakemake("--dry-run", "--quiet", "rules", *args).stdout
    counts = {}
    for line in out.splitlines():
        m = re.match(r"^([a-z_]+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_demo_configuration_is_valid_for_its_box():
    """The demo overlay passes the schema, its L_Corr distances fit its box (d ≤ L/2) and its
    labels are defined (bond thresholds, a label time beyond τα)."""
    from tbotan.physics import kalj

    config = cfg.load([ROOT / "config.yaml", ROOT / "config" / "demo.yaml"])
    box = kalj.box_length(config["system"]["n_particles"], config["system"]["density"])
    assert max(config["training"]["corr_distances"]) <= box / 2
    assert config["iso"]["bond_in"] < config["iso"]["bond_out"] < box / 2
    assert config["graph"]["cutoff"] < box / 2
    assert config["iso"]["label_time_tau_alpha"] >= 1.0
    trained = [e for e in config["temperatures"] if e["train"]]
    untrained = [e["T"] for e in config["temperatures"] if not e["train"]]
    t_lo, t_hi = min(e["T"] for e in trained), max(e["T"] for e in trained)
    assert len([t for t in untrained if t_lo < t < t_hi]) >= 2  # interpolation between trained
    assert max(e["T"] for e in config["temperatures"]) <= 1.0  # at and below the onset


def test_paper_dag_has_the_right_jobs_per_rule(tmp_path):
    counts = job_counts("--config", f"results_dir={tmp_path}")
    # hand-computed from the paper protocol: 6 temperatures (4 trained, 2 untrained);
    # trained: 100 + 10 + 50 configurations in chunks of 4 -> 40 iso jobs, 3 dataset splits;
    # untrained: 50 test configurations -> 13 iso jobs, 1 split; models: 5 seeds of IS+TS,
    # IS and TS ablations (1 seed each), lambda_g 0.001 and 0.1 (1 seed each) = 9 models,
    # each predicting the test sets of all 6 temperatures in one job.
    assert counts == {
        "equilibrate": 6,
        "tau_alpha": 6,
        "quench": 6,
        "iso": 4 * 40 + 2 * 13,
        "dataset": 4 * 3 + 2,
        "train": 9,
        "predict": 9,
        "figures": 1,
        "all": 1,
    }


@pytest.mark.parametrize("overlays", [["reduced.yaml"], ["reduced.yaml", "cpu-lammps.yaml"]])
def test_reduced_study_dag_has_the_right_jobs_per_rule(tmp_path, overlays):
    """config/reduced.yaml meets the reduced reproduction's specification and dry-runs to the
    jobs it implies, with or without the CPU (LAMMPS) overlay."""
    from tbotan.physics import kalj

    files = [ROOT / "config.yaml", *(ROOT / "config" / o for o in overlays)]
    config = cfg.load(files)
    trained = [e["T"] for e in config["temperatures"] if e["train"]]
    untrained = [e["T"] for e in config["temperatures"] if not e["train"]]
    assert config["system"]["n_particles"] >= 1000
    assert len(trained) == 4 and len(untrained) == 2
    assert all(min(trained) < t < max(trained) for t in untrained)
    assert max(trained + untrained) <= 1.0  # supercooled: at and below the onset
    assert config["iso"]["n_replicas"] >= 16 and config["dataset"]["n_train"] >= 30
    assert set(config["training"]["ablations"]) == {"is", "ts"}
    box = kalj.box_length(config["system"]["n_particles"], config["system"]["density"])
    assert max(config["training"]["corr_distances"]) <= box / 2
    # hand-computed: trained 30 + 4 + 6 = 40 configurations in chunks of 4 -> 10 iso jobs and
    # 3 dataset splits each; untrained 6 test configurations -> 2 iso jobs, 1 split; models:
    # IS+TS (three seeds, the ensemble), the IS and TS ablations (seed 0), no extra lambda_g (the
    # sweep is the main one)
    counts = job_counts("--configfile", *files, "--config", f"results_dir={tmp_path}")
    assert counts == {
        "equilibrate": 6,
        "tau_alpha": 6,
        "quench": 6,
        "iso": 4 * 10 + 2 * 2,
        "dataset": 4 * 3 + 2,
        "train": 3 + 2,
        "predict": 3 + 2,
        "figures": 1,
        "all": 1,
    }
    assert config["training"]["seeds"] == [0, 1, 2]


def test_usable_as_a_module_from_another_folder(tmp_path):
    """A user's own Snakefile in another folder imports the workflow as a module (what
    snakedeploy deploy-workflow writes): the dry run builds the whole DAG under the prefix, with
    the schema, environments and package found next to the workflow, outputs in the user's
    folder."""
    (tmp_path / "Snakefile").write_text(
        f"""
configfile: {str(ROOT / "config.yaml")!r}


module tbotan:
    snakefile:
        {str(ROOT / "Snakefile")!r}
    config:
        config


use rule * from tbotan as tbotan_*
"""
    )
    (tmp_path / "overlay.yaml").write_text("results_dir: results\n")
    proc = snakemake(
        "--dry-run", "--printshellcmds", "--configfile", ROOT / "config.yaml",
        ROOT / "config" / "smoke.yaml", tmp_path / "overlay.yaml", cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout
    counts = dict(re.findall(r"^(tbotan_[a-z_]+)\s+(\d+)$", out, flags=re.M))
    assert counts["tbotan_equilibrate"] == "2" and counts["tbotan_figures"] == "1", out[-3000:]
    assert f"PYTHONPATH={ROOT / 'src'}" in out  # the package next to the module's Snakefile
    assert "results/smoke/equilibrium/T1.20.gsd" in out
    assert (tmp_path / "results" / "smoke" / "config.yaml").is_file()  # the user's folder


def test_dag_follows_the_configuration(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "iso": {"configurations_per_chunk": 10},
                "training": {"seeds": [0, 1], "ablations": [], "lambda_global_sweep": []},
                "tau_alpha": {"source": "measured"},
            }
        )
    )
    counts = job_counts(
        "--configfile", "config.yaml", overlay, "--config", f"results_dir={tmp_path}"
    )
    assert counts["iso"] == 4 * 16 + 2 * 5
    assert counts["train"] == 2 and counts["predict"] == 2


def dry_run_with_overlay(tmp_path, overlay: dict):
    """A dry run of config.yaml with ``overlay`` on top (not checked: callers expect failure)."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return snakemake(
        "--dry-run", "--configfile", "config.yaml", path,
        "--config", f"results_dir={tmp_path}", check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "overlay, key",
    [
        ({"iso": {"n_replicas": 0}}, "iso.n_replicas"),
        ({"bogus_key": 1}, "bogus_key"),
        ({"temperatures": [{"T": -0.5, "tau_alpha": 1.0}]}, "temperatures.0.T"),
        ({"temperatures": [{"T": 0.44, "tau_alpha": 4120}, {"T": 0.5}]}, "temperatures[1]"),
        ({"engine": {"devise": "cpu"}}, "devise"),
    ],
)
def test_invalid_configuration_is_rejected_before_any_job(tmp_path, overlay, key):
    proc = dry_run_with_overlay(tmp_path, overlay)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert key in text, text[-2000:]
    assert not list(tmp_path.glob("*/equilibrium"))


def test_engine_hoomd_without_hoomd_is_rejected(tmp_path):
    from tbotan.md import hoomd_available

    if hoomd_available():
        pytest.skip("HOOMD-blue is installed here")
    proc = dry_run_with_overlay(tmp_path, {"engine": {"name": "hoomd"}})
    assert proc.returncode != 0
    assert "engine.name" in proc.stdout + proc.stderr and "--sdm conda" in proc.stdout + proc.stderr


def shell_commands(out: str) -> list[str]:
    return [
        line.removeprefix("Shell command: ")
        for line in out.splitlines()
        if line.startswith("Shell command: ") and line != "Shell command: None"
    ]


def test_results_dir_with_a_space_is_quoted_in_every_command(tmp_path):
    results = tmp_path / "with space"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"tau_alpha": {"source": "measured"}}))  # --tau-alpha-json
    out = snakemake(
        "--dry-run", "--printshellcmds", *SMOKE_ARGS, overlay, "--config", f"results_dir={results}"
    ).stdout
    commands = shell_commands(out)
    stages = {"equilibrate", "tau-alpha", "quench", "iso", "dataset", "train", "predict", "figures"}
    # every command: the stage, with INFO messages for the log and the one --output spelling
    calls = [c.split(" -m tbotan --log-level info ")[1].split() for c in commands]
    assert {call[0] for call in calls} >= stages
    assert all("--out" not in call and "--output" in call for call in calls)
    for command in commands:
        words = shlex.split(command)  # the shell's reading of it
        paths = [w for w in words if w.startswith(str(results))]
        assert paths, command
        run = f"{results}/smoke"
        assert all(w == run or w.startswith(run + "/") for w in paths), command
        assert not any(w.startswith("space/") for w in words), command
    assert any(
        w == f"{results}/smoke/tau_alpha/T1.20.json" for c in commands for w in shlex.split(c)
    )


@pytest.mark.parametrize("name, bad", [("runs;echo hi", ";"), ("a\nb", "\\n")])
def test_unsafe_results_dir_is_refused_in_one_line(tmp_path, name, bad):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"results_dir": str(tmp_path / name)}))
    proc = snakemake("--dry-run", *SMOKE_ARGS, overlay, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in text, text[-2000:]
    [line] = [line for line in text.splitlines() if line.startswith("results_dir ")]
    assert f"contains '{bad}'" in line and "use only letters" in line, line
    assert not list(tmp_path.glob("**/config.yaml"))  # refused before the run folder is made


@pytest.mark.slow
def test_smoke_pipeline_produces_every_figure_and_the_report(smoke_run, tmp_path):
    run, args = smoke_run
    figures = {p.stem for p in (run / "analysis" / "figures").glob("*.png")}
    expected = {
        "fig02_cb_maps",
        "fig03_sb",
        "fig04_t_pred",
        "fig05_embedding_distance",
        "fig06_loss",
        "fig07_pearson",
        "fig10_t_pred_distribution",
        "fig11_sb_lambda",
        "fig12_t_pred_lambda",
        "fig13_cb_maps_ablation",
        "fig14_sb_ablation",
        "fig15_t_pred_ablation",
    }
    assert expected <= figures, sorted(expected - figures)
    assert (run / "analysis" / "summary.json").stat().st_size > 100
    # every network number comes with its baselines, measured on the same split
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    assert summary["baselines"]["cb"]["fit_split"] == "train"
    for entry in summary["temperatures"]:
        assert np.isfinite(entry["baseline_pearson_cb"]["mean"]), entry
        assert np.isfinite(entry["baseline_t_pred"]["mean"]), entry
    report = tmp_path / "report.html"
    snakemake(*args, "--report", report)
    assert report.stat().st_size > 10_000


@pytest.mark.slow
def test_rerunning_the_smoke_pipeline_does_nothing(smoke_run):
    _, args = smoke_run
    out = snakemake(*args, "--dry-run").stdout
    assert "Nothing to be done" in out


@pytest.mark.slow
def test_deleting_an_intermediate_reruns_only_what_depends_on_it(smoke_run):
    run, args = smoke_run
    target = run / "datasets" / "T1.50_test.h5"
    backup = target.with_name("backup.h5")
    shutil.copy2(target, backup)
    target.unlink()
    counts = job_counts(*args)
    # the untrained temperature's test file feeds predictions of every model and the figures
    assert counts == {"dataset": 1, "predict": 4, "figures": 1, "all": 1}
    shutil.move(backup, target)


@pytest.mark.parametrize("device", ["cpu", "cuda", "auto"])
def test_gpu_resource_follows_the_configured_device(tmp_path, device):
    """A job claims the resource gpu only where it can use one: never on `cpu`, always on
    `cuda`, and on `auto` only where the machine shows a GPU (a local run; a cluster executor
    requests one), so a CPU-only workstation runs `auto` jobs side by side."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump({"engine": {"device": device}, "training": {"device": device}})
    )
    out = snakemake("--dry-run", *SMOKE_ARGS, overlay, "--config", f"results_dir={tmp_path}").stdout
    claims = re.findall(r"^\s*resources: .*\bgpu=(\d+)", out, flags=re.M)
    assert len(claims) >= 5, out[-2000:]  # the MD, label, training and prediction jobs
    expected = {"cpu": "0", "cuda": "1", "auto": "1" if cfg.gpu_visible() else "0"}[device]
    assert set(claims) == {expected}
