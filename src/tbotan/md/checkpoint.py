"""Checkpoints of the MD protocols' segment runs: complete or absent, never half-written.

A checkpoint folder (``<output>.ckpt/``) holds checkpoints ``ckpt_<index>``, each a folder with
the batch state (``state.gsd``), optional collected configurations (``collected.gsd``) and a
JSON record (``record.json``: fingerprint, index, the protocol's record); it is written under a
temporary name, renamed, and only then published by atomically replacing the pointer file
``latest``.  A run killed at any moment therefore resumes from the last published checkpoint.
A fingerprint (hash of everything that determines the result) guards against resuming with
different parameters.  :meth:`Checkpointer.problem` says whether a folder is a usable
checkpoint before anything runs, and why not; the loop that writes them is
:func:`tbotan.md.segments.run_segments`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tbotan.errors import CheckpointError
from tbotan.formats.io_utils import atomic_path
from tbotan.physics.configurations import (
    ConfigurationBatch,
    ConfigurationError,
    gsd_frame_count,
    read_gsd,
    write_gsd,
)

#: The files of a checkpoint folder and of each checkpoint in it.
POINTER = "latest"
RECORD = "record.json"
STATE = "state.gsd"
COLLECTED = "collected.gsd"


class CheckpointMismatch(CheckpointError):
    """The checkpoint on disk was made with different parameters."""


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    index: int
    state: ConfigurationBatch
    collected: ConfigurationBatch | None
    record: dict


class Checkpointer:
    """Writes and reads the checkpoints of one protocol run in ``directory``."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    @property
    def _pointer(self) -> Path:
        return self.directory / POINTER

    def save(
        self,
        index: int,
        state: ConfigurationBatch,
        record: dict,
        collected: ConfigurationBatch | None = None,
    ) -> None:
        """Publish checkpoint ``index`` (the number of completed segments)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"ckpt_{index:07d}"
        tmp = self.directory / (name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write_gsd(tmp / STATE, state)
        if collected is not None and collected.n_systems:
            write_gsd(tmp / COLLECTED, collected)
        payload = {"fingerprint": self.fingerprint, "index": index, "record": record}
        (tmp / RECORD).write_text(json.dumps(payload))
        final = self.directory / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        with atomic_path(self._pointer) as pointer_tmp:
            pointer_tmp.write_text(name)
        for old in self.directory.glob("ckpt_*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self) -> Checkpoint | None:
        """The last published checkpoint, or None when there is none."""
        if not self._pointer.is_file():
            return None
        folder = self.directory / self._pointer.read_text().strip()
        payload = json.loads((folder / RECORD).read_text())
        if payload["fingerprint"] != self.fingerprint:
            raise CheckpointMismatch(
                f"checkpoint {folder} was made with different parameters (fingerprint "
                f"{payload['fingerprint']} ≠ {self.fingerprint}); delete {self.directory} to "
                "start over"
            )
        collected = folder / COLLECTED
        return Checkpoint(
            index=int(payload["index"]),
            state=read_gsd(folder / STATE),
            collected=read_gsd(collected) if collected.is_file() else None,
            record=payload["record"],
        )

    @staticmethod
    def problem(directory: str | os.PathLike) -> str | None:
        """Why the checkpoint folder ``directory`` cannot be resumed, or None (absent or sound).

        Checks what any run would need, whatever its parameters: a readable pointer naming a
        checkpoint of this folder, a record with fingerprint, index and record, and complete
        GSD files.  (Whether the parameters match is :meth:`load`'s question: it raises
        :class:`CheckpointMismatch`.)
        """
        directory = Path(directory)
        pointer = directory / POINTER
        if not pointer.exists():
            return None
        try:
            name = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            return f"checkpoint pointer {pointer} cannot be read ({exc})"
        folder = directory / name
        if not name or "/" in name or not folder.is_dir():
            return (
                f"checkpoint pointer {pointer} names {name[:40]!r}, which is not a checkpoint here"
            )
        record = folder / RECORD
        try:
            payload = json.loads(record.read_text())
        except FileNotFoundError:
            return f"checkpoint record {record} is missing"
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return f"checkpoint record {record} is damaged ({' '.join(str(exc).split())})"
        index = payload.get("index") if isinstance(payload, dict) else None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("fingerprint"), str)
            or not isinstance(index, int)
            or isinstance(index, bool)
            or index < 0
            or not isinstance(payload.get("record"), dict)
        ):
            return f"checkpoint record {record} is damaged (no fingerprint, index and record)"
        for part in (STATE, COLLECTED):
            path = folder / part
            if part == STATE or path.exists():
                try:
                    gsd_frame_count(path)
                except ConfigurationError as exc:
                    return f"checkpoint {folder}: {exc}"
        return None

    @staticmethod
    def remove(directory: str | os.PathLike) -> None:
        """Remove the checkpoint folder ``directory`` and every checkpoint in it (after the
        final output is written); nothing happens when there is none."""
        shutil.rmtree(directory, ignore_errors=True)
