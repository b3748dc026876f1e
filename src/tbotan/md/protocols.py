"""Simulation protocols, written once against the :class:`~tbotan.md.Engine` interface.

- :func:`equilibrate`: independent systems per temperature, side by side in one batch: random
  start, melt, NVT at T for ``equilibration_tau_alpha`` τα, then samples every
  ``sample_interval_tau_alpha`` τα; with equilibration checks (docs/physics.md §3).
- :func:`measure_tau_alpha`: F_s(q, t) of A particles from several time origins on a log grid,
  τα where F_s = 1/e (docs/physics.md §2).
- :func:`quench`: FIRE to inherent structures (docs/physics.md §4).
- :func:`isoconfigurational`: replicas with independent Maxwell–Boltzmann velocities, run to
  the label time, labels per configuration (docs/physics.md §5).

Every long protocol is a fixed list of segments (:class:`~tbotan.md.segments.Segment`: run n
steps with an integrator, then act: record energies, take a sample, ...), fixed in advance by
the parameters and run by :func:`~tbotan.md.segments.run_segments`, with checkpoints at segment
boundaries (:mod:`tbotan.md.checkpoint`) from which a killed run resumes to exactly the result
of an uninterrupted one.  The equilibration checks and the τα fit computed from the records are
in :mod:`tbotan.md.statistics`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tbotan.md import DynamicsParameters, Engine, MinimizeResult, kinetic_temperature
from tbotan.md.checkpoint import Checkpointer
from tbotan.md.segments import Action, Segment, run_segments
from tbotan.md.statistics import a_particle_msd, equilibration_report, tau_alpha_result
from tbotan.physics import kalj, observables
from tbotan.physics.configurations import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
)

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


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _batch_digest(batch: ConfigurationBatch) -> str:
    return hashlib.sha256(batch.positions.tobytes() + batch.timestep.tobytes()).hexdigest()[:16]


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
        melt = DynamicsParameters(
            dt=melt_dt,
            kT=self.melt_temperature,
            tau=min(self.thermostat_tau, 0.1),
            seed=derive_seed(self.seed, "melt"),
        )
        nvt = DynamicsParameters(
            dt=dt, kT=T, tau=self.thermostat_tau, seed=derive_seed(self.seed, "nvt")
        )
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
            record["equilibration_msd"] = a_particle_msd(collected, state).tolist()
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
    report = equilibration_report(params, record, collected)
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
    while a_particle_msd(previous, state).min() < params.min_msd_between_samples:
        if extensions >= params.max_sample_extensions:
            break  # reported by the equilibration checks
        sim = engine.simulation(state, segment.integrator)
        sim.run(n_tau)
        state = sim.state()
        extensions += 1
    record.setdefault("sample_extensions_tau_alpha", []).append(extensions)
    return state


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
    integrator = DynamicsParameters(
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
    return tau_alpha_result(params, lags, record["fs"])


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
        integrator = DynamicsParameters(dt=params.dt, streams=streams)
    else:
        integrator = DynamicsParameters(
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
    "EquilibrationError",
    "EquilibrationParameters",
    "EquilibrationResult",
    "IsoParameters",
    "TauAlphaParameters",
    "derive_seed",
    "equilibrate",
    "isoconfigurational",
    "measure_tau_alpha",
    "quench",
    "replica_batch",
]
