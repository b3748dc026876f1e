"""Small atomic-file helpers, and the one way output files fail.

Every output is written under a temporary name (``<name>.tmp``) and renamed only when complete;
when writing fails (read-only folder, disk full, a quota, an interruption) the temporary file is
removed and an :class:`OutputError` names the file and what to do.  :func:`check_writable` lets
a stage refuse an output it could not write *before* it spends hours of MD.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tbotan.errors import EnvironmentProblem, FileFormatError, MissingInputError

#: errno values of failures to write that the user fixes (space, permissions, read-only mounts).
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
WRITE_ERRNOS = frozenset(_NO_SPACE | _NO_PERMISSION | {errno.EIO, errno.ENOTDIR, errno.EISDIR})


class OutputError(EnvironmentProblem):
    """An output file cannot be written (read-only folder, disk full, ...); nothing was left."""


def _errno_of(exc: BaseException) -> int | None:
    """The errno of an OSError, or the one HDF5 quotes in its messages ('errno = 28')."""
    code = getattr(exc, "errno", None)
    if code is None:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    return code


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the file system refusing a write (not a bug): any OSError, or a
    library error (h5py raises RuntimeError) quoting a write errno."""
    return isinstance(exc, OSError) or _errno_of(exc) in WRITE_ERRNOS


def output_error(exc: BaseException, path: str | os.PathLike) -> OutputError:
    """An :class:`OutputError` for the failure ``exc`` while writing ``path``."""
    code = _errno_of(exc)
    reason = getattr(exc, "strerror", None)
    if not reason and code is not None and code in WRITE_ERRNOS:
        reason = os.strerror(code)
    reason = reason or " ".join(str(exc).split()) or type(exc).__name__
    if code in _NO_SPACE or "No space left" in str(exc) or "File too large" in str(exc):
        hint = "free disk space (or choose an output folder on another disk) and rerun"
    elif code in _NO_PERMISSION or "Permission denied" in str(exc) or "Read-only" in str(exc):
        hint = "make the output folder writable (or choose another one) and rerun"
    else:
        hint = "check the output path and rerun"
    return OutputError(f"cannot write {path}: {reason}; {hint}")


def remove_quietly(path: str | os.PathLike) -> None:
    """Remove a file if it exists; never raises."""
    try:
        Path(path).unlink()
    except OSError:
        pass


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary name a file is written under before its rename: ``<name>.tmp``."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically: yields the temporary path, renames it to ``path`` at the end.

    If the body (or the rename) fails for any reason the temporary file is removed, so no file
    that looks complete is ever left; an ``OSError`` becomes an :class:`OutputError` naming
    ``path``.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        remove_quietly(tmp)
        if isinstance(exc, Exception) and is_write_failure(exc):
            raise output_error(exc, path) from exc
        raise


def _probe_write(probe: Path) -> None:
    with open(probe, "wb") as fh:
        fh.write(b"tbotan")
        fh.flush()
        os.fsync(fh.fileno())


def check_writable(*paths: str | os.PathLike | None) -> None:
    """Refuse, before any work, outputs that cannot be written (:class:`OutputError`).

    Creates each output's folder and writes and removes a small probe file beside it; a path
    that is an existing folder is refused as well.
    """
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise OutputError(f"cannot write {path}: it is a folder; give a file name")
        probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _probe_write(probe)
        except OSError as exc:
            raise output_error(exc, path) from exc
        finally:
            remove_quietly(probe)


def check_space(path: str | os.PathLike, nbytes: int) -> None:
    """Refuse (OutputError) to write ``nbytes`` to ``path`` when its disk has less room free."""
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise OutputError(
            f"cannot write {path}: it needs about {nbytes / 1e6:.1f} MB but only "
            f"{free / 1e6:.1f} MB are free on that disk; free disk space (or choose an output "
            "folder on another disk) and rerun"
        )


def write_hdf5(
    path: str | os.PathLike, fill: Callable, units: Callable[[str], str] | None = None
) -> None:
    """Write an HDF5 file atomically and robustly: ``fill(h5py_file)`` builds it in memory.

    The file image is built in memory and then written with plain file I/O, so a full disk or
    a read-only folder is an ordinary OSError (an :class:`OutputError`, temporary file
    removed): HDF5 itself, when a write fails under it, can leave a broken file or crash on
    cleanup.  The free space is checked before the bytes are written.

    ``units(name)``: the units of the dataset ``name`` (e.g. ``"sigma_AA"``), stored as its
    ``units`` attribute; every dataset of the file gets one.
    """
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
        if units is not None:

            def label(name: str, item) -> None:
                if isinstance(item, h5py.Dataset):
                    item.attrs["units"] = units(name)

            f.visititems(label)
    image = buffer.getbuffer()
    check_space(path, image.nbytes)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(image)
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike, data, indent: int = 1) -> None:
    """Write ``data`` to ``path`` as JSON (NumPy scalars and arrays as numbers and lists),
    indented by ``indent``, atomically (temporary name, then rename; nothing left on failure)."""
    text = json.dumps(data, indent=indent, default=_default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (temporary name, then rename; nothing left on failure)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike):
    """Read a JSON file, with a clear error when it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(
            f"{path} is not valid JSON ({exc}): it is damaged; rerun the stage that wrote it"
        ) from exc


def _default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
