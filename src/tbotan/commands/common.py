"""Helpers shared by the stage commands: configuration, engine and progress bars."""

from __future__ import annotations

import argparse
import sys


def add_config_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--config",
        nargs="+",
        required=required,
        metavar="YAML",
        help="configuration file(s), later ones overlaying earlier ones (validated against "
        "workflow/schemas/config.schema.yaml); defaults apply to missing keys",
    )


def load_config(args, check_engine: bool = True) -> dict:
    """The validated configuration of ``--config`` (schema defaults when none is given).

    ``check_engine=False`` for stages that run no MD (the MD may run in another environment).
    """
    from tbotan import config as cfgmod

    paths = getattr(args, "config", None)
    if paths:
        return cfgmod.load(paths, check_engine=check_engine)
    return cfgmod.validate({}, check_engine=check_engine)


def make_engine_from_config(config: dict, name: str | None = None, device: str | None = None):
    """The MD engine of the configuration's ``engine`` section (optionally overridden)."""
    from tbotan import config as cfgmod
    from tbotan.md import make_engine

    section = dict(config["engine"])
    if name is not None:
        section["name"] = name
    if device is not None:
        section["device"] = device
    engine_name, options = cfgmod.engine_options({**config, "engine": section})
    return make_engine(engine_name, **options)


def progress_bar(total: int, description: str):
    """A tqdm progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
