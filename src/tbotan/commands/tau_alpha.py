"""τα at one temperature from F_s(q, t) of A particles (docs/physics.md §2).

Starts from the first sample of every independent system in the equilibrium file, measures
F_s(q, t) = ⟨sin(q|Δr|)/(q|Δr|)⟩ on a log-spaced time grid from several time origins, and
writes a JSON file with the curve, τα (where F_s = 1/e) and the paper's Table I value beside it.
"""

from __future__ import annotations

from tbotan.commands.common import (
    add_config_argument,
    add_restart_argument,
    check_memory,
    load_config,
    run_resumable,
)

NAME = "tau-alpha"
HELP = "measure τα from F_s(q, t) (JSON with the curve and Table I's value)"


def add_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--temperature", required=True)
    parser.add_argument("--equilibrium", required=True, help="GSD from `tbotan equilibrate`")
    parser.add_argument("--output", required=True, help="JSON file")
    add_restart_argument(parser)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from tbotan.errors import FileFormatError
    from tbotan.formats.io_utils import check_writable, write_json
    from tbotan.md.checkpoint import Checkpointer
    from tbotan.md.protocols import measure_tau_alpha
    from tbotan.physics.configurations import gsd_frame_count, read_gsd, read_provenance
    from tbotan.pipeline import make_engine_from_config, tau_alpha_parameters

    config = load_config(args)
    params = tau_alpha_parameters(config, float(args.temperature))
    output = Path(args.output)
    check_writable(output)
    # every input check before any MD
    n_frames = gsd_frame_count(args.equilibrium)
    _, samples, note = read_provenance(args.equilibrium, range(n_frames))
    if note:
        print(f"note: {note}")
    if not np.any(samples == 0):
        raise FileFormatError(
            f"{args.equilibrium} holds no first sample (log/tbotan/sample = 0) of any system"
        )
    start = read_gsd(args.equilibrium, frames=np.nonzero(samples == 0)[0])
    if start.velocities is None:
        raise FileFormatError(f"{args.equilibrium} holds no velocities; rerun `tbotan equilibrate`")
    engine = make_engine_from_config(config)
    check_memory(config, "tau-alpha", engine, start.n_systems, start.n_particles)
    ckpt_dir = output.with_name(output.name + ".ckpt")
    result = run_resumable(
        lambda: measure_tau_alpha(engine, start, params, checkpoint_dir=ckpt_dir),
        ckpt_dir,
        args.restart_if_incompatible,
    )
    result["engine"] = engine.describe()
    write_json(output, result)
    Checkpointer.remove(ckpt_dir)
    measured = result.get("tau_alpha_measured")
    text = f"{measured:.4g}" if measured is not None else f"not reached ({result.get('error')})"
    print(
        f"T = {params.temperature:g}: tau_alpha = {text} (Table I: {params.tau_alpha_estimate:g})"
    )
    return 0
