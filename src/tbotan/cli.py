"""The ``tbotan`` command: one sub-command per pipeline stage, plus ``benchmark``.

Sub-commands live in :mod:`tbotan.commands`.  Errors the user can fix (bad configuration,
missing or damaged files, a simulation that blew up: :class:`tbotan.errors.InputError` and its
subclasses), out of memory and the environment's failures to write (disk full, permissions)
are printed as one clear message with exit status 2, never as a traceback.  Any other exception
is a bug: exit status 1 with its traceback (a ``ValueError`` from NumPy inside the library
included).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from tbotan import __version__
from tbotan.commands import COMMANDS
from tbotan.errors import InputError


class UserError(InputError):
    """An input error found by the command layer (arguments, pre-flight checks)."""


def _modules():
    return {
        name: importlib.import_module(f"tbotan.commands.{name.replace('-', '_')}")
        for name in COMMANDS
    }


LOG_LEVELS = ("debug", "info", "warning", "error")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in --help, except the empty ones (None, False, [])."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default == []:
            return action.help
        return super()._get_help_string(action)


def _add_logging_options(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default,
        help="log progress details (= --log-level info)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=default, help="messages shown (default warning)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tbotan",
        description="KALJ molecular dynamics, isoconfigurational labels and T-BOTAN.",
        epilog="exit status: 0 done; 2 an error in the input or the environment, explained in "
        "one line (also a wrong command line); 128 + N stopped by signal N (SIGTERM: 143, "
        "SIGUSR1: 138) after writing a checkpoint, rerun to resume; 1 a bug (traceback), or "
        "figures drew no figure",
    )
    parser.add_argument("--version", action="version", version=f"tbotan {__version__}")
    _add_logging_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in _modules().items():
        command = sub.add_parser(
            name, help=module.HELP, description=module.__doc__, formatter_class=_HelpFormatter
        )
        module.add_arguments(command)
        # also after the sub-command; SUPPRESS keeps a value given before it
        _add_logging_options(command, default=argparse.SUPPRESS)
    return parser


def log_level(args) -> int:
    """The logging level of ``--log-level`` / ``-v`` (WARNING without either)."""
    if getattr(args, "log_level", None):
        return getattr(logging, args.log_level.upper())
    return logging.INFO if getattr(args, "verbose", None) else logging.WARNING


#: errno values of OSErrors that are the environment's fault (space, permissions), not a bug.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EIO,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
    }
)


def one_line(message: str) -> str:
    """A message on one line: continuation lines joined with '; '."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    head, rest = lines[0], "; ".join(lines[1:])
    return f"{head} {rest}" if head.endswith(":") else f"{head}; {rest}"


def describe_error(exc: BaseException) -> str | None:
    """The one-line message of an expected failure, or None for a bug (traceback)."""
    if isinstance(exc, InputError):
        return one_line(str(exc))
    if isinstance(exc, MemoryError):
        return (
            "out of memory"
            + (f" ({one_line(str(exc))})" if str(exc) else "")
            + ": reduce system.n_particles or the batch sizes (equilibration.n_systems, "
            "quench.batch_size, iso.configurations_per_chunk, iso.n_replicas), or run on a "
            "machine with more memory"
        )
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        from tbotan.formats.io_utils import output_error

        return one_line(str(output_error(exc, exc.filename or "a file")))
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=log_level(args),
        format="%(levelname)s %(name)s: %(message)s",
    )
    module = _modules()[args.command]
    from tbotan.resumable import Interrupted

    try:
        return module.run(args)
    except Interrupted as exc:  # a scheduler's signal: checkpoint written, rerun to resume
        print(f"tbotan {args.command}: interrupted: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        message = describe_error(exc)
        if message is None:
            raise
        print(f"tbotan {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
