"""``checkpoint.pt`` of a training: written, read back, and checked against the training that
would resume from it (docs/formats.md).

A checkpoint holds the training's identity (model id, variant, λ_g, seed, configuration, model
hyper-parameters, training and validation files), its progress (:class:`TrainingProgress`:
epochs done, wall time, the metrics rows so far, the best epoch's weights), the model and
optimiser states and every global RNG state, so that a resumed training continues exactly
(bit-identical on the CPU).  It is written atomically.  A training may resume from it only
with the same identity and configuration, except the keys of :data:`RESUMABLE_KEYS` (and
``fluctuation_phase`` while the checkpoint is in the first phase, so that a finished training
can be given a second phase); :meth:`TrainingCheckpoint.problem` says why not otherwise.
The loop that writes checkpoints is :meth:`tbotan.learning.training.Trainer.run`, at its
epoch boundaries (:class:`tbotan.resumable.ResumableLoop`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tbotan.formats.model_file import (
    CHECKPOINT_FORMAT,
    FILE_VERSION,
    atomic_save,
    load_file,
    read_metrics_rows,
)

#: Training keys that may change between a checkpoint and its resumption (they do not change
#: the result, or, for ``epochs``, only extend it).
RESUMABLE_KEYS = {
    "global_refit_epochs",  # applied after the last epoch, to the trained trunk
    "global_refit_lr",
    "epochs",
    "device",
    "compile",
    "amp",
    "checkpoint_every",
    "num_workers",
    "cache_graphs",
    "seeds",
    "ablations",
    "ablation_seeds",
    "lambda_global_sweep",
}

#: The identity keys a resumed training must share with its checkpoint (besides the
#: configuration, compared section by section).
IDENTITY_KEYS = ("variant", "lambda_global", "seed", "train_files", "validation_files")


def resumable_keys(training: dict) -> set[str]:
    """Training keys a resumption may change (``epochs`` only with a constant rate: the
    cosine schedule depends on it)."""
    if training["lr_schedule"] == "constant":
        return RESUMABLE_KEYS
    return RESUMABLE_KEYS - {"epochs"}


def config_differences(old: dict, new: dict, resumable: set[str] = RESUMABLE_KEYS) -> list[str]:
    """``'section.key (old → new)'`` for every key of ``model``, ``training`` and ``graph``
    that differs, except the training keys of ``resumable``."""
    out = []
    for section in ("model", "training", "graph"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if section == "training" and key in resumable:
                continue
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key} ({a.get(key)!r} → {b.get(key)!r})")
    return out


def _phase2_length_free(config: dict) -> dict:
    """``config`` without ``training.fluctuation_phase.epochs``: the second phase's rate is
    constant, so a longer second phase continues a begun one exactly (as ``epochs`` does for a
    constant first-phase rate)."""
    training = dict(config.get("training", {}))
    if "fluctuation_phase" in training:
        training["fluctuation_phase"] = {
            k: v for k, v in training["fluctuation_phase"].items() if k != "epochs"
        }
    return {**config, "training": training}


# ---------------------------------------------------------------------------- RNG states


def rng_states() -> dict:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) as plain containers."""
    np_state = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    random.setstate(_as_tuple(states["python"]))
    n = states["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        # a checkpoint written with more GPUs than this machine has restores the ones present
        for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------- the file


@dataclass
class TrainingProgress:
    """How far a training has come: what a checkpoint keeps besides the states.

    ``best`` is empty, or ``epoch``, ``score`` (the validation objective) and ``state_dict``
    (CPU tensors) of the epoch with the lowest validation objective so far (first phase).
    ``phase`` is 1 (``training.epochs``) or 2 (``training.fluctuation_phase``, from the weights
    of first-phase epoch ``phase1_epoch``; 0 while in the first phase).
    """

    epoch: int = 0
    elapsed_s: float = 0.0
    metrics: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    phase: int = 1
    phase1_epoch: int = 0


class TrainingCheckpoint:
    """``checkpoint.pt`` of one training.

    Args:
        path: the file (``models/{model_id}/checkpoint.pt``).
        identity: what the training is (``model_id``, ``variant``, ``lambda_global``, ``seed``,
            ``config``, ``hparams``, ``train_files``, ``validation_files``); written into the
            checkpoint and compared with a checkpoint to resume.
        resumable: the training keys a resumption may change (:func:`resumable_keys`).
    """

    def __init__(self, path: str | os.PathLike, identity: dict, resumable: set[str]) -> None:
        self.path = Path(path)
        self.identity = identity
        self.resumable = resumable

    def save(self, progress: TrainingProgress, model: torch.nn.Module, optimizer) -> None:
        """Write the checkpoint atomically (and every global RNG state with it)."""
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "version": FILE_VERSION,
                **self.identity,
                "epoch": progress.epoch,
                "elapsed_s": progress.elapsed_s,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_states(),
                "metrics": progress.metrics,
                "best": progress.best,
                "phase": progress.phase,
                "phase1_epoch": progress.phase1_epoch,
            },
            self.path,
        )

    def read(self) -> dict | None:
        """The checkpoint's contents, or None when there is none.

        Raises:
            tbotan.formats.model_file.ModelFileError: the file is no checkpoint (damaged,
                foreign, or of another format version).
        """
        if not self.path.is_file():
            return None
        return load_file(self.path, CHECKPOINT_FORMAT)

    def problem(self, saved: dict) -> str | None:
        """Why this training cannot resume from the checkpoint contents ``saved`` (incomplete,
        another identity, another configuration), or None when it can."""
        where = str(self.path)
        missing = {"variant", "config", "model", "optimizer", "rng", "epoch"} - set(saved)
        if missing:
            return f"{where}: not a complete checkpoint (no {sorted(missing)})"
        for key in IDENTITY_KEYS:
            if saved[key] != self.identity[key]:
                return (
                    f"{where}: cannot resume, {key} differs (checkpoint {saved[key]!r}, "
                    f"now {self.identity[key]!r}); use another output folder or drop --resume"
                )
        resumable = set(self.resumable)
        if saved.get("phase", 1) == 1:  # the second phase has not started: choose it anew
            resumable.add("fluctuation_phase")
            first_phase = self.identity["config"]["training"]["epochs"]
            if int(saved["epoch"]) > first_phase:
                return (
                    f"{where}: cannot resume, the checkpoint is at epoch {saved['epoch']} of the "
                    f"first phase, beyond training.epochs ({first_phase})"
                )
        else:  # the phase boundary is fixed once the second phase has begun
            resumable.discard("epochs")
            phase2 = self.identity["config"]["training"]["fluctuation_phase"]
            total = self.identity["config"]["training"]["epochs"] + phase2["epochs"]
            if int(saved["epoch"]) > total:
                return (
                    f"{where}: cannot resume, the checkpoint is at epoch {saved['epoch']}, "
                    f"beyond the {total} epochs of both phases"
                )
        old, new = saved["config"], self.identity["config"]
        if saved.get("phase", 1) == 2:
            old, new = _phase2_length_free(old), _phase2_length_free(new)
        differing = config_differences(old, new, resumable)
        if differing:
            return f"{where}: cannot resume, the configuration differs in {', '.join(differing)}"
        return None

    def restore(
        self,
        saved: dict,
        model: torch.nn.Module,
        optimizer,
        history_files: Sequence[str | os.PathLike] = (),
    ) -> TrainingProgress:
        """Load the model, optimiser and RNG states of ``saved`` (a checkpoint :meth:`problem`
        accepts) and return its progress.

        The metrics rows are the checkpoint's own; a checkpoint from before the history lived
        in it takes them from the first of ``history_files`` (metrics CSV files) that has rows.
        Rows after the checkpoint's epoch are dropped.
        """
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        set_rng_states(saved["rng"])
        epoch = int(saved["epoch"])
        if "metrics" in saved:
            history = saved["metrics"]
        else:
            history = []
            for path in history_files:
                history = read_metrics_rows(path)
                if history:
                    break
        return TrainingProgress(
            epoch=epoch,
            elapsed_s=float(saved["elapsed_s"]),
            metrics=[row for row in history if row["epoch"] <= epoch],
            best=saved.get("best", {}),
            phase=int(saved.get("phase", 1)),
            phase1_epoch=int(saved.get("phase1_epoch", 0)),
        )
