"""The ``tbotan`` command: one sub-command per pipeline stage, plus ``benchmark``.

Sub-commands live in :mod:`tbotan.commands`.  Errors the user can fix (bad configuration,
missing or damaged files, a simulation that blew up) are printed as one clear message with
exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tbotan import __version__
from tbotan.commands import COMMANDS


class UserError(Exception):
    """An error caused by input the user controls; printed without a traceback."""


def _modules():
    return {
        name: importlib.import_module(f"tbotan.commands.{name.replace('-', '_')}")
        for name in COMMANDS
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tbotan",
        description="KALJ molecular dynamics, isoconfigurational labels and T-BOTAN.",
    )
    parser.add_argument("--version", action="version", version=f"tbotan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in _modules().items():
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(command)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types reported as one-line messages."""
    from tbotan.config import ConfigError
    from tbotan.configuration import ConfigurationError
    from tbotan.dataset import DatasetError
    from tbotan.md import SimulationError
    from tbotan.predictions import PredictionsError
    from tbotan.training import TrainingError

    return (
        UserError,
        TrainingError,
        PredictionsError,
        ConfigError,
        ConfigurationError,
        DatasetError,
        SimulationError,
        FileNotFoundError,
        ValueError,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = _modules()[args.command]
    try:
        return module.run(args)
    except user_errors() as exc:
        print(f"tbotan {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
