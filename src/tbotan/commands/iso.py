"""Isoconfigurational runs and labels for one chunk of configurations (docs/physics.md §5).

For the configurations ``[k·c, (k+1)·c)`` of the equilibrium file (c =
``iso.configurations_per_chunk``), runs ``iso.n_replicas`` replicas each with independent
Maxwell–Boltzmann velocities (all replicas of the chunk in one batch) to the label time
``label_time_tau_alpha`` × τα, and writes their labels (C_B, propensity, edge labels) with both
graphs.  The chunk checkpoints to ``<output>.ckpt/`` and resumes with the same result.
"""

from __future__ import annotations

from tbotan.commands.common import (
    add_config_argument,
    add_restart_argument,
    check_memory,
    load_config,
    run_resumable,
)

NAME = "iso"
HELP = "isoconfigurational replicas and labels for one chunk of configurations"


def add_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--temperature", required=True)
    parser.add_argument("--chunk", type=int, required=True, help="chunk index k (0-based)")
    parser.add_argument("--equilibrium", required=True, help="GSD from `tbotan equilibrate`")
    parser.add_argument("--inherent", required=True, help="GSD from `tbotan quench`")
    parser.add_argument(
        "--tau-alpha-json",
        default=None,
        help="output of `tbotan tau-alpha` (needed when tau_alpha.source is measured)",
    )
    parser.add_argument("--output", required=True, help="HDF5 file of the chunk's labels")
    add_restart_argument(parser)


def run(args) -> int:
    from pathlib import Path

    from tbotan import config as cfgmod
    from tbotan.cli import UserError
    from tbotan.formats.io_utils import check_writable
    from tbotan.labels.chunks import check_chunk_inputs, label_chunk
    from tbotan.md.checkpoint import Checkpointer
    from tbotan.physics import kalj
    from tbotan.pipeline import make_engine_from_config

    config = load_config(args)
    T = float(args.temperature)
    n_chunks = cfgmod.n_chunks(config, T)
    if not 0 <= args.chunk < n_chunks:
        raise UserError(f"--chunk {args.chunk} out of range: T = {T:g} has {n_chunks} chunks")
    output = Path(args.output)
    check_writable(output)
    # every input check before any MD
    inputs = check_chunk_inputs(
        config, T, args.chunk, args.equilibrium, args.inherent, args.tau_alpha_json
    )
    for note in inputs.notes:
        print(f"note: {note}")
    engine = make_engine_from_config(config)
    check_memory(config, "iso", engine, n_particles=inputs.thermal.n_particles)
    ckpt_dir = output.with_name(output.name + ".ckpt")
    content = run_resumable(
        lambda: label_chunk(
            config,
            T,
            args.chunk,
            args.equilibrium,
            args.inherent,
            args.tau_alpha_json,
            engine,
            checkpoint_dir=ckpt_dir,
            inputs=inputs,
        ),
        ckpt_dir,
        args.restart_if_incompatible,
    )
    from tbotan.formats.dataset import write_dataset

    write_dataset(output, content)
    Checkpointer.remove(ckpt_dir)
    a = content.types == kalj.TYPE_A
    print(
        f"wrote {output}: {content.n_configurations} configurations x "
        f"{content.attrs['n_replicas']} replicas to t = {content.attrs['label_time']:g}, "
        f"mean C_B(A) = {content.cb[a].mean():.4f}"
    )
    return 0
