"""Wall and CPU time per pipeline stage of a run, from its Snakemake benchmark files.

Every rule writes ``results/<run>/benchmarks/<rule>/<job>.tsv`` (Snakemake's ``benchmark:``
directive: wall seconds ``s``, ``cpu_time`` seconds, ``max_rss`` MiB).  This sums them per
rule and prints a Markdown table; the wall column is the sum over jobs (jobs that ran side by
side overlap), the CPU column is what the jobs consumed whatever the machine's load.

    python scripts/stage_times.py results/reduced/benchmarks
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

#: Pipeline order of the rules that write benchmarks.
ORDER = ["equilibrate", "tau_alpha", "quench", "iso", "dataset", "train", "predict", "figures"]


def stage_times(directory: Path) -> dict[str, dict[str, float]]:
    """{rule: {jobs, wall_s, cpu_s, max_rss_mib}} from the benchmark TSVs under ``directory``."""
    stages: dict[str, dict[str, float]] = {}
    for path in sorted(directory.glob("*/*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            raise SystemExit(f"{path}: empty benchmark file")
        row = rows[-1]  # Snakemake appends one row per repeat; the last is the latest
        try:
            wall, cpu = float(row["s"]), float(row["cpu_time"])
            rss = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "-") else 0.0
        except (KeyError, ValueError) as err:
            raise SystemExit(f"{path}: not a Snakemake benchmark file ({err})") from None
        s = stages.setdefault(
            path.parent.name, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "max_rss_mib": 0.0}
        )
        s["jobs"] += 1
        s["wall_s"] += wall
        s["cpu_s"] += cpu
        s["max_rss_mib"] = max(s["max_rss_mib"], rss)
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", type=Path, help="a run's benchmarks/ folder")
    args = parser.parse_args(argv)
    if not args.benchmarks.is_dir():
        raise SystemExit(f"{args.benchmarks}: no such folder")
    stages = stage_times(args.benchmarks)
    if not stages:
        raise SystemExit(f"{args.benchmarks}: no benchmark files (<rule>/<job>.tsv)")
    rules = [r for r in ORDER if r in stages] + sorted(set(stages) - set(ORDER))
    print("| stage | jobs | wall, sum over jobs (h) | CPU (h) | largest RSS (MiB) |")
    print("|---|---|---|---|---|")
    total_wall = total_cpu = 0.0
    for rule in rules:
        s = stages[rule]
        total_wall += s["wall_s"]
        total_cpu += s["cpu_s"]
        print(
            f"| {rule} | {s['jobs']} | {s['wall_s'] / 3600:.2f} | {s['cpu_s'] / 3600:.2f} "
            f"| {s['max_rss_mib']:.0f} |"
        )
    print(f"| total | | {total_wall / 3600:.2f} | {total_cpu / 3600:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
