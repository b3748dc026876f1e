"""The segment runner: every long MD protocol is a list of segments run by :func:`run_segments`.

A :class:`Segment` runs n steps with an integrator, then its end-of-segment :class:`Action`
(record energies, take a sample, ...), which the protocol's handler performs; the list is fixed
in advance by the protocol's parameters (:mod:`tbotan.md.protocols`).  Each segment starts a
fresh engine simulation from the previous segment's state, so the result is a pure function of
the parameters and seed, and any segment boundary is a valid checkpoint
(:class:`tbotan.md.checkpoint.Checkpointer`): a killed run resumes to exactly the result of an
uninterrupted one.  The stop signals, the wall-clock checkpoint interval and the interruption
are those of every resumable loop (:mod:`tbotan.resumable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from tbotan.md import DynamicsParameters, Engine
from tbotan.md.checkpoint import Checkpointer
from tbotan.physics.configurations import ConfigurationBatch
from tbotan.progress import progress_bar, progress_message
from tbotan.resumable import ResumableLoop


class Action(str, Enum):
    """What a protocol does at the end of a :class:`Segment` (its handler dispatches on it).

    A ``str`` enum: members compare equal to, and serialise as, their values.
    """

    NONE = "none"  # nothing: the segment only advances the state
    MELTED = "melted"  # equilibration: keep the molten state (reference of the MSD)
    ENERGY = "energy"  # equilibration: record U/N and T
    ENERGY_END = "energy_end"  # equilibration: record, and end of the equilibration window
    SAMPLE = "sample"  # equilibration: record, then take a sample (decorrelated from the last)
    ORIGIN = "origin"  # τα: a new time origin of F_s
    LAG = "lag"  # τα: F_s at one lag from the current origin
    EXTRA = "extra"  # iso: keep the replicas at an extra label time


@dataclass(frozen=True)
class Segment:
    """Run ``n_steps`` with ``integrator``, then perform ``action``; checkpoint if asked."""

    phase: str
    n_steps: int
    integrator: DynamicsParameters
    action: Action = Action.NONE
    checkpoint: bool = False


def run_segments(
    engine: Engine,
    initial: ConfigurationBatch,
    segments: list[Segment],
    handler: Callable,
    checkpointer: Checkpointer | None,
    description: str = "MD",
    record: dict | None = None,
):
    """Run ``segments`` in order with checkpoints; returns (state, collected, record).

    ``handler(index, segment, state, record, collected)`` performs the segment's action: it
    may update ``record`` in place and returns ``(collected, state)``, the new collected
    batch and the state to go on from (``state`` itself unless the action advanced it).

    SIGTERM or SIGUSR1 (a scheduler's time limit) makes it checkpoint at the end of the current
    segment and raise :class:`~tbotan.resumable.Interrupted`; with
    ``checkpoint_interval_minutes`` set (:func:`~tbotan.resumable.set_checkpoint_interval`)
    it also checkpoints at the first segment boundary after that much wall time.  Any boundary
    is a valid checkpoint: each segment starts afresh from the previous one's state, so resuming
    stays exact.
    """
    state, collected, start = initial, None, 0
    record = {} if record is None else record
    if checkpointer is not None:
        ckpt = checkpointer.load()
        if ckpt is not None:
            state, collected, start, record = ckpt.state, ckpt.collected, ckpt.index, ckpt.record
            # on stderr whatever the log level: a resumed run is what a user of a killed job
            # looks for in its log
            progress_message(
                f"{description}: resuming from checkpoint after segment {start} of {len(segments)}"
            )
    steps = np.cumsum([0] + [s.n_steps for s in segments])
    bar = progress_bar(
        int(steps[-1]), description, initial=int(steps[start]), unit="step", mininterval=2.0
    )
    with ResumableLoop() as loop:
        for index in range(start, len(segments)):
            segment = segments[index]
            if segment.n_steps:
                sim = engine.simulation(state, segment.integrator)
                sim.run(segment.n_steps)
                state = sim.state()
            collected, state = handler(index, segment, state, record, collected)
            bar.update(segment.n_steps)
            if loop.boundary(segment.checkpoint) and checkpointer is not None:
                checkpointer.save(index + 1, state, record, collected)
                loop.checkpointed()
            if loop.stop is not None and index + 1 < len(segments):
                bar.close()
                where = (
                    f"checkpoint written after segment {index + 1} of {len(segments)}; "
                    "rerun the same command to resume"
                    if checkpointer is not None
                    else "no checkpoint folder: the run starts afresh when rerun"
                )
                raise loop.interrupted(description, f"; {where}")
    bar.close()
    return state, collected, record


__all__ = ["Action", "Segment", "run_segments"]
