"""τα at one temperature from F_s(q, t) of A particles (PHYSICS.md §2).

Starts from the first sample of every independent system in the equilibrium file, measures
F_s(q, t) = ⟨sin(q|Δr|)/(q|Δr|)⟩ on a log-spaced time grid from several time origins, and
writes a JSON file with the curve, τα (where F_s = 1/e) and the paper's Table I value beside it.
"""

from __future__ import annotations

from tbotan.commands.common import add_config_argument, load_config, make_engine_from_config

NAME = "tau-alpha"
HELP = "measure τα from F_s(q, t) (JSON with the curve and Table I's value)"


def add_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--temperature", required=True)
    parser.add_argument("--equilibrium", required=True, help="GSD from `tbotan equilibrate`")
    parser.add_argument("--output", required=True, help="JSON file")


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from tbotan.configuration import read_gsd, read_gsd_logs
    from tbotan.io_utils import write_json
    from tbotan.md.checkpoint import Checkpointer
    from tbotan.md.protocols import TauAlphaParameters, measure_tau_alpha

    config = load_config(args)
    params = TauAlphaParameters.from_config(config, float(args.temperature))
    engine = make_engine_from_config(config)
    samples = read_gsd_logs(args.equilibrium, "tbotan/sample").ravel()
    start = read_gsd(args.equilibrium, frames=np.nonzero(samples == 0)[0])
    if start.velocities is None:
        raise ValueError(f"{args.equilibrium} holds no velocities; rerun `tbotan equilibrate`")
    output = Path(args.output)
    ckpt_dir = output.with_name(output.name + ".ckpt")
    result = measure_tau_alpha(engine, start, params, checkpoint_dir=ckpt_dir)
    result["engine"] = engine.describe()
    write_json(output, result)
    Checkpointer(ckpt_dir, "").clear()
    measured = result.get("tau_alpha_measured")
    text = f"{measured:.4g}" if measured is not None else f"not reached ({result.get('error')})"
    print(
        f"T = {params.temperature:g}: tau_alpha = {text} (Table I: {params.tau_alpha_estimate:g})"
    )
    return 0
