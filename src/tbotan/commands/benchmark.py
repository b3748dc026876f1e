"""``tbotan benchmark md|train``: throughput of the MD engines and of T-BOTAN training."""

from __future__ import annotations

NAME = "benchmark"
HELP = "measure throughput (md, train)"


def add_arguments(parser) -> None:
    kinds = parser.add_subparsers(dest="benchmark", required=True)
    md = kinds.add_parser(
        "md",
        help="replica-steps per second of the MD engines on one KALJ liquid",
        description="Time the torch engine at each batch size and, when HOOMD-blue imports, "
        "HOOMD-blue on the same liquid; print the ratio and write JSON.",
    )
    md.add_argument("--n-particles", type=int, default=4096)
    md.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    md.add_argument("--steps", type=int, default=500, help="timed steps per measurement")
    md.add_argument("--warmup", type=int, default=100)
    md.add_argument("--kT", type=float, default=0.8)
    md.add_argument("--device", default="auto", help="auto | cpu | cuda")
    md.add_argument("--kernels", default="auto", help="auto | native | compiled | eager")
    md.add_argument("--precision", default="float64", choices=["float64", "float32"])
    md.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "torch", "both"],
        help="auto: torch, and HOOMD-blue beside it when it imports; both: require HOOMD-blue",
    )
    md.add_argument("--hoomd-steps", type=int, default=None)
    md.add_argument("--output", default="results/benchmarks/md.json", help="JSON file")

    tr = kinds.add_parser(
        "train",
        help="time per training step and epoch of T-BOTAN, peak memory, share of L_Corr",
        description="Time T-BOTAN training steps (all loss terms active) and one real epoch on "
        "N-particle graphs (synthetic, or the configurations of --dataset), with BOTAN's "
        "reference network timed beside it on the same graph; print a report and write JSON.",
    )
    tr.add_argument("--n-particles", type=int, default=4096, help="N of synthetic graphs")
    tr.add_argument("--dataset", default=None, help="time on this dataset file's configurations")
    tr.add_argument("--steps", type=int, default=10, help="timed steps (interleaved)")
    tr.add_argument("--warmup", type=int, default=3)
    tr.add_argument("--epoch-configurations", type=int, default=4)
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda")
    tr.add_argument("--variant", default="is+ts", choices=["is+ts", "is", "ts"])
    tr.add_argument("--hidden", type=int, default=64)
    tr.add_argument("--message-passing-steps", type=int, default=7)
    tr.add_argument("--compile", action="store_true", help="torch.compile the model")
    tr.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    tr.add_argument("--corr-block-rows", type=int, default=1024)
    tr.add_argument("--no-reference", action="store_true", help="skip BOTAN's reference network")
    tr.add_argument("--output", default="results/benchmarks/train.json", help="JSON file")


def run(args) -> int:
    from tbotan import benchmark
    from tbotan.cli import UserError
    from tbotan.md import hoomd_available

    if args.benchmark == "md":
        if args.engine == "both" and not hoomd_available():
            raise UserError(
                "--engine both needs HOOMD-blue, which does not import here "
                "(conda env create -f envs/hoomd.yaml)"
            )
        with_hoomd = {"auto": None, "torch": False, "both": True}[args.engine]
        result = benchmark.benchmark_md(
            n_particles=args.n_particles,
            batch_sizes=tuple(args.batch_sizes),
            steps=args.steps,
            warmup=args.warmup,
            kT=args.kT,
            device=args.device,
            kernels=args.kernels,
            precision=args.precision,
            with_hoomd=with_hoomd,
            hoomd_steps=args.hoomd_steps,
        )
        print(benchmark.format_md(result))
    elif args.benchmark == "train":
        result = benchmark.benchmark_train(
            n_particles=args.n_particles,
            steps=args.steps,
            warmup=args.warmup,
            device=args.device,
            variant=args.variant,
            hidden=args.hidden,
            message_passing_steps=args.message_passing_steps,
            compile=args.compile,
            amp=args.amp,
            corr_block_rows=args.corr_block_rows,
            dataset=args.dataset,
            epoch_configurations=args.epoch_configurations,
            reference=not args.no_reference,
        )
        print(benchmark.format_train(result))
    benchmark.write_json(result, args.output)
    print(f"written: {args.output}")
    return 0
