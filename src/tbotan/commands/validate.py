"""Physics checks a user can run on a laptop.

Against the real BOTAN data (when found: ``$TBOTAN_BOTAN_DATA`` or ``../shared/data/botan-T0.44``):
U/N, e_IS/N and FIRE steps, C_B and propensity of file 1.  Then τα at T = 0.80 and 0.64 for
N ≈ 1000 against the paper's Table I (within 15 %), with the equilibrium U/N and
inherent-structure energies of the same runs.  Writes JSON and a markdown table.
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
    parser.add_argument("--n-particles", type=int, default=1000)
    parser.add_argument("--n-systems", type=int, default=4)
    parser.add_argument("--equilibration-tau-alpha", type=float, default=20.0)
    parser.add_argument("--engine", choices=["auto", "torch", "hoomd"], default="auto")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--skip-real-data", action="store_true")
    parser.add_argument("--output", default="results/validation/validation.json")


def run(args) -> int:
    from pathlib import Path

    from tbotan import validation
    from tbotan.io_utils import write_json
    from tbotan.md import make_engine

    engine = make_engine(args.engine, device=args.device) if args.engine != "auto" else None
    if engine is None:
        from tbotan.md import hoomd_available

        engine = make_engine("hoomd" if hoomd_available() else "torch", device=args.device)
    result = {"engine": engine.describe()}
    directory = None if args.skip_real_data else validation.botan_directory()
    if directory is not None:
        print(f"BOTAN reference values ({directory}) ...")
        result["real_data"] = validation.validate_real_data(engine, directory)
    elif not args.skip_real_data:
        print("BOTAN data not found (set TBOTAN_BOTAN_DATA); skipping the real-data checks")
    result["tau_alpha"] = []
    for T in args.temperatures:
        if round(T, 2) not in validation.TABLE_I:
            raise ValueError(
                f"no Table I value for T = {T}; choose among {sorted(validation.TABLE_I)}"
            )
        print(f"tau_alpha at T = {T} (N = {args.n_particles}, {args.n_systems} systems) ...")
        result["tau_alpha"].append(
            validation.validate_tau_alpha(
                engine, round(T, 2), args.n_particles, args.n_systems, args.equilibration_tau_alpha
            )
        )
    output = Path(args.output)
    write_json(output, result)
    table = validation.markdown(result)
    output.with_suffix(".md").write_text(table)
    print(table)
    print(f"written: {output}, {output.with_suffix('.md')}")
    return 0
