"""The workflow on a real SLURM: every job through sbatch, GPU jobs side by side, cancelled
jobs (an equilibration, a training) retried with more time and resumed.

Needs the one-node cluster of ``tests/cluster/start_slurm.sh`` (root: it installs Debian's
slurmctld/slurmd/munge and starts them; ``.ci/run`` does it before the tests); its node declares
four GPUs as generic resources without hardware.  Here every stage of the GPU partition asks for
a GPU (as with ``engine.device``/``training.device`` not ``cpu``) while computing on the CPU, so
the results still equal the local run's.  Without a running SLURM the tests skip, saying how to
start one.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tbotan.formats.model_file import read_metrics_rows
from tbotan.physics.configurations import read_gsd
from workflow_helpers import ROOT, SMOKE_ARGS, snakemake_command

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

START_SLURM = ROOT / "tests" / "cluster" / "start_slurm.sh"
#: Stages the profile routes to the GPU partition; the others go to the CPU partition.
GPU_STAGES = {"equilibrate", "tau_alpha", "quench", "iso", "train", "predict"}
#: The jobs the test cancels once they have written a checkpoint: (rule, wildcard value).
VICTIM = ("equilibrate", "1.20")
TRAIN_VICTIM = ("train", "is+ts_lg0.01_s0")
#: Runtime (minutes) of the equilibrate rule's first attempt (workflow/rules/md.smk).
EQUILIBRATE_RUNTIME = 240


@pytest.fixture(scope="module")
def slurm():
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install .[workflow]")
    status = subprocess.run(["bash", str(START_SLURM), "status"], capture_output=True)
    if status.returncode != 0:
        pytest.skip(f"no SLURM cluster is running here: start one with `sudo {START_SLURM} start`")


def _squeue() -> list[tuple[str, str]]:
    """(job id, comment) of the user's jobs in the queue."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True
    ).stdout
    return [tuple(line.split("|", 1)) for line in out.splitlines() if "|" in line]


def _gpu_jobs() -> dict[str, str]:
    """job id -> state of the queued or running jobs that asked for GPUs."""
    out = subprocess.run(
        ["squeue", "-h", "-O", "JobID:|,tres-per-job:|,State:|"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = {}
    for line in out.splitlines():
        job, tres, state = (line.split("|") + ["", ""])[:3]
        if "gpu" in tres:
            jobs[job.strip()] = state.strip()
    return jobs


class WatchQueue(threading.Thread):
    """Polls the queue while the workflow runs: cancels each victim job with scancel as soon
    as its first checkpoint is published, and records how many GPU jobs were in flight."""

    def __init__(self, run: Path) -> None:
        super().__init__(daemon=True)
        # victim comment (the plugin joins rule and wildcard values) -> its checkpoint file
        self.victims = {
            f"rule_{VICTIM[0]}_wildcards_{VICTIM[1]}": (
                run / "equilibrium" / f"T{VICTIM[1]}.gsd.ckpt" / "latest"
            ),
            f"rule_{TRAIN_VICTIM[0]}_wildcards_{TRAIN_VICTIM[1]}": (
                run / "models" / TRAIN_VICTIM[1] / "checkpoint.pt"
            ),
        }
        self.cancelled: dict[str, str] = {}  # comment -> job id
        self.max_gpu_in_flight = 0  # pending or running at the same time
        self.max_gpu_running = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                gpu = _gpu_jobs()
                queue = _squeue()
            except subprocess.CalledProcessError:
                time.sleep(0.2)
                continue
            self.max_gpu_in_flight = max(self.max_gpu_in_flight, len(gpu))
            running = sum(state == "RUNNING" for state in gpu.values())
            self.max_gpu_running = max(self.max_gpu_running, running)
            for comment, pointer in self.victims.items():
                if comment in self.cancelled or not pointer.exists():
                    continue
                for job_id, job_comment in queue:
                    if job_comment.strip() == comment:
                        subprocess.run(["scancel", job_id], check=True)
                        self.cancelled[comment] = job_id
            time.sleep(0.2)


def gpu_profile(folder: Path) -> Path:
    """profiles/slurm with every stage of the GPU partition asking for one GPU."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    for rule in GPU_STAGES:
        profile["set-resources"].setdefault(rule, {})["gpu"] = 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


@pytest.fixture(scope="module")
def cluster_run(slurm, tmp_path_factory):
    """The smoke pipeline through profiles/slurm, with one job cancelled mid-run."""
    results = tmp_path_factory.mktemp("slurm")
    run = results / "smoke"
    env = {
        **os.environ,
        "TBOTAN_SLURM_ACCOUNT": "",  # the test cluster has no accounting
        "TBOTAN_SLURM_CPU_PARTITION": "cpu",
        "TBOTAN_SLURM_GPU_PARTITION": "gpu",
    }
    # a checkpoint after every epoch, so that the training can be cancelled mid-way
    overlay = results / "checkpoint-every-epoch.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"checkpoint_every": 1}}))
    cmd = snakemake_command(
        "--workflow-profile",
        gpu_profile(results / "profile"),
        *SMOKE_ARGS,
        overlay,
        "--config",
        f"results_dir={results}",
        # a node of the test cluster has nproc CPUs: group jobs must fit on it
        "--cores",
        str(len(os.sched_getaffinity(0))),  # = nproc, what start_slurm.sh gives the node
        # no slurmdbd here, so squeue; and poll often, the jobs are seconds long
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        # the local reference trains and predicts on one thread (profiles/laptop); with other
        # thread counts float sums differ in the last bits, which training amplifies (weights
        # after 4 epochs at 1 vs 2 threads differ by 3e-5 with the standardised readout)
        "--set-threads",
        "train=1",
        "predict=1",
    )
    watch = WatchQueue(run)
    watch.start()
    # 30 min: 9.5 min alone on the loaded 2-core machine, but the one node may be shared (a
    # concurrent cluster run's 10-minute job once held both its CPUs and this ran past 15 min)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    watch.stop.set()
    watch.join()
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    return run, text, watch


def test_unset_cluster_settings_stop_the_run_before_any_submission(slurm, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TBOTAN_SLURM_")}
    env["TBOTAN_SLURM_CPU_PARTITION"] = "cpu"
    before = {job for job, _ in _squeue()}
    proc = subprocess.run(
        snakemake_command(
            "--workflow-profile", "profiles/slurm", *SMOKE_ARGS,
            "--config", f"results_dir={tmp_path}", "--slurm-status-command", "squeue",
        ),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "TBOTAN_SLURM_ACCOUNT, TBOTAN_SLURM_GPU_PARTITION" in text, text[-2000:]
    assert "submitted with SLURM jobid" not in text
    assert {job for job, _ in _squeue()} <= before


def submitted_jobs(text: str) -> dict[str, str]:
    """SLURM job id -> rule, from Snakemake's submission lines.

    The log folder names it: ``slurm_logs/rule_<rule>/...`` for a job,
    ``slurm_logs/group_<group id>_<rule>/...`` for a group job (here only iso chunks).
    """
    pattern = r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(rule|group)_([^/\s]+)/"
    jobs = {}
    for job, kind, name in re.findall(pattern, text):
        jobs[job] = name if kind == "rule" else name.rsplit("_", 1)[-1]
    return jobs


def test_every_job_goes_through_sbatch_to_its_partition(cluster_run):
    run, text, _ = cluster_run
    # only the target rule `all` may run on the submitting host
    local = set(re.findall(r"^localrule (\w+):", text, flags=re.M))
    assert local <= {"all"}, local
    jobs = submitted_jobs(text)
    rules = set(jobs.values())
    assert {"equilibrate", "tau_alpha", "quench", "iso", "dataset", "train", "predict"} <= rules
    assert "figures" in rules
    for job_id, rule in jobs.items():
        info = subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True
        ).stdout
        partition = re.search(r"Partition=(\S+)", info)
        assert partition, f"SLURM forgot job {job_id} ({rule}): raise MinJobAge"
        expected = "gpu" if rule in GPU_STAGES else "cpu"
        assert partition.group(1) == expected, (job_id, rule, partition.group(1))


def _job_info(job_id: str) -> str:
    info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    assert "JobId=" in info.stdout, f"SLURM forgot job {job_id}: raise MinJobAge"
    return info.stdout


def test_a_cancelled_job_is_retried_and_resumes_from_its_checkpoint(cluster_run):
    run, text, watch = cluster_run
    cancelled = watch.cancelled.get(f"rule_{VICTIM[0]}_wildcards_{VICTIM[1]}")
    assert cancelled is not None, "the equilibration finished before it could be cancelled"
    assert f"SLURM-job '{cancelled}' failed" in text
    assert "Trying to restart job" in text
    log = (run / "logs" / "equilibrate" / f"T{VICTIM[1]}.log").read_text()
    assert "resuming from checkpoint" in log, log[-2000:]
    assert not (run / "equilibrium" / f"T{VICTIM[1]}.gsd.ckpt").exists()


def test_a_retried_job_gets_more_time(cluster_run):
    """runtime grows with the attempt: the retry of the cancelled equilibration asks SLURM for
    twice the first attempt's time limit."""
    _, text, watch = cluster_run
    comment = f"rule_{VICTIM[0]}_wildcards_{VICTIM[1]}"
    first = watch.cancelled.get(comment)
    assert first is not None
    limits = {}
    for job_id, rule in submitted_jobs(text).items():
        info = _job_info(job_id)
        if rule == VICTIM[0] and f"Comment={comment}" in info:
            limits[int(job_id)] = re.search(r"TimeLimit=(\S+)", info).group(1)
    assert len(limits) == 2, limits  # the cancelled attempt and its retry
    minutes = [EQUILIBRATE_RUNTIME * k for k in (1, 2)]
    expected = [f"{m // 60:02d}:{m % 60:02d}:00" for m in minutes]
    assert [limits[j] for j in sorted(limits)] == expected, limits


def test_gpu_jobs_run_side_by_side(cluster_run):
    """GPU jobs are not serialised cluster-wide (resource_scopes: gpu="local"): several were
    queued and running at once, each with its own GPU from SLURM."""
    _, text, watch = cluster_run
    assert watch.max_gpu_in_flight >= 2, watch.max_gpu_in_flight
    assert watch.max_gpu_running >= 2, watch.max_gpu_running
    for job_id, rule in submitted_jobs(text).items():
        info = _job_info(job_id)
        if rule in GPU_STAGES:
            assert "TresPerJob=gres:gpu:1" in info, (job_id, rule, info)
        else:
            assert "gpu" not in re.search(r"TresPerJob=(\S*)", info + "TresPerJob=").group(1)


def test_a_cancelled_training_keeps_every_epoch_of_its_metrics(cluster_run):
    """The training cancelled after a checkpoint resumes from it; metrics.csv, which Snakemake
    deleted before the retry, is written from the checkpoint's history: every epoch once."""
    run, text, watch = cluster_run
    cancelled = watch.cancelled.get(f"rule_{TRAIN_VICTIM[0]}_wildcards_{TRAIN_VICTIM[1]}")
    assert cancelled is not None, "the training finished before it could be cancelled"
    assert f"SLURM-job '{cancelled}' failed" in text
    log = (run / "logs" / "train" / f"{TRAIN_VICTIM[1]}.log").read_text()
    assert "resuming from checkpoint" in log, log[-2000:]
    rows = read_metrics_rows(run / "models" / TRAIN_VICTIM[1] / "metrics.csv")
    epochs = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["training"]["epochs"]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))


def _datasets(h5: h5py.File) -> list[str]:
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def test_outputs_equal_those_of_the_local_run(cluster_run, smoke_run):
    run, _, _ = cluster_run
    local, _ = smoke_run
    products = sorted(p.relative_to(local) for p in local.rglob("*") if p.suffix in (".gsd", ".h5"))
    assert len(products) > 15
    for rel in products:
        mine, theirs = run / rel, local / rel
        assert mine.is_file(), f"{rel} is missing from the cluster run"
        if rel.suffix == ".gsd":
            a, b = read_gsd(mine), read_gsd(theirs)
            np.testing.assert_array_equal(a.positions, b.positions, err_msg=str(rel))
            np.testing.assert_array_equal(a.images, b.images, err_msg=str(rel))
            np.testing.assert_array_equal(a.types, b.types, err_msg=str(rel))
            continue
        with h5py.File(mine, "r") as fa, h5py.File(theirs, "r") as fb:
            for name in _datasets(fb):
                assert name in fa, f"{rel}:{name} is missing from the cluster run"
                x, y = fa[name][()], fb[name][()]
                if np.asarray(y).dtype.kind in "fc":
                    # predictions: the same network on the same data, identical on CPU
                    np.testing.assert_allclose(x, y, rtol=0, atol=1e-6, err_msg=f"{rel}:{name}")
                else:
                    np.testing.assert_array_equal(x, y, err_msg=f"{rel}:{name}")
    assert (run / "analysis" / "summary.json").is_file()
