"""Benchmarks: throughput of the MD engines (and, later, of training), measured side by side.

``tbotan benchmark md`` prepares one KALJ liquid, then times every requested engine and batch
size on exactly that liquid (NVT, Bussi, dt = 0.005) and reports replica-steps per second: one
replica of N particles advanced by one step.  Ratios between engines are only meaningful when
measured in the same run on the same machine, which is what this does.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tbotan import kalj
from tbotan.configuration import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
)
from tbotan.md import Integrator, hoomd_available, make_engine


@dataclass
class MDMeasurement:
    """One timed run."""

    engine: str
    batch_size: int
    n_particles: int
    steps: int
    seconds: float
    replica_steps_per_second: float
    details: dict = field(default_factory=dict)


def machine_description() -> dict:
    """What the numbers were measured on."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def prepare_liquid(n_particles: int, kT: float, seed: int, engine) -> ConfigurationBatch:
    """A KALJ liquid at ``kT``: random lattice, melt at T = 2, then 500 steps at ``kT``."""
    conf = random_configuration(n_particles, seed=seed)
    conf = conf.with_velocities(maxwell_boltzmann_velocities(n_particles, 2.0, seed, 0)[None])
    sim = engine.simulation(conf, Integrator(dt=0.002, kT=2.0, tau=0.1, seed=seed))
    sim.run(500)
    sim = engine.simulation(sim.state(), Integrator(dt=0.005, kT=kT, tau=0.5, seed=seed))
    sim.run(500)
    return sim.state()


def time_engine(
    engine, liquid: ConfigurationBatch, batch_size: int, steps: int, kT: float, warmup: int
) -> MDMeasurement:
    """Replica-steps per second of ``engine`` on ``batch_size`` copies of ``liquid``."""
    n = liquid.n_particles
    batch = liquid.repeat(batch_size)
    vel = np.stack([maxwell_boltzmann_velocities(n, kT, 1, b) for b in range(batch_size)])
    sim = engine.simulation(batch.with_velocities(vel), Integrator(dt=0.005, kT=kT, tau=0.5))
    sim.run(warmup)
    _synchronize(engine)
    start = time.perf_counter()
    sim.run(steps)
    _synchronize(engine)
    seconds = time.perf_counter() - start
    thermo = sim.thermo()
    return MDMeasurement(
        engine=engine.name,
        batch_size=batch_size,
        n_particles=n,
        steps=steps,
        seconds=seconds,
        replica_steps_per_second=batch_size * steps / seconds,
        details={**engine.describe(), "final_temperature": float(thermo.temperature.mean())},
    )


def _synchronize(engine) -> None:
    device = getattr(engine, "device", None)
    if device is not None and getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def benchmark_md(
    n_particles: int = 4096,
    batch_sizes: tuple[int, ...] = (1, 32),
    steps: int = 500,
    warmup: int = 100,
    kT: float = 0.8,
    device: str = "auto",
    kernels: str = "auto",
    precision: str = "float64",
    with_hoomd: bool | None = None,
    hoomd_steps: int | None = None,
    seed: int = 7,
    progress=print,
) -> dict:
    """Measure the torch engine (and HOOMD-blue when available) on one KALJ liquid.

    Returns a JSON-ready dictionary with the machine, every measurement and the
    torch / HOOMD-blue throughput ratios.
    """
    if n_particles < 250:
        raise ValueError(f"n_particles must be ≥ 250 (box larger than 2 r_list), got {n_particles}")
    torch_engine = make_engine("torch", device=device, kernels=kernels, precision=precision)
    progress(f"preparing a KALJ liquid of N = {n_particles} at T = {kT} ...")
    liquid = prepare_liquid(n_particles, kT, seed, torch_engine)
    results: list[MDMeasurement] = []
    for b in batch_sizes:
        progress(f"torch engine ({torch_engine.describe()['kernels']} kernels), batch {b} ...")
        m = time_engine(torch_engine, liquid, b, steps, kT, warmup)
        progress(f"  {m.replica_steps_per_second:,.1f} replica-steps/s")
        results.append(m)
    if with_hoomd is None:
        with_hoomd = hoomd_available()
    ratios = {}
    if with_hoomd:
        hoomd_engine = make_engine("hoomd", device="cuda" if device == "cuda" else "cpu")
        progress("HOOMD-blue, one system ...")
        h = time_engine(hoomd_engine, liquid, 1, hoomd_steps or steps, kT, warmup)
        progress(f"  {h.replica_steps_per_second:,.1f} replica-steps/s")
        results.append(h)
        for m in results:
            if m.engine == "torch":
                ratios[f"torch_batch{m.batch_size}_over_hoomd"] = (
                    m.replica_steps_per_second / h.replica_steps_per_second
                )
    return {
        "benchmark": "md",
        "workload": {
            "system": "KALJ shifted-force",
            "n_particles": n_particles,
            "density": kalj.DENSITY,
            "kT": kT,
            "dt": 0.005,
            "ensemble": "NVT (Bussi, tau = 0.5)",
            "skin": 0.3,
            "precision": precision,
        },
        "machine": machine_description(),
        "measurements": [asdict(m) for m in results],
        "ratios": ratios,
    }


def write_json(result: dict, path: str | os.PathLike) -> None:
    """Write a benchmark result as JSON (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def format_md(result: dict) -> str:
    """A short table of an MD benchmark result."""
    lines = [
        f"KALJ N = {result['workload']['n_particles']}, {result['workload']['precision']}, "
        f"{result['machine']['processor']} ({result['machine']['torch_threads']} threads)",
        f"{'engine':<8} {'batch':>5} {'replica-steps/s':>16}",
    ]
    for m in result["measurements"]:
        rate = m["replica_steps_per_second"]
        lines.append(f"{m['engine']:<8} {m['batch_size']:>5} {rate:>16,.1f}")
    for key, value in result["ratios"].items():
        lines.append(f"{key}: {value:.2f}x")
    return "\n".join(lines)
