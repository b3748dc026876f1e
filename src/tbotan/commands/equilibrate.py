"""Equilibrium configurations at one temperature (docs/physics.md §3).

Independent systems run side by side in one batch: random start, melt, NVT at T for
``equilibration_tau_alpha`` τα, then samples every ``sample_interval_tau_alpha`` τα.  The run
checkpoints to ``<output>.ckpt/`` and resumes from there when restarted, with the same result.
It refuses to write a state that fails the equilibration checks (energy drift over the second
half of the equilibration, A-particle MSD between samples) unless
``equilibration.allow_unequilibrated`` is set.
"""

from __future__ import annotations

from tbotan.commands.common import (
    add_config_argument,
    add_restart_argument,
    check_memory,
    load_config,
    run_resumable,
)

NAME = "equilibrate"
HELP = "equilibrium configurations at one temperature (GSD + checks report)"


def add_arguments(parser) -> None:
    add_config_argument(parser)
    parser.add_argument("--temperature", required=True, help="T, as in the configuration")
    parser.add_argument("--output", required=True, help="GSD file of the samples")
    parser.add_argument("--report", default=None, help="JSON report (default: <output>.json)")
    add_restart_argument(parser)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from tbotan import config as cfgmod
    from tbotan.cli import UserError
    from tbotan.formats.io_utils import check_writable, remove_quietly, write_json
    from tbotan.md.checkpoint import Checkpointer
    from tbotan.md.protocols import EquilibrationError, equilibrate
    from tbotan.physics.configurations import write_gsd
    from tbotan.pipeline import equilibration_parameters, make_engine_from_config

    config = load_config(args)
    params = equilibration_parameters(config, float(args.temperature))
    output = Path(args.output)
    report_path = args.report or output.with_suffix(".json")
    check_writable(output, report_path)
    engine = make_engine_from_config(config)
    check_memory(config, "equilibrate", engine)
    ckpt_dir = output.with_name(output.name + ".ckpt")
    print(
        f"equilibrating {params.n_systems} systems of N = {params.n_particles} at "
        f"T = {params.temperature:g} ({engine.name} engine): {params.equilibration_time:g} time "
        f"units, then {params.samples_per_system} samples {params.sample_interval:g} apart"
    )
    try:
        result = run_resumable(
            lambda: equilibrate(engine, params, checkpoint_dir=ckpt_dir),
            ckpt_dir,
            args.restart_if_incompatible,
        )
    except EquilibrationError as exc:
        write_json(report_path, {**exc.args[1].report, "engine": engine.describe()})
        raise UserError(f"{exc} (report: {report_path}; checkpoints kept in {ckpt_dir})") from exc
    result.report["engine"] = engine.describe()
    logs = [
        {"tbotan/system": np.array([s]), "tbotan/sample": np.array([k])}
        for s, k in zip(result.system, result.sample, strict=True)
    ]
    write_gsd(output, result.samples, logs=logs, config_hash=cfgmod.section_hash(config))
    try:
        write_json(report_path, result.report)
    except BaseException:
        remove_quietly(output)  # the pair is complete or absent (checkpoints are kept)
        raise
    Checkpointer.remove(ckpt_dir)
    report = result.report
    status = "passed" if report["passed"] else "FAILED (allowed): " + "; ".join(report["failures"])
    print(
        f"wrote {output}: {result.samples.n_systems} configurations, <U/N> = "
        f"{report['potential_energy_mean']:.5f}, equilibration checks {status}"
    )
    return 0
