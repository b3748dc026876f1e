"""Inherent structures: FIRE minimisation of the equilibrium configurations (docs/physics.md §4).

Quenches the first configurations the dataset needs (all splits) in batches, to mean |F| below
``quench.force_tolerance``; a configuration that does not converge stops the stage with an
error naming it.  Frame c of the output is the inherent structure of equilibrium frame c.
"""

from __future__ import annotations

from tbotan.commands.common import (
    add_config_argument,
    check_memory,
    load_config,
)
from tbotan.progress import progress_bar

NAME = "quench"
HELP = "FIRE-minimise equilibrium configurations to inherent structures"


def add_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--temperature", required=True)
    parser.add_argument("--equilibrium", required=True, help="GSD from `tbotan equilibrate`")
    parser.add_argument("--output", required=True, help="GSD of the inherent structures")


def run(args) -> int:
    import numpy as np

    from tbotan import config as cfgmod
    from tbotan.errors import FileFormatError
    from tbotan.formats.io_utils import check_writable
    from tbotan.md.protocols import quench
    from tbotan.physics.configurations import gsd_frame_count, read_gsd, read_provenance, write_gsd
    from tbotan.pipeline import fire_parameters, make_engine_from_config

    config = load_config(args)
    needed = cfgmod.configurations_needed(config, float(args.temperature))
    check_writable(args.output)
    # every input check before any MD
    available = gsd_frame_count(args.equilibrium)
    if available < needed:
        raise FileFormatError(
            f"{args.equilibrium} holds {available} configurations but the dataset needs {needed}"
        )
    thermal = read_gsd(args.equilibrium, frames=range(needed)).with_velocities(None)
    system, sample, note = read_provenance(args.equilibrium, range(needed))
    if note:
        print(f"note: {note}")
    engine = make_engine_from_config(config)
    check_memory(config, "quench", engine, n_particles=thermal.n_particles)
    bar = progress_bar(needed, f"quench T={args.temperature}")
    inherent, energy, steps, mean_force = quench(
        engine,
        thermal,
        fire_parameters(config),
        config["quench"]["batch_size"],
        progress=bar.update,
    )
    bar.close()
    logs = [
        {
            "tbotan/system": np.array([system[c]]),
            "tbotan/sample": np.array([sample[c]]),
            "tbotan/energy": np.array([energy[c]]),
            "tbotan/fire_steps": np.array([steps[c]]),
            "tbotan/mean_force": np.array([mean_force[c]]),
        }
        for c in range(needed)
    ]
    write_gsd(args.output, inherent, logs=logs, config_hash=cfgmod.section_hash(config))
    print(
        f"wrote {args.output}: {needed} inherent structures, e_IS/N = {energy.mean():.5f} "
        f"± {energy.std():.5f}, FIRE steps {int(steps.min())}–{int(steps.max())}, "
        f"max mean|F| = {mean_force.max():.2e}"
    )
    return 0
