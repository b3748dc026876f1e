"""What every resumable loop shares: stop signals, the wall-clock checkpoint interval, the
interruption.

Two long loops resume exactly from their checkpoints: the MD segments of
:func:`tbotan.md.segments.run_segments` (checkpoints: :class:`tbotan.md.checkpoint.Checkpointer`)
and the training epochs of :class:`tbotan.learning.training.Trainer` (checkpoints:
:class:`tbotan.learning.checkpoint.TrainingCheckpoint`).  Both run inside a
:class:`ResumableLoop`, which decides at each boundary of the loop (where resuming is exact)
whether to checkpoint and whether to stop.

A batch scheduler ends a job with a signal: SLURM sends SIGTERM at its time limit or on scancel
(then SIGKILL after its KillWait), and ``sbatch --signal=TERM@600`` (profiles/slurm) or
``--signal=USR1@600`` sends one ahead of the limit.  Within :func:`stop_on_signals` a signal
only sets a flag; the loop writes a checkpoint at its next boundary and raises
:class:`Interrupted`, and the command exits with 128 + the signal number.  Independently,
``checkpoint_interval_minutes`` (configuration; :func:`set_checkpoint_interval`) adds a
checkpoint at the first boundary after that much wall time since the last one.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Signals that ask a long loop to checkpoint and stop.
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
_stop: dict = {"signal": None, "interval_s": None}


class Interrupted(Exception):
    """A run stopped by a signal after writing its checkpoint; rerun the command to resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal number, the shell's convention for a job ended by a signal."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``'SIGTERM'`` for 15, ..., ``'signal N'`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within this block SIGTERM and SIGUSR1 request a stop (:func:`stop_requested`) instead of
    killing the process; the previous handlers come back afterwards.  Outside the main thread
    (where Python cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(signum, frame):
        _stop["signal"] = signum

    clear_stop_request()
    previous = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, request)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_requested() -> int | None:
    """The number of the signal that asked for a stop, or None."""
    return _stop["signal"]


def clear_stop_request() -> None:
    _stop["signal"] = None


def set_checkpoint_interval(minutes: float | None) -> None:
    """Checkpoint at the first loop boundary after ``minutes`` of wall time since the last
    checkpoint (None or 0: only where the loop itself checkpoints)."""
    _stop["interval_s"] = float(minutes) * 60.0 if minutes else None


class CheckpointClock:
    """Whether the wall-clock checkpoint interval has passed since the last checkpoint."""

    def __init__(self) -> None:
        self._now = time.monotonic
        self.last = self._now()

    def due(self) -> bool:
        interval = _stop["interval_s"]
        return interval is not None and self._now() - self.last >= interval

    def reset(self) -> None:
        self.last = self._now()


class ResumableLoop:
    """The boundaries of one resumable loop: whether to checkpoint there, whether to stop.

    Used as ``with ResumableLoop() as loop:`` around the loop (the stop signals are caught
    inside the block, :func:`stop_on_signals`).  At every boundary the loop calls
    :meth:`boundary`, which reads the stop request into :attr:`stop` and says whether to
    checkpoint; after writing one it calls :meth:`checkpointed`; when :attr:`stop` is set it
    ends, with ``raise loop.interrupted(...)`` where the run is not complete.
    """

    def __init__(self) -> None:
        self.clock = CheckpointClock()
        #: the signal number that asked for a stop, as read at the last boundary (or None)
        self.stop: int | None = None
        self._signals = None

    def __enter__(self) -> ResumableLoop:
        self._signals = stop_on_signals()
        self._signals.__enter__()
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._signals.__exit__(*exc)

    def boundary(self, scheduled: bool) -> bool:
        """At a boundary of the loop: read the stop request (:attr:`stop`) and return whether
        to checkpoint here: the loop's own schedule asks for it (``scheduled``), a stop was
        requested, or the wall-clock interval has passed since the last checkpoint."""
        self.stop = stop_requested()
        return bool(scheduled or self.stop is not None or self.clock.due())

    def checkpointed(self) -> None:
        """A checkpoint was written: the wall-clock interval starts again."""
        self.clock.reset()

    def interrupted(self, subject: str, detail: str) -> Interrupted:
        """The :class:`Interrupted` to raise: ``'<subject>: stopped by <SIGNAL><detail>'``."""
        return Interrupted(f"{subject}: stopped by {signal_name(self.stop)}{detail}", self.stop)
