"""Helpers shared by the stage commands: the configuration argument and pre-flight checks.

The engine of a configuration is built by :func:`tbotan.pipeline.make_engine_from_config`;
the progress bar is :func:`tbotan.progress.progress_bar`.
"""

from __future__ import annotations

import argparse
import sys


def add_config_argument(
    parser: argparse.ArgumentParser, required: bool = False, aliases: tuple[str, ...] = ()
) -> None:
    """``--config YAML...`` (also spelled ``aliases``), read by :func:`load_config`."""
    parser.add_argument(
        "--config",
        *aliases,
        dest="config",
        nargs="+",
        required=required,
        metavar="YAML",
        help="configuration file(s), later ones overlaying earlier ones (validated against "
        "workflow/schemas/config.schema.yaml); defaults apply to missing keys",
    )


class DeprecatedOption(argparse.Action):
    """An old spelling of an option: still accepted, with a note on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"tbotan: {option_string} is deprecated and will be removed; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_output_argument(
    parser: argparse.ArgumentParser, old: str, help: str, required: bool = False, **kwargs
) -> None:
    """``--output`` (the one spelling of every command), with the command's former spelling
    ``old`` still accepted and deprecated; the value lands in ``args.out``."""
    target = parser.add_mutually_exclusive_group(required=required) if required else parser
    target.add_argument("--output", dest="out", help=help, **kwargs)
    target.add_argument(
        old, dest="out", action=DeprecatedOption, new="--output", help=argparse.SUPPRESS, **kwargs
    )


def load_config(args, check_engine: bool = True) -> dict:
    """The validated configuration of ``--config`` (schema defaults when none is given).

    ``check_engine=False`` for stages that run no MD (the MD may run in another environment).
    """
    from tbotan import config as cfgmod
    from tbotan.resumable import set_checkpoint_interval

    paths = getattr(args, "config", None)
    if paths:
        config = cfgmod.load(paths, check_engine=check_engine)
    else:
        config = cfgmod.validate({}, check_engine=check_engine)
    # the long loops (MD segments, training epochs) also checkpoint after this much wall time
    set_checkpoint_interval(config.get("checkpoint_interval_minutes"))
    return config


# ---------------------------------------------------------------------------- pre-flight checks
# Each stage calls these before any MD, so that bad input fails in seconds, not after hours.


def add_restart_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restart-if-incompatible",
        action="store_true",
        help="a checkpoint (<output>.ckpt/) that cannot be resumed, made with other parameters "
        "or damaged, is moved to <output>.ckpt.stale/ and the run starts afresh (what the "
        "workflow does); without it, such a checkpoint is an error",
    )


def available_memory(device: str) -> tuple[int | None, str]:
    """(bytes available, where) on ``device`` ('cpu', 'cuda', 'cuda:1'); None when unknown."""
    if str(device).startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                free, _ = torch.cuda.mem_get_info(torch.device(device))
                return int(free), f"free on {device}"
        except Exception:  # no usable CUDA here: the engine will say so itself
            return None, device
        return None, device
    candidates = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # a cgroup (v2) limit, as in batch jobs and containers
        from pathlib import Path

        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            candidates.append(max(int(limit) - int(used), 0))
    except (OSError, ValueError):
        pass
    return (min(candidates), "available on this host") if candidates else (None, "host")


def check_memory(
    config: dict,
    stage: str,
    engine=None,
    n_systems: int | None = None,
    n_particles: int | None = None,
) -> None:
    """Refuse a stage whose lower-bound memory need exceeds what is available (UserError)."""
    from tbotan import config as cfgmod
    from tbotan.cli import UserError

    estimate = cfgmod.memory_estimate(config, stage, n_systems, n_particles)
    device = "cpu"
    if engine is not None:
        device = str(engine.describe().get("device", "cpu"))
    available, where = available_memory(device)
    if available is None or estimate["bytes"] <= available:
        return
    gib = 1024.0**3
    raise UserError(
        f"{stage} needs at least {estimate['bytes'] / gib:.1f} GiB for {estimate['systems']} "
        f"systems of N = {estimate['n_particles']} (neighbour lists and particle arrays), but "
        f"only {available / gib:.1f} GiB is {where}: reduce {' or '.join(estimate['keys'])}, or "
        "run where more memory is available"
    )


def move_checkpoint_aside(directory, reason: str) -> None:
    """Move ``directory`` to ``<directory>.stale`` (replacing an older one), with a note."""
    import os
    import shutil
    from pathlib import Path

    directory = Path(directory)
    stale = directory.with_name(directory.name + ".stale")
    shutil.rmtree(stale, ignore_errors=True)
    os.replace(directory, stale)
    print(f"note: {reason}; moved it to {stale} and starting afresh", file=sys.stderr)


def run_resumable(protocol, checkpoint_dir, restart: bool):
    """``protocol()`` with the checkpoint folder checked first.

    A damaged checkpoint, or one made with other parameters (``CheckpointMismatch``: the
    configuration changed after the run was killed), is a one-line UserError naming the folder,
    or with ``restart`` (``--restart-if-incompatible``) is moved aside and the run starts afresh.
    """
    from tbotan.cli import UserError
    from tbotan.md.checkpoint import Checkpointer, CheckpointMismatch

    flag = "--restart-if-incompatible"
    problem = Checkpointer.problem(checkpoint_dir)
    if problem is not None:
        if not restart:
            raise UserError(
                f"{problem}: delete {checkpoint_dir} to start over, or pass {flag} to move it aside"
            )
        move_checkpoint_aside(checkpoint_dir, problem)
    try:
        return protocol()
    except CheckpointMismatch as exc:
        if not restart:
            raise UserError(
                f"{one_line_text(exc)} (the configuration changed since the run was "
                f"interrupted); or pass {flag} to move it aside"
            ) from exc
        move_checkpoint_aside(checkpoint_dir, one_line_text(exc))
        return protocol()


def one_line_text(exc: BaseException) -> str:
    return " ".join(str(exc).split())
