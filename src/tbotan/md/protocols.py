"""Simulation protocols, written once against the :class:`~tbotan.md.Engine` interface.

- :func:`equilibrate`: independent systems per temperature, side by side in one batch: random
  start, melt, NVT at T for ``equilibration_tau_alpha`` τα, then samples every
  ``sample_interval_tau_alpha`` τα; with equilibration checks (docs/physics.md §3).
- :func:`measure_tau_alpha`: F_s(q, t) of A particles from several time origins on a log grid,
  τα where F_s = 1/e (docs/physics.md §2).
- :func:`quench`: FIRE to inherent structures (docs/physics.md §4).
- :func:`isoconfigurational`: replicas with independent Maxwell–Boltzmann velocities, run to
  the label time, labels per configuration (docs/physics.md §5).

Every long protocol is a fixed list of *segments* (run n steps with an integrator, then act:
record energies, take a sample, ...), fixed in advance by the parameters.  Each segment starts a
fresh engine simulation from the previous segment's state, so the result is a pure function of
the parameters and seed; checkpoints at segment boundaries (:mod:`tbotan.md.checkpoint`) make a
killed run resume to exactly the result of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from tbotan.md import Engine, Integrator, MinimizeResult, kinetic_temperature
from tbotan.md.checkpoint import Checkpointer
from tbotan.physics import kalj, observables
from tbotan.physics.configurations import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
)
from tbotan.progress import progress_bar, progress_message

log = logging.getLogger(__name__)


class EquilibrationError(RuntimeError):
    """The equilibrium state failed its checks (and was not allowed through).

    ``args[1]`` holds the :class:`EquilibrationResult` (with its report) for inspection.
    """

    def __str__(self) -> str:
        return str(self.args[0])


def derive_seed(base: int, *tags) -> int:
    """A 62-bit seed derived from ``base`` and any tags (stable across runs and platforms)."""
    text = ":".join(str(t) for t in (int(base), *tags))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 2


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
    integrator: Integrator
    action: Action = Action.NONE
    checkpoint: bool = False


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    segment and raise :class:`~tbotan.formats.io_utils.Interrupted`; with
    ``checkpoint_interval_minutes`` set (:func:`~tbotan.formats.io_utils.set_checkpoint_interval`)
    it also checkpoints at the first segment boundary after that much wall time.  Any boundary
    is a valid checkpoint: each segment starts afresh from the previous one's state, so resuming
    stays exact.
    """
    from tbotan.formats.io_utils import (
        CheckpointClock,
        Interrupted,
        signal_name,
        stop_on_signals,
        stop_requested,
    )

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
    clock = CheckpointClock()
    with stop_on_signals():
        for index in range(start, len(segments)):
            segment = segments[index]
            if segment.n_steps:
                sim = engine.simulation(state, segment.integrator)
                sim.run(segment.n_steps)
                state = sim.state()
            collected, state = handler(index, segment, state, record, collected)
            bar.update(segment.n_steps)
            stop = stop_requested()
            if checkpointer is not None and (segment.checkpoint or stop or clock.due()):
                checkpointer.save(index + 1, state, record, collected)
                clock.reset()
            if stop is not None and index + 1 < len(segments):
                bar.close()
                where = (
                    f"checkpoint written after segment {index + 1} of {len(segments)}; "
                    "rerun the same command to resume"
                    if checkpointer is not None
                    else "no checkpoint folder: the run starts afresh when rerun"
                )
                raise Interrupted(f"{description}: stopped by {signal_name(stop)}; {where}", stop)
    bar.close()
    return state, collected, record


def _steps(time: float, dt: float) -> int:
    return max(1, int(round(time / dt)))


def potential_and_temperature(engine: Engine, state: ConfigurationBatch):
    """(B,) U/N (shifted-force, from the engine) and (B,) kinetic temperature 2K/(3N − 3)."""
    u = engine.evaluate(state).potential_energy_per_particle
    n = state.n_particles
    kinetic = 0.5 * (state.velocities**2).sum(axis=(1, 2))
    return u, kinetic_temperature(2.0 * kinetic, n)


# ---------------------------------------------------------------------------- equilibration


@dataclass
class EquilibrationParameters:
    """Everything that determines an equilibration run (all times in time units).

    The pipeline builds it from its configuration with
    :func:`tbotan.pipeline.equilibration_parameters`.
    """

    temperature: float
    tau_alpha: float
    n_particles: int
    density: float
    n_systems: int
    samples_per_system: int
    dt: float
    thermostat_tau: float
    melt_temperature: float
    melt_time: float
    equilibration_time: float
    sample_interval: float
    checkpoint_interval: float
    seed: int
    energy_records: int = 100
    max_drift_sigma: float = 4.0
    min_msd_between_samples: float = 1.0
    max_sample_extensions: int = 50
    allow_unequilibrated: bool = False

    def segments(self) -> list[Segment]:
        T, dt = self.temperature, self.dt
        melt_dt = min(dt, 0.002)  # a lattice start is rough; take small steps while melting
        melt = Integrator(
            dt=melt_dt,
            kT=self.melt_temperature,
            tau=min(self.thermostat_tau, 0.1),
            seed=derive_seed(self.seed, "melt"),
        )
        nvt = Integrator(dt=dt, kT=T, tau=self.thermostat_tau, seed=derive_seed(self.seed, "nvt"))
        n_melt = _steps(self.melt_time, melt_dt)
        out = [Segment("melt", n_melt, melt, Action.MELTED, checkpoint=True)]
        n_eq = _steps(self.equilibration_time, dt)
        per_record = max(1, n_eq // self.energy_records)
        n_records = max(1, n_eq // per_record)
        per_checkpoint = max(1, round(self.checkpoint_interval / (per_record * dt)))
        for r in range(n_records):
            n = per_record if r < n_records - 1 else n_eq - per_record * (n_records - 1)
            last = r == n_records - 1
            out.append(
                Segment(
                    "equilibrate",
                    n,
                    nvt,
                    Action.ENERGY_END if last else Action.ENERGY,
                    checkpoint=last or (r + 1) % per_checkpoint == 0,
                )
            )
        n_interval = _steps(self.sample_interval, dt)
        sub = 10 if n_interval >= 10 else 1
        for _ in range(self.samples_per_system):
            for part in range(sub):
                n = n_interval // sub + (n_interval % sub if part == sub - 1 else 0)
                last = part == sub - 1
                action = Action.SAMPLE if last else Action.ENERGY
                out.append(Segment("sample", n, nvt, action, checkpoint=last))
        return out

    def initial_state(self) -> ConfigurationBatch:
        starts = []
        for b in range(self.n_systems):
            conf = random_configuration(
                self.n_particles, seed=derive_seed(self.seed, "start", b), density=self.density
            )
            v = maxwell_boltzmann_velocities(
                self.n_particles, self.melt_temperature, derive_seed(self.seed, "velocities"), b
            )
            starts.append(conf.with_velocities(v[None]))
        return ConfigurationBatch.concatenate(starts)


@dataclass
class EquilibrationResult:
    """Samples (system-major: all samples of system 0, then system 1, ...) and the report."""

    samples: ConfigurationBatch
    system: np.ndarray  # (C,) system index of each sample
    sample: np.ndarray  # (C,) sample index along its system
    report: dict = field(default_factory=dict)


def equilibrate(
    engine: Engine,
    params: EquilibrationParameters,
    checkpoint_dir: str | Path | None = None,
) -> EquilibrationResult:
    """Run the equilibration protocol (see the module documentation)."""
    segments = params.segments()
    checkpointer = (
        Checkpointer(checkpoint_dir, _fingerprint(asdict(params))) if checkpoint_dir else None
    )
    n_sys = params.n_systems

    def handler(index, segment, state, record, collected):
        if segment.action in (Action.ENERGY, Action.ENERGY_END, Action.SAMPLE):
            u, temperature = potential_and_temperature(engine, state)
            record.setdefault("time", []).append(float(state.timestep[0]) * params.dt)
            record.setdefault("phase", []).append(segment.phase)
            record.setdefault("potential_energy", []).append(u.tolist())
            record.setdefault("temperature", []).append(temperature.tolist())
        if segment.action == Action.ENERGY_END:
            record["equilibration_end_step"] = int(state.timestep[0])
            record["equilibration_msd"] = _a_particle_msd(collected, state).tolist()
            return state.copy(), state  # reference for the first sample's MSD
        if segment.action == Action.MELTED:
            return state.copy(), state  # reference for the MSD over the equilibration
        if segment.action == Action.SAMPLE:
            state = _extend_until_decorrelated(engine, state, collected, segment, params, record)
            return ConfigurationBatch.concatenate([collected, state]), state
        return collected, state

    _, collected, record = run_segments(
        engine,
        params.initial_state(),
        segments,
        handler,
        checkpointer,
        description=f"equilibrate T={params.temperature:g}",
    )
    # collected = [end of equilibration, sample 1, ..., sample S], each a batch of n_sys
    s = params.samples_per_system
    frames = collected.positions.shape[0]
    if frames != n_sys * (s + 1):
        raise RuntimeError(f"internal error: {frames} collected states, expected {n_sys * (s + 1)}")
    report = _equilibration_report(params, record, collected)
    order = [(k + 1) * n_sys + b for b in range(n_sys) for k in range(s)]  # system-major
    samples = collected.select(np.array(order))
    result = EquilibrationResult(
        samples=samples,
        system=np.repeat(np.arange(n_sys), s),
        sample=np.tile(np.arange(s), n_sys),
        report=report,
    )
    if not report["passed"]:
        text = "; ".join(report["failures"])
        if not params.allow_unequilibrated:
            raise EquilibrationError(
                f"T = {params.temperature:g}: the equilibrium state fails its checks ({text}). "
                "Equilibrate longer (temperatures[].equilibration_tau_alpha) or set "
                "equilibration.allow_unequilibrated: true to hand it on anyway.",
                result,
            )
        log.warning(
            "T = %g: equilibration checks failed (%s); continuing as allowed",
            params.temperature,
            text,
        )
    return result


def _a_particle_msd(a: ConfigurationBatch, b: ConfigurationBatch) -> np.ndarray:
    """(B,) mean-square displacement of the A particles between two states of the same systems."""
    d = b.unwrapped_positions() - a.unwrapped_positions()
    mask = a.types[0] == kalj.TYPE_A
    return (d[:, mask] ** 2).sum(-1).mean(-1)


def _extend_until_decorrelated(engine, state, collected, segment, params, record):
    """Run on in steps of one τα until every system's A-particle MSD since its previous sample
    (or the end of the equilibration) exceeds ``min_msd_between_samples``.

    The samples are then at least ``sample_interval`` apart *and* decorrelated; the decision
    depends only on the states, so a resumed run repeats it exactly.
    """
    last = np.arange(collected.n_systems - params.n_systems, collected.n_systems)
    previous = collected.select(last)
    n_tau = _steps(params.tau_alpha, params.dt)
    extensions = 0
    while _a_particle_msd(previous, state).min() < params.min_msd_between_samples:
        if extensions >= params.max_sample_extensions:
            break  # reported by the equilibration checks
        sim = engine.simulation(state, segment.integrator)
        sim.run(n_tau)
        state = sim.state()
        extensions += 1
    record.setdefault("sample_extensions_tau_alpha", []).append(extensions)
    return state


def _equilibration_report(params: EquilibrationParameters, record: dict, collected) -> dict:
    """Energy drift over the second half of the equilibration, MSD between samples."""
    n_sys = params.n_systems
    phases = np.array(record["phase"])
    energy = np.array(record["potential_energy"])  # (records, systems)
    eq = energy[phases == "equilibrate"]
    half = eq[len(eq) // 2 :]
    failures = []
    drift = {}
    if len(half) >= 4:
        q = max(1, len(half) // 4)
        first, last = half[:q].mean(axis=0), half[-q:].mean(axis=0)
        diff = last - first  # per system
        mean_diff = float(diff.mean())
        if n_sys > 1:
            err = float(diff.std(ddof=1) / np.sqrt(n_sys))
        else:  # one system: error from the fluctuations of the records
            err = float(half.std() * np.sqrt(2.0 / q))
        err = max(err, 1e-12)
        drift = {
            "first_quarter_mean": float(first.mean()),
            "last_quarter_mean": float(last.mean()),
            "difference": mean_diff,
            "standard_error": err,
            "sigma": abs(mean_diff) / err,
        }
        if abs(mean_diff) > params.max_drift_sigma * err:
            failures.append(
                f"potential energy drifts by {mean_diff:+.5f} per particle over the second half of "
                f"the equilibration ({abs(mean_diff) / err:.1f} standard errors)"
            )
    positions = collected.unwrapped_positions().reshape(-1, n_sys, params.n_particles, 3)
    types = collected.types[0]
    a = types == kalj.TYPE_A
    msd = ((positions[1:] - positions[:-1])[:, :, a] ** 2).sum(-1).mean(-1)  # (S, systems)
    if msd.size and msd.min() < params.min_msd_between_samples:
        failures.append(
            f"A-particle MSD between consecutive samples is as small as {msd.min():.3f} σ² "
            f"(needs > {params.min_msd_between_samples})"
        )
    u_samples = energy[phases == "sample"]
    return {
        "temperature": params.temperature,
        "tau_alpha": params.tau_alpha,
        "parameters": asdict(params),
        "energy_drift": drift,
        "msd_between_samples": {
            "min": float(msd.min()) if msd.size else None,
            "mean": float(msd.mean()) if msd.size else None,
            "extensions_tau_alpha": record.get("sample_extensions_tau_alpha"),
        },
        "equilibration_msd": float(np.mean(record["equilibration_msd"]))
        if "equilibration_msd" in record
        else None,
        "potential_energy_mean": float(u_samples.mean()) if u_samples.size else None,
        "potential_energy_sem": float(u_samples.mean(0).std(ddof=1) / np.sqrt(n_sys))
        if u_samples.size and n_sys > 1
        else None,
        "kinetic_temperature_mean": float(
            np.array(record["temperature"])[phases == "sample"].mean()
        )
        if u_samples.size
        else None,
        "energy_series": {
            "time": record["time"],
            "phase": record["phase"],
            "mean_potential_energy": energy.mean(axis=1).tolist(),
        },
        "passed": not failures,
        "failures": failures,
    }


# ---------------------------------------------------------------------------- τα


@dataclass
class TauAlphaParameters:
    """Everything that determines a τα measurement (times in time units; from the pipeline's
    configuration: :func:`tbotan.pipeline.tau_alpha_parameters`)."""

    temperature: float
    tau_alpha_estimate: float
    q: float
    max_time: float
    n_origins: int
    points_per_decade: int
    dt: float
    thermostat_tau: float
    seed: int

    def lags(self) -> np.ndarray:
        return observables.log_time_grid(self.max_time, self.dt, self.points_per_decade)


def measure_tau_alpha(
    engine: Engine,
    start: ConfigurationBatch,
    params: TauAlphaParameters,
    checkpoint_dir: str | Path | None = None,
) -> dict:
    """F_s(q, t) of A particles and τα from equilibrium states ``start`` (with velocities).

    For each of ``n_origins`` consecutive windows of length ``max_time`` and each system,
    F_s is measured at the log-spaced lags of :meth:`TauAlphaParameters.lags`; the curve is
    averaged over systems and origins.
    """
    lags = params.lags()
    lag_steps = np.round(lags / params.dt).astype(np.int64)
    integrator = Integrator(
        dt=params.dt, kT=params.temperature, tau=params.thermostat_tau, seed=params.seed
    )
    segments = []
    for _ in range(params.n_origins):
        segments.append(Segment("origin", 0, integrator, Action.ORIGIN))
        previous, checkpointed = 0, 0
        for k, s in enumerate(lag_steps):
            # checkpoint whenever the window has doubled since the last one, and at its end
            save = k == len(lag_steps) - 1 or s >= 2 * max(checkpointed, 1000)
            segments.append(
                Segment("lag", int(s - previous), integrator, Action.LAG, checkpoint=save)
            )
            previous = s
            checkpointed = s if save else checkpointed
    a = start.types[0] == kalj.TYPE_A
    fingerprint = _fingerprint({"params": asdict(params), "start": _batch_digest(start)})
    checkpointer = Checkpointer(checkpoint_dir, fingerprint) if checkpoint_dir else None

    def handler(index, segment, state, record, collected):
        if segment.action == Action.ORIGIN:
            return state.copy(), state
        displacement = state.unwrapped_positions() - collected.unwrapped_positions()
        fs = observables.self_intermediate_scattering(displacement[:, a], params.q)  # (systems,)
        record.setdefault("fs", []).append(fs.tolist())
        return collected, state

    _, _, record = run_segments(
        engine,
        start,
        segments,
        handler,
        checkpointer,
        description=f"tau-alpha T={params.temperature:g}",
    )
    fs = np.array(record["fs"]).reshape(params.n_origins, len(lags), -1)  # (origins, lags, sys)
    per_system = fs.mean(axis=0)  # (lags, systems)
    curve = per_system.mean(axis=1)
    n_sys = per_system.shape[1]
    sem = per_system.std(axis=1, ddof=1) / np.sqrt(n_sys) if n_sys > 1 else np.zeros_like(curve)
    result = {
        "temperature": params.temperature,
        "q": params.q,
        "times": lags.tolist(),
        "fs": curve.tolist(),
        "fs_sem": sem.tolist(),
        "n_systems": int(n_sys),
        "n_origins": params.n_origins,
        "tau_alpha_table": params.tau_alpha_estimate,
        "parameters": asdict(params),
    }
    try:
        tau = observables.tau_alpha_from_fs(lags, curve)
        spread = []
        for b in range(n_sys):
            try:
                spread.append(observables.tau_alpha_from_fs(lags, per_system[:, b]))
            except ValueError:
                continue
        result.update(
            tau_alpha_measured=tau,
            tau_alpha_sem=float(np.std(spread, ddof=1) / np.sqrt(len(spread)))
            if len(spread) > 1
            else None,
            ratio_to_table=tau / params.tau_alpha_estimate,
        )
    except ValueError as exc:
        result.update(tau_alpha_measured=None, error=str(exc))
    return result


def _batch_digest(batch: ConfigurationBatch) -> str:
    return hashlib.sha256(batch.positions.tobytes() + batch.timestep.tobytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------- quench


def quench(
    engine: Engine,
    configurations: ConfigurationBatch,
    fire,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
):
    """FIRE-minimise every configuration, ``batch_size`` at a time.

    Returns:
        a :class:`~tbotan.md.MinimizeResult` (a named tuple: unpacks as (inherent structures,
        e_IS/N (C,), FIRE steps (C,), mean |F| (C,))).
    """
    results = []
    for first in range(0, configurations.n_systems, batch_size):
        idx = np.arange(first, min(first + batch_size, configurations.n_systems))
        results.append(engine.minimize(configurations.select(idx), fire))
        if progress is not None:
            progress(len(idx))
    return MinimizeResult(
        configurations=ConfigurationBatch.concatenate([r.configurations for r in results]),
        energy=np.concatenate([r.energy for r in results]),
        steps=np.concatenate([r.steps for r in results]),
        mean_force=np.concatenate([r.mean_force for r in results]),
    )


# ---------------------------------------------------------------------------- isoconfigurational


@dataclass
class IsoParameters:
    """Everything that determines an isoconfigurational run (times in time units; from the
    pipeline's configuration: :func:`tbotan.pipeline.iso_parameters`)."""

    temperature: float
    tau_alpha: float
    tau_alpha_source: str
    label_time: float
    extra_times: list[float]
    n_replicas: int
    ensemble: str
    dt: float
    thermostat_tau: float
    segment_time: float
    seed: int


def replica_batch(thermal: ConfigurationBatch, config_ids: np.ndarray, params: IsoParameters):
    """R replicas of each configuration with independent Maxwell–Boltzmann velocities.

    Replica r of configuration c (global index ``config_ids[c]``) draws its velocities from the
    stream ``config_ids[c] * R + r`` of the run's seed: identical on every engine and in every
    chunking of the work.

    Returns:
        (batch of C·R systems, (C·R,) stream indices).
    """
    r_count = params.n_replicas
    batch = thermal.repeat(r_count)
    streams = np.repeat(config_ids, r_count) * r_count + np.tile(
        np.arange(r_count), len(config_ids)
    )
    vel = np.stack(
        [
            maxwell_boltzmann_velocities(
                thermal.n_particles, params.temperature, params.seed, int(s)
            )
            for s in streams
        ]
    )
    batch = batch.with_velocities(vel)
    batch.timestep[:] = 0
    return batch, streams.astype(np.int64)


def isoconfigurational(
    engine: Engine,
    thermal: ConfigurationBatch,
    config_ids: np.ndarray,
    params: IsoParameters,
    checkpoint_dir: str | Path | None = None,
):
    """Run the replicas of ``thermal`` to the label time (and the extra times).

    Returns:
        (final replica positions unwrapped (C, R, N, 3), extra-time positions
        (T_x, C, R, N, 3) or None).
    """
    batch, streams = replica_batch(thermal, config_ids, params)
    if params.ensemble == "nve":
        integrator = Integrator(dt=params.dt, streams=streams)
    else:
        integrator = Integrator(
            dt=params.dt,
            kT=params.temperature,
            tau=params.thermostat_tau,
            seed=derive_seed(params.seed, "thermostat"),
            streams=streams,
        )
    total = _steps(params.label_time, params.dt)
    marks = sorted({_steps(t, params.dt) for t in params.extra_times if t < params.label_time})
    per_segment = _steps(params.segment_time, params.dt)
    boundaries = sorted(set(range(per_segment, total, per_segment)) | set(marks) | {total})
    segments, previous = [], 0
    for b in boundaries:
        action = Action.EXTRA if b in marks else Action.NONE
        segments.append(Segment("iso", b - previous, integrator, action, checkpoint=True))
        previous = b
    fingerprint = _fingerprint(
        {"params": asdict(params), "ids": config_ids.tolist(), "start": _batch_digest(thermal)}
    )
    checkpointer = Checkpointer(checkpoint_dir, fingerprint) if checkpoint_dir else None

    def handler(index, segment, state, record, collected):
        if segment.action == Action.EXTRA:
            kept = ConfigurationBatch.concatenate([collected, state]) if collected else state.copy()
            return kept, state
        return collected, state

    final, collected, _ = run_segments(
        engine,
        batch,
        segments,
        handler,
        checkpointer,
        description=f"iso T={params.temperature:g} ({len(config_ids)}x{params.n_replicas})",
    )
    n_conf, r_count, n = len(config_ids), params.n_replicas, thermal.n_particles
    final_pos = final.unwrapped_positions().reshape(n_conf, r_count, n, 3)
    extra = None
    if marks:
        extra = collected.unwrapped_positions().reshape(len(marks), n_conf, r_count, n, 3)
    return final_pos, extra


__all__ = [
    "Action",
    "EquilibrationError",
    "EquilibrationParameters",
    "EquilibrationResult",
    "IsoParameters",
    "Segment",
    "TauAlphaParameters",
    "derive_seed",
    "equilibrate",
    "isoconfigurational",
    "measure_tau_alpha",
    "quench",
    "replica_batch",
    "run_segments",
]
