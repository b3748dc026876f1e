"""The work a configuration asks for, stage by stage, and what it costs at given rates.

    python scripts/estimate_cost.py config.yaml config/reduced.yaml \
        --md-rate 786 --md-rate-n 1000 --train-step-s 0.4 --parallel 2

Work is counted from the configuration alone (docs/physics.md §3–5, §8): MD in replica-steps
(one system of N particles advanced one step; FIRE steps counted alike), training in
graph-steps (one configuration through forward and backward). The one quantity the
configuration cannot fix is how long the equilibration runs on past each sample until the
A-particle MSD since the previous one exceeds `min_msd_between_samples`: `--extension-tau`
(default 11 τα, the mean measured by the demo and reduced runs at T = 0.64 … 1.00;
`results/*/equilibrium/T*.json`, `msd_between_samples.extensions_tau_alpha`).

Rates are inputs, never assumptions of this script: `--md-rate` replica-steps/s measured at
`--md-rate-n` particles (scaled ∝ 1/N to the configuration's N: the force work per step is
linear in N), `--train-step-s` seconds per graph-step measured at `--train-n` particles (scaled
∝ N), `--parallel` jobs at once. Prints a table and, with --json, writes it.
"""

from __future__ import annotations

import argparse
import json

from tbotan import config as cfg

FIRE_STEPS_PER_CONFIGURATION = 2000  # measured: 1174–1854 on the BOTAN files (docs/benchmarks.md)


def stage_work(config: dict, extension_tau: float) -> dict[str, float]:
    """Replica-steps (MD, FIRE) and graph-steps (training, inference) of each stage."""
    dt = config["md"]["dt"]
    eq, iso, ta = config["equilibration"], config["iso"], config["tau_alpha"]
    work = dict.fromkeys(["equilibrate", "tau_alpha", "quench", "iso"], 0.0)
    n_configs = 0
    for entry in config["temperatures"]:
        tau = float(entry["tau_alpha"])
        samples = cfg.samples_per_system(config, entry["T"])
        eq_tau = entry.get("equilibration_tau_alpha", eq["equilibration_tau_alpha"])
        interval = entry.get("sample_interval_tau_alpha", eq["sample_interval_tau_alpha"])
        per_system = (
            eq["melt_time"] / min(dt, 0.002)
            + (eq_tau + samples * (interval + extension_tau)) * tau / dt
        )
        work["equilibrate"] += eq["n_systems"] * per_system
        work["tau_alpha"] += eq["n_systems"] * ta["n_origins"] * ta["max_time_tau_alpha"] * tau / dt
        configs = cfg.configurations_needed(config, entry["T"])
        n_configs += configs
        work["quench"] += eq["n_systems"] * samples * FIRE_STEPS_PER_CONFIGURATION
        label_time = max([iso["label_time_tau_alpha"], *iso.get("extra_times_tau_alpha", [])])
        work["iso"] += configs * iso["n_replicas"] * label_time * tau / dt
    models = sum(len(v) for v in cfg.model_ids(config).values())
    trained = [e for e in config["temperatures"] if e["train"]]
    ds = config["dataset"]
    tr = config["training"]
    epochs = tr["epochs"] + tr["fluctuation_phase"]["epochs"]  # both phases
    work["train"] = models * epochs * len(trained) * (ds["n_train"] + ds["n_validation"])
    work["predict"] = models * sum(
        cfg.split_sizes(config, e["T"])["test"] for e in config["temperatures"]
    )
    work["configurations"] = n_configs
    return work


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("configs", nargs="+", help="config.yaml and overlays, in order")
    ap.add_argument("--md-rate", type=float, required=True, help="replica-steps/s per job")
    ap.add_argument(
        "--md-rate-n", type=int, required=True, help="N at which --md-rate was measured"
    )
    ap.add_argument("--train-step-s", type=float, required=True, help="s per graph-step")
    ap.add_argument(
        "--train-n", type=int, default=None, help="N of --train-step-s (default: the config's)"
    )
    ap.add_argument("--parallel", type=int, default=1, help="jobs running at once")
    ap.add_argument("--extension-tau", type=float, default=11.0)
    ap.add_argument("--label", default="", help="a name for the rates (printed)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    config = cfg.load(args.configs, check_engine=False)
    n = config["system"]["n_particles"]
    work = stage_work(config, args.extension_tau)
    md_rate = args.md_rate * args.md_rate_n / n  # replica-steps/s at this N
    step_s = args.train_step_s * n / (args.train_n or n)
    rows = []
    for stage in ("equilibrate", "tau_alpha", "quench", "iso"):
        rows.append((stage, work[stage], "replica-steps", work[stage] / md_rate / args.parallel))
    for stage in ("train", "predict"):
        seconds = work[stage] * step_s * (1.0 if stage == "train" else 1 / 3)  # forward only
        rows.append((stage, work[stage], "graph-steps", seconds / args.parallel))
    total = sum(r[3] for r in rows)
    print(f"{' + '.join(args.configs)}: N = {n}, {int(work['configurations'])} configurations")
    print(
        f"rates {args.label}: MD {md_rate:,.0f} replica-steps/s per job at N = {n}, "
        f"training {step_s:.3g} s per graph-step, {args.parallel} job(s) at once"
    )
    print(f"{'stage':<12} {'work':>14} {'unit':<14} {'hours':>8}")
    for stage, amount, unit, seconds in rows:
        print(f"{stage:<12} {amount:>14,.0f} {unit:<14} {seconds / 3600:>8.2f}")
    print(f"{'total':<12} {'':>14} {'':<14} {total / 3600:>8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "configs": args.configs,
                    "n_particles": n,
                    "rates": vars(args),
                    "stages": {
                        r[0]: {"work": r[1], "unit": r[2], "hours": r[3] / 3600} for r in rows
                    },
                    "total_hours": total / 3600,
                },
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
