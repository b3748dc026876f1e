"""Checkpoints of long protocols: complete or absent, never half-written.

A checkpoint is a folder ``ckpt_<index>`` holding the batch state (GSD), optional collected
configurations (GSD) and a JSON record; it is written under a temporary name, renamed, and only
then published by atomically replacing the pointer file ``latest``.  A run killed at any moment
therefore resumes from the last published checkpoint.  A fingerprint (hash of everything that
determines the result) guards against resuming with different parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tbotan.errors import CheckpointError
from tbotan.formats.io_utils import atomic_path
from tbotan.physics.configurations import ConfigurationBatch, read_gsd, write_gsd


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
        return self.directory / "latest"

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
        write_gsd(tmp / "state.gsd", state)
        if collected is not None and collected.n_systems:
            write_gsd(tmp / "collected.gsd", collected)
        payload = {"fingerprint": self.fingerprint, "index": index, "record": record}
        (tmp / "record.json").write_text(json.dumps(payload))
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
        payload = json.loads((folder / "record.json").read_text())
        if payload["fingerprint"] != self.fingerprint:
            raise CheckpointMismatch(
                f"checkpoint {folder} was made with different parameters (fingerprint "
                f"{payload['fingerprint']} ≠ {self.fingerprint}); delete {self.directory} to "
                "start over"
            )
        collected = folder / "collected.gsd"
        return Checkpoint(
            index=int(payload["index"]),
            state=read_gsd(folder / "state.gsd"),
            collected=read_gsd(collected) if collected.is_file() else None,
            record=payload["record"],
        )

    def clear(self) -> None:
        """Remove every checkpoint (after the final output is written)."""
        shutil.rmtree(self.directory, ignore_errors=True)
