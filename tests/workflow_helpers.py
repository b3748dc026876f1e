"""Running Snakemake from the tests (shared by test_workflow and test_cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The smoke pipeline on this machine (profiles/laptop): the reference for other executors.
SMOKE_ARGS = ("--configfile", "config.yaml", "config/smoke.yaml")


def snakemake_command(*args) -> list[str]:
    return [sys.executable, "-m", "snakemake", *map(str, args)]


def snakemake(*args, cwd=ROOT, check=True, timeout=900, env=None) -> subprocess.CompletedProcess:
    """Run Snakemake in the repository; on failure, raise with the tail of its output."""
    cmd = snakemake_command(*args)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc
