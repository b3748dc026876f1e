"""Physics validation a user can run on a laptop (``tbotan validate``).

1. Real data (when the BOTAN T = 0.44 files are available): U/N of a thermal configuration,
   e_IS/N and FIRE steps of its inherent structure, and C_B / propensity from the stored
   replicas, against the reference values published with the data.
2. τα at T = 0.80 and 0.64 (N ≈ 1000): equilibrate, measure F_s(q, t), compare with the
   paper's Table I; equilibrium U/N and inherent-structure energies of the same runs.
3. Optional and long: our own isoconfigurational replicas of a BOTAN configuration, run to
   t = 4120 (the time of the stored replicas), against the authors' 32 replicas of the same
   configuration (:func:`validate_botan_replicas`).

Each check reports its numbers and a verdict; the results are meant to be recorded in
docs/validation.md.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from tbotan.labels.botan import read_botan_npz
from tbotan.md.protocols import (
    EquilibrationParameters,
    IsoParameters,
    TauAlphaParameters,
    derive_seed,
    equilibrate,
    isoconfigurational,
    measure_tau_alpha,
    quench,
)
from tbotan.physics import kalj, observables
from tbotan.physics.configurations import ConfigurationBatch

#: Reference values of BOTAN file 1, from the README published with the BOTAN data (quoted in
#: docs/validation.md).
BOTAN_FILE1 = {
    "u": -6.18434,
    "e_is": -6.83792,
    "fire_steps": 1600,
    "cb_mean": 0.63085,
    "prop_mean": 0.69862,
}
#: Table I's τα at the temperatures the validation runs (the two cheapest of the paper's).
TABLE_I = {T: kalj.TABLE_I_TAU_ALPHA[T] for T in (0.80, 0.64)}
#: Wave number of F_s (first peak of S_AA(q), docs/physics.md §2).
Q_FS = 7.25
#: Temperature and time (= Table I's τα(0.44)) of the stored BOTAN replicas.
BOTAN_TEMPERATURE = 0.44
BOTAN_TIME = 4120.0


def botan_directory() -> Path | None:
    """The BOTAN data: $TBOTAN_BOTAN_DATA or ../shared/data/botan-T0.44 from the checkout."""
    env = os.environ.get("TBOTAN_BOTAN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "botan-T0.44")
    candidates.append(Path.cwd().parent / "shared" / "data" / "botan-T0.44")
    for path in candidates:
        if (path / "isoconfig_N4096T0.44_1_tc07.npz").is_file():
            return path
    return None


def validate_real_data(engine, directory: Path) -> dict:
    """Engine and observables against the BOTAN reference values (file 1)."""
    data = read_botan_npz(directory / "isoconfig_N4096T0.44_1_tc07.npz")
    types, initial, final = data["types"], data["initial_positions"], data["positions"]
    L = kalj.box_length(4096)
    conf = ConfigurationBatch(initial, types, np.full(3, L))
    u = float(engine.evaluate(conf).potential_energy_per_particle[0])
    t0 = time.perf_counter()
    result = engine.minimize(conf)
    seconds = time.perf_counter() - t0
    bb = observables.bond_breaking(initial, final, types, L)
    prop = observables.propensity(initial, final)
    a = types == kalj.TYPE_A
    checks = {
        "U/N": (u, BOTAN_FILE1["u"], 1e-5),
        "e_IS/N": (float(result.energy[0]), BOTAN_FILE1["e_is"], 1e-4),
        "C_B mean (A)": (float(bb.cb[a].mean()), BOTAN_FILE1["cb_mean"], 1e-5),
        "propensity mean (A)": (float(prop[a].mean()), BOTAN_FILE1["prop_mean"], 1e-5),
    }
    out = {
        name: {"value": v, "reference": r, "tolerance": tol, "passed": abs(v - r) <= tol}
        for name, (v, r, tol) in checks.items()
    }
    steps = int(result.steps[0])
    out["FIRE steps"] = {
        "value": steps,
        "reference": BOTAN_FILE1["fire_steps"],
        "tolerance": "30 %",
        "passed": abs(steps - BOTAN_FILE1["fire_steps"]) <= 0.3 * BOTAN_FILE1["fire_steps"],
        "seconds": seconds,
    }
    return out


def replica_statistics(
    initial: np.ndarray, replicas: np.ndarray, types: np.ndarray, box: float, reference=None
) -> dict:
    """Per-replica dynamics of one configuration, A particles.

    Args:
        initial: (N, 3) positions at t = 0.
        replicas: (R, N, 3) unwrapped positions at t.
        types: (N,) 0 = A, 1 = B.
        box: cubic edge L.
        reference: (N,) propensity to correlate each replica's displacements with; None: the
            mean over the *other* replicas of ``replicas`` (leave one out).

    Returns:
        dict of (R,) lists: ``fs`` (F_s(q = 7.25)), ``msd``, ``cb_mean`` (C_B of the replica
        alone, mean over A) and ``pearson_propensity`` (Pearson over A of |Δr| with the
        reference propensity).
    """
    a = types == kalj.TYPE_A
    displacement = replicas - initial[None]  # (R, N, 3)
    disp = np.linalg.norm(displacement, axis=-1)  # (R, N)
    r_count = len(replicas)
    if reference is None and r_count < 2:
        raise ValueError("leave-one-out propensity needs at least 2 replicas")
    pearson = []
    for r in range(r_count):
        ref = reference
        if ref is None:
            ref = (disp.sum(axis=0) - disp[r]) / (r_count - 1)
        pearson.append(float(np.corrcoef(disp[r, a], ref[a])[0, 1]))
    per_replica_cb = observables.bond_breaking(initial, replicas, types, box).per_replica
    return {
        "fs": observables.self_intermediate_scattering(displacement[:, a], Q_FS).tolist(),
        "msd": (disp[:, a] ** 2).mean(axis=1).tolist(),
        "cb_mean": per_replica_cb[:, a].mean(axis=1).tolist(),
        "pearson_propensity": pearson,
    }


def compare_replicas(theirs: dict, ours: dict, max_z: float = 3.0) -> dict:
    """Each of our per-replica statistics as a z-score within the spread of the authors'.

    Args:
        theirs, ours: :func:`replica_statistics` results (lists per statistic).
        max_z: a statistic passes when every one of our replicas lies within ``max_z``
            standard deviations (ddof = 1) of the authors' replica mean.
    """
    comparison = {}
    for name, values in theirs.items():
        mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
        z = [(v - mean) / std for v in ours[name]]
        comparison[name] = {
            "authors_mean": mean,
            "authors_std": std,
            "authors_min": float(np.min(values)),
            "authors_max": float(np.max(values)),
            "ours": list(ours[name]),
            "z": z,
            "passed": bool(np.all(np.abs(z) <= max_z)),
        }
    return comparison


def validate_botan_replicas(
    engine,
    directory: Path,
    file_index: int = 1,
    n_replicas: int = 1,
    time_limit: float = BOTAN_TIME,
    seed: int = 1,
    checkpoint_dir: str | Path | None = None,
    max_z: float = 3.0,
) -> dict:
    """Our replicas of a BOTAN configuration against the authors' 32 (same start, same t).

    Runs ``n_replicas`` NVE replicas (Maxwell–Boltzmann velocities at T = 0.44, dt = 0.005,
    the project's isoconfigurational protocol, checkpointed and resumable) from the stored
    ``initial_positions`` to ``time_limit`` and compares each replica's F_s(q = 7.25), A-particle
    MSD, C_B and Pearson(|Δr|, propensity) with the spread of the authors' single replicas
    (their propensity taken leave-one-out for their own replicas, the 32-replica mean for ours).
    A replica passes when every statistic lies within ``max_z`` standard deviations of the
    authors' replica mean; the check is meaningful only at ``time_limit`` = 4120.
    """
    path = directory / f"isoconfig_N4096T0.44_{file_index}_tc07.npz"
    data = read_botan_npz(path)
    types, initial, theirs = data["types"], data["initial_positions"], data["positions"]
    L = kalj.box_length(len(types))
    params = IsoParameters(
        temperature=BOTAN_TEMPERATURE,
        tau_alpha=BOTAN_TIME,
        tau_alpha_source="table",
        label_time=time_limit,
        extra_times=[],
        n_replicas=n_replicas,
        ensemble="nve",
        dt=0.005,
        thermostat_tau=0.5,
        segment_time=time_limit / 100,
        seed=derive_seed(seed, "validate-botan", file_index),
    )
    t0 = time.perf_counter()
    thermal = ConfigurationBatch(initial[None], types[None], np.full((1, 3), L))
    ours, _ = isoconfigurational(engine, thermal, np.array([0]), params, checkpoint_dir)
    seconds = time.perf_counter() - t0
    theirs_stats = replica_statistics(initial, theirs, types, L)
    ours_stats = replica_statistics(
        initial, ours[0], types, L, reference=observables.propensity(initial, theirs)
    )
    comparison = compare_replicas(theirs_stats, ours_stats, max_z)
    return {
        "file": path.name,
        "time": time_limit,
        "n_replicas": n_replicas,
        "n_replicas_authors": int(theirs.shape[0]),
        "max_z": max_z,
        "statistics": comparison,
        "passed": all(c["passed"] for c in comparison.values()),
        "seconds": seconds,
    }


def validate_tau_alpha(
    engine,
    temperature: float,
    n_particles: int = 1000,
    n_systems: int = 4,
    equilibration_tau_alpha: float = 20.0,
    n_origins: int = 2,
    seed: int = 1,
    tolerance: float = 0.15,
) -> dict:
    """Equilibrate at T, measure τα, quench a few samples; compare τα with Table I."""
    tau = TABLE_I[temperature]
    params = EquilibrationParameters(
        temperature=temperature,
        tau_alpha=tau,
        n_particles=n_particles,
        density=kalj.DENSITY,
        n_systems=n_systems,
        samples_per_system=1,
        dt=0.005,
        thermostat_tau=0.5,
        melt_temperature=2.0,
        melt_time=10.0,
        equilibration_time=equilibration_tau_alpha * tau,
        sample_interval=2 * tau,
        checkpoint_interval=1e9,
        seed=derive_seed(seed, "validate", temperature),
        energy_records=40,
        allow_unequilibrated=True,
    )
    t0 = time.perf_counter()
    eq = equilibrate(engine, params)
    ta = TauAlphaParameters(
        temperature=temperature,
        tau_alpha_estimate=tau,
        q=Q_FS,
        max_time=5 * tau,
        n_origins=n_origins,
        points_per_decade=10,
        dt=0.005,
        thermostat_tau=0.5,
        seed=derive_seed(seed, "validate-fs", temperature),
    )
    fs = measure_tau_alpha(engine, eq.samples, ta)
    _, e_is, steps, _ = quench(engine, eq.samples.with_velocities(None), None)
    measured = fs.get("tau_alpha_measured")
    ratio = None if measured is None else measured / tau
    return {
        "temperature": temperature,
        "n_particles": n_particles,
        "n_systems": n_systems,
        "tau_alpha_measured": measured,
        "tau_alpha_sem": fs.get("tau_alpha_sem"),
        "tau_alpha_table": tau,
        "ratio": ratio,
        "tolerance": tolerance,
        "passed": ratio is not None and abs(ratio - 1.0) <= tolerance,
        "equilibration": {
            "passed": eq.report["passed"],
            "failures": eq.report["failures"],
            "potential_energy_mean": eq.report["potential_energy_mean"],
            "potential_energy_sem": eq.report["potential_energy_sem"],
            "kinetic_temperature_mean": eq.report["kinetic_temperature_mean"],
            "msd_between_samples": eq.report["msd_between_samples"],
        },
        "inherent_energy_mean": float(e_is.mean()),
        "inherent_energy_std": float(e_is.std()),
        "fire_steps_mean": float(steps.mean()),
        "fs": {"times": fs["times"], "fs": fs["fs"]},
        "seconds": time.perf_counter() - t0,
    }


def markdown(result: dict) -> str:
    """A short markdown report of :func:`tbotan.commands.validate` results."""
    lines = ["| check | value | reference | verdict |", "|---|---|---|---|"]
    for name, c in (result.get("real_data") or {}).items():
        lines.append(
            f"| BOTAN file 1: {name} | {c['value']:.6g} | {c['reference']} "
            f"(± {c['tolerance']}) | {'pass' if c['passed'] else 'FAIL'} |"
        )
    for t in result.get("tau_alpha", []):
        m = t["tau_alpha_measured"]
        text = "n/a" if m is None else f"{m:.3g} ± {t['tau_alpha_sem'] or 0:.2g}"
        lines.append(
            f"| τα at T = {t['temperature']} (N = {t['n_particles']}) | {text} | "
            f"{t['tau_alpha_table']} (Table I, ± {int(100 * t['tolerance'])} %) | "
            f"{'pass' if t['passed'] else 'FAIL'} (ratio {t['ratio'] or float('nan'):.2f}) |"
        )
        eq = t["equilibration"]
        lines.append(
            f"| U/N at T = {t['temperature']} | {eq['potential_energy_mean']:.4f} | "
            f"(no drift: {'yes' if eq['passed'] else 'no'}) | - |"
        )
        lines.append(
            f"| e_IS/N at T = {t['temperature']} | {t['inherent_energy_mean']:.4f} ± "
            f"{t['inherent_energy_std']:.4f} | - | - |"
        )
    botan = result.get("botan_replicas")
    if botan:
        for name, c in botan["statistics"].items():
            ours = ", ".join(f"{v:.4g}" for v in c["ours"])
            zs = ", ".join(f"{z:+.1f}" for z in c["z"])
            lines.append(
                f"| {botan['file']}, t = {botan['time']:g}: {name} (ours, {botan['n_replicas']} "
                f"replica{'s' if botan['n_replicas'] > 1 else ''}) | {ours} | "
                f"{c['authors_mean']:.4g} ± {c['authors_std']:.2g} "
                f"(authors' {botan['n_replicas_authors']} replicas) | "
                f"{'pass' if c['passed'] else 'FAIL'} (z {zs}) |"
            )
    return "\n".join(lines) + "\n"
