"""The project's input errors: what the user can fix, as opposed to a bug.

Every error the user can fix (a bad configuration, a missing, damaged or foreign input file, a
checkpoint of another run, an output that cannot be written, a simulation that blew up with the
parameters given) is an :class:`InputError`; ``tbotan`` (:mod:`tbotan.cli`) prints it as one
line naming what and where and exits with status 2. Any other exception, a ``ValueError`` from
NumPy included, is a bug: exit status 1 with its traceback.

The subclasses below are the families the command layer and the tests tell apart; the modules
define their own, more specific ones on top of them (``formats.dataset.DatasetError``,
``formats.model_file.ModelFileError``, ``md.checkpoint.CheckpointMismatch``, ...). Some also
derive from the built-in type they replaced (``ValueError``, ``FileNotFoundError``,
``RuntimeError``) so that callers catching that type keep working; the command line maps only
:class:`InputError`.

This module imports nothing of the project: every stage, ``physics/`` and ``md/`` included, may
raise these.
"""

from __future__ import annotations


class InputError(Exception):
    """An error in the input the user controls (configuration, files, command line) or in the
    environment it runs in; reported as one line, exit status 2, no traceback."""


class ConfigError(InputError, ValueError):
    """The configuration (or a command-line value standing for one of its keys) is invalid;
    the message names the key."""


class FileFormatError(InputError, ValueError):
    """An input file is damaged, truncated, of another format or inconsistent with the run;
    the message names the file."""


class MissingInputError(InputError, FileNotFoundError):
    """An input file or folder the run needs does not exist; the message names it."""


class CheckpointError(InputError, RuntimeError):
    """A checkpoint on disk cannot be resumed (damaged, or made by a run with other
    parameters); the message names the folder and what to do."""


class EnvironmentProblem(InputError, RuntimeError):
    """The machine cannot do what was asked (no GPU, an engine not installed, not enough
    memory, an output that cannot be written)."""


class NameFormatError(InputError, ValueError):
    """A name written in one of the project's formats (a model id, a metrics column) does not
    parse; the message names it and the format."""
