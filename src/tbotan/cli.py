"""The ``tbotan`` command: one sub-command per pipeline stage, plus ``benchmark``.

Every sub-command is a thin layer over a library function; errors the user can fix (bad
configuration, missing or damaged files, a simulation that blew up) are printed as one clear
message with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from tbotan import __version__


class UserError(Exception):
    """An error caused by input the user controls; printed without a traceback."""


def _add_benchmark(sub) -> None:
    bench = sub.add_parser("benchmark", help="measure throughput (md)")
    kinds = bench.add_subparsers(dest="benchmark", required=True)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tbotan",
        description="KALJ molecular dynamics, isoconfigurational labels and T-BOTAN.",
    )
    parser.add_argument("--version", action="version", version=f"tbotan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_benchmark(sub)
    return parser


def _run_benchmark(args) -> int:
    from tbotan import benchmark
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
        print(_format_md(result))
        benchmark.write_json(result, args.output)
        print(f"written: {args.output}")
    return 0


def _format_md(result: dict) -> str:
    lines = [
        f"KALJ N = {result['workload']['n_particles']}, {result['workload']['precision']}, "
        f"{result['machine']['processor']} ({result['machine']['torch_threads']} threads)",
        f"{'engine':<8} {'batch':>5} {'replica-steps/s':>16}",
    ]
    for m in result["measurements"]:
        lines.append(
            f"{m['engine']:<8} {m['batch_size']:>5} {m['replica_steps_per_second']:>16,.1f}"
        )
    for key, value in result["ratios"].items():
        lines.append(f"{key}: {value:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from tbotan.configuration import ConfigurationError
    from tbotan.md import SimulationError

    handlers = {"benchmark": _run_benchmark}
    try:
        return handlers[args.command](args)
    except (UserError, ConfigurationError, SimulationError, FileNotFoundError, ValueError) as exc:
        print(f"tbotan {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
