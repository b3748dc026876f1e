"""The one progress bar of every long loop (MD segments, FIRE batches, training epochs).

Below the command layer on purpose: library code (:mod:`tbotan.md.protocols`,
:mod:`tbotan.learning.training`) draws it without importing :mod:`tbotan.commands`.
"""

from __future__ import annotations

import sys


def progress_bar(total: int, description: str, **options):
    """A tqdm progress bar on stderr; ``options`` (``initial``, ``unit``, ``mininterval``, ...)
    go to :class:`tqdm.tqdm` and override the defaults (``mininterval=1.0``)."""
    from tqdm import tqdm

    kwargs = {"file": sys.stderr, "dynamic_ncols": True, "mininterval": 1.0, **options}
    return tqdm(total=total, desc=description, **kwargs)


def progress_message(text: str) -> None:
    """A line on stderr that does not break a progress bar being drawn."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)
