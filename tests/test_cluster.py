"""The workflow on a real SLURM: every job through sbatch, a cancelled job retried and resumed.

Needs the one-node cluster of ``tests/cluster/start_slurm.sh`` (root: it installs Debian's
slurmctld/slurmd/munge and starts them; ``.ci/run`` does it before the tests).  Without a
running SLURM the tests skip, saying how to start one.
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

from tbotan.physics.configurations import read_gsd
from workflow_helpers import ROOT, SMOKE_ARGS, snakemake_command

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

START_SLURM = ROOT / "tests" / "cluster" / "start_slurm.sh"
#: Stages the profile routes to the GPU partition; the others go to the CPU partition.
GPU_STAGES = {"equilibrate", "tau_alpha", "quench", "iso", "train", "predict"}
#: The job the test cancels once it has written a checkpoint.
VICTIM = ("equilibrate", "1.20")


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


class CancelAfterCheckpoint(threading.Thread):
    """Cancel the VICTIM job with scancel as soon as its first checkpoint is published."""

    def __init__(self, run: Path) -> None:
        super().__init__(daemon=True)
        rule, T = VICTIM
        self.pointer = run / "equilibrium" / f"T{T}.gsd.ckpt" / "latest"
        self.comment = f"rule_{rule}_wildcards_{T}"  # the plugin joins wildcard values
        self.cancelled: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.cancelled is None:
            if self.pointer.exists():
                for job_id, comment in _squeue():
                    if comment.strip() == self.comment:
                        subprocess.run(["scancel", job_id], check=True)
                        self.cancelled = job_id
            time.sleep(0.2)


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
    cmd = snakemake_command(
        "--workflow-profile",
        "profiles/slurm",
        *SMOKE_ARGS,
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
    canceller = CancelAfterCheckpoint(run)
    canceller.start()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    canceller.stop.set()
    canceller.join()
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    return run, text, canceller.cancelled


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


def test_a_cancelled_job_is_retried_and_resumes_from_its_checkpoint(cluster_run):
    run, text, cancelled = cluster_run
    assert cancelled is not None, "the equilibration finished before it could be cancelled"
    assert f"SLURM-job '{cancelled}' failed" in text
    assert "Trying to restart job" in text
    log = (run / "logs" / "equilibrate" / f"T{VICTIM[1]}.log").read_text()
    assert "resuming from checkpoint" in log, log[-2000:]
    assert not (run / "equilibrium" / f"T{VICTIM[1]}.gsd.ckpt").exists()


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
