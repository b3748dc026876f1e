"""What the protocols' records become: the equilibration checks and the τα fit.

- :func:`equilibration_report`: energy drift over the second half of the equilibration and the
  A-particle MSD between consecutive samples, against their limits (docs/physics.md §3).
- :func:`tau_alpha_result`: F_s(q, t) averaged over systems and origins, τα where it crosses
  1/e, and its spread over systems (docs/physics.md §2).

Pure functions of the records of :mod:`tbotan.md.protocols` (no MD here).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from tbotan.physics import kalj, observables
from tbotan.physics.configurations import ConfigurationBatch

if TYPE_CHECKING:
    from tbotan.md.protocols import EquilibrationParameters, TauAlphaParameters


def a_particle_msd(a: ConfigurationBatch, b: ConfigurationBatch) -> np.ndarray:
    """(B,) mean-square displacement of the A particles between two states of the same systems."""
    d = b.unwrapped_positions() - a.unwrapped_positions()
    mask = a.types[0] == kalj.TYPE_A
    return (d[:, mask] ** 2).sum(-1).mean(-1)


def equilibration_report(params: EquilibrationParameters, record: dict, collected) -> dict:
    """The equilibration checks: energy drift over the second half of the equilibration, MSD
    between samples (docs/physics.md §3).

    Args:
        params: the run's parameters (limits ``max_drift_sigma``, ``min_msd_between_samples``).
        record: the equilibration's record: ``phase`` and ``potential_energy`` (U/N per
            system) of every energy record, ``temperature``, ``time``, and
            ``equilibration_msd``, ``sample_extensions_tau_alpha`` where present.
        collected: the end of the equilibration then every sample, each a batch of the
            ``n_systems`` systems.

    Returns:
        the report: ``energy_drift``, ``msd_between_samples``, means over the samples,
        ``energy_series``, ``passed`` and ``failures`` (one sentence each).
    """
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


def tau_alpha_result(params: TauAlphaParameters, lags: np.ndarray, fs_records) -> dict:
    """F_s(q, t) averaged over systems and time origins, and τα where it crosses 1/e.

    Args:
        params: the measurement's parameters (``n_origins``, ``q``, Table I's estimate).
        lags: (L,) lag times (time units).
        fs_records: F_s per system, one list per (origin, lag) in the order measured
            (n_origins · L lists of n_systems values).

    Returns:
        the result of :func:`tbotan.md.protocols.measure_tau_alpha`: the curve and its standard
        error over systems, τα (``tau_alpha_measured``, None with ``error`` when F_s does not
        reach 1/e), its standard error from the systems' own τα, and the ratio to Table I.
    """
    fs = np.array(fs_records).reshape(params.n_origins, len(lags), -1)  # (origins, lags, sys)
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


__all__ = ["a_particle_msd", "equilibration_report", "tau_alpha_result"]
