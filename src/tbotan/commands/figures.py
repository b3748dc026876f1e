"""``tbotan figures``: every observable and figure of the paper for one run.

Reads ``<run>/datasets/T{T}_{split}.h5``, ``<run>/predictions/{model}/T{T}_{split}.h5`` and
``<run>/models/{model}/metrics.csv``; writes ``<out>/figures/figNN_<name>.{png,pdf}``,
``<out>/summary.json`` and ``<out>/summary.md``.  Beside the network's numbers it puts the
structural baselines of :mod:`tbotan.learning.baselines` (ridge C_B from local structure, T from the
energy), fitted on ``<run>/datasets/T{T}_train.h5`` of the training temperatures, the ridge
penalty chosen on ``T{T}_validation.h5``, evaluated on the same split as the network
(``--no-baselines`` leaves them out).  Prints one line per figure, written or skipped with the
reason; exits 0 when at least one figure was written.
"""

from __future__ import annotations

from tbotan.commands.common import add_output_argument

NAME = "figures"
HELP = "observables and the paper's figures for a run (summary.json, summary.md, figures/)"


def add_arguments(parser) -> None:
    parser.add_argument("--run-dir", required=True, help="the run folder, results/<run_name>")
    parser.add_argument(
        "--config", default=None, help="resolved configuration (default: <run-dir>/config.yaml)"
    )
    add_output_argument(
        parser, "--out", default=None, help="output folder (default: <run-dir>/analysis)"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "validation", "train"],
        help="dataset split to evaluate (default: test)",
    )
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="leave out the structural baselines (ridge C_B, energy-fit T) fitted on the "
        "run's train/validation datasets",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        default=None,
        choices=["png", "pdf", "svg"],
        help="figure formats (default: analysis.figure_formats of the configuration)",
    )


def run(args) -> int:
    import sys
    from pathlib import Path

    from tbotan.analysis import figures, runs
    from tbotan.cli import UserError

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    config = runs.load_run_config(args.config or run_dir / "config.yaml")
    out = Path(args.out) if args.out else run_dir / "analysis"
    result = runs.analyse_run(run_dir, config, split=args.split, baselines=not args.no_baselines)
    for note in result.notes:
        print(f"note: {note}")
    if result.baselines is not None:
        cb = result.baselines["cb"]
        print(
            f"baselines: ridge C_B on {len(cb['features'])} structural features "
            f"(penalty {cb['penalty']:g}, chosen on the validation split), T from U/N and e_IS/N"
        )
    outcomes = figures.report(result, out, args.formats)
    for o in outcomes:
        if o.skipped:
            print(f"skipped {o.name}: {o.skipped}")
        else:
            print(f"written {o.name}: " + ", ".join(str(p) for p in o.files))
    print(f"written {out / 'summary.json'}, {out / 'summary.md'}")
    if not any(o.files for o in outcomes):
        print("tbotan figures: no figure could be drawn (see the reasons above)", file=sys.stderr)
        return 1
    return 0
