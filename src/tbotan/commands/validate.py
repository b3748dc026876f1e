"""Physics checks a user can run on a laptop.

Against the real BOTAN data (when ``$TBOTAN_BOTAN_DATA`` names the folder holding
``isoconfig_N4096T0.44_*_tc07.npz``): U/N, e_IS/N and FIRE steps, C_B and propensity of
file 1.  Then τα at T = 0.80 and 0.64 for N ≈ 1000 against the paper's Table I (within 15 %),
with the equilibrium U/N and inherent-structure energies of the same runs.  With
``--botan-replicas R`` (long: about 80 min per replica of N = 4096 on two CPU cores), R
replicas of BOTAN configuration ``--botan-file`` are run with our engine to t = 4120 and
compared with the authors' 32 replicas of the same configuration.  Writes JSON and a markdown
table.
"""

from __future__ import annotations

NAME = "validate"
HELP = "physics checks: BOTAN reference values, τα at T = 0.80 and 0.64 vs Table I"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="*",
        default=[0.80, 0.64],
        help="τα checks to run (Table I temperatures 0.80, 0.64)",
    )
    parser.add_argument("--n-particles", type=int, default=1000, help="particles per τα system")
    parser.add_argument("--n-systems", type=int, default=4, help="systems per temperature")
    parser.add_argument(
        "--equilibration-tau-alpha",
        type=float,
        default=20.0,
        help="NVT equilibration before measuring, in Table I's τα",
    )
    parser.add_argument("--engine", choices=["auto", "torch", "hoomd"], default="auto")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--skip-real-data", action="store_true", help="skip the BOTAN file-1 reference checks"
    )
    parser.add_argument(
        "--botan-replicas",
        type=int,
        default=0,
        help="run this many of our own replicas of a BOTAN configuration to t = 4120 and "
        "compare them with the authors' (0: skip; ≈ 8×10^5 steps of N = 4096 per replica)",
    )
    parser.add_argument(
        "--botan-file",
        type=int,
        default=1,
        choices=[1, 2, 3, 4, 5],
        help="which BOTAN configuration the replicas start from",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default="results/validation/checkpoints",
        help="checkpoints of the BOTAN replica run: a killed run resumes from here",
    )
    parser.add_argument(
        "--output",
        default="results/validation/validation.json",
        help="JSON of all results; a markdown table is written beside it (.md)",
    )


def run(args) -> int:
    from pathlib import Path

    from tbotan.checks import validation
    from tbotan.cli import UserError
    from tbotan.formats.io_utils import check_writable, write_json, write_text
    from tbotan.md import make_engine

    check_writable(args.output, Path(args.output).with_suffix(".md"))
    engine = make_engine(args.engine, device=args.device) if args.engine != "auto" else None
    if engine is None:
        from tbotan.md import hoomd_available

        engine = make_engine("hoomd" if hoomd_available() else "torch", device=args.device)
    result = {"engine": engine.describe()}
    directory = validation.botan_directory()
    if directory is not None and not args.skip_real_data:
        print(f"BOTAN reference values ({directory}) ...")
        result["real_data"] = validation.validate_real_data(engine, directory)
    elif not args.skip_real_data:
        print("BOTAN data not found (set TBOTAN_BOTAN_DATA); skipping the real-data checks")
    result["tau_alpha"] = []
    for T in args.temperatures:
        if round(T, 2) not in validation.TABLE_I:
            raise UserError(
                f"no Table I value for T = {T}; choose among {sorted(validation.TABLE_I)}"
            )
        print(f"tau_alpha at T = {T} (N = {args.n_particles}, {args.n_systems} systems) ...")
        result["tau_alpha"].append(
            validation.validate_tau_alpha(
                engine, round(T, 2), args.n_particles, args.n_systems, args.equilibration_tau_alpha
            )
        )
    if args.botan_replicas > 0:
        if directory is None:
            raise UserError(
                "--botan-replicas needs the BOTAN data: set TBOTAN_BOTAN_DATA to the folder "
                "holding isoconfig_N4096T0.44_*_tc07.npz"
            )
        print(f"{args.botan_replicas} replica(s) of BOTAN file {args.botan_file} to t = 4120 ...")
        result["botan_replicas"] = validation.validate_botan_replicas(
            engine,
            directory,
            file_index=args.botan_file,
            n_replicas=args.botan_replicas,
            checkpoint_dir=Path(args.checkpoint_dir) / f"botan-file{args.botan_file}",
        )
    output = Path(args.output)
    write_json(output, result)
    table = validation.markdown(result)
    write_text(output.with_suffix(".md"), table)
    print(table)
    print(f"written: {output}, {output.with_suffix('.md')}")
    return 0
