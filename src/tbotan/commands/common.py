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


def load_config(args) -> dict:
    """The validated configuration of ``--config`` (schema defaults when none is given)."""
    from tbotan import config as cfgmod

    paths = getattr(args, "config", None)
    return cfgmod.load(paths) if paths else cfgmod.validate({})


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
