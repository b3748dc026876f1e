"""``tbotan benchmark fire``: inherent structures per second by FIRE on the BOTAN files.

The five BOTAN configurations (T = 0.44, N = 4096) are minimised to mean |F| < 1e-12 by each
requested engine in the same run: the torch engine as the quench stage runs it (all files in
one batch), LAMMPS one file after another.  Reported per engine: inherent structures per
second, FIRE steps and e_IS/N of every file (beside the reference values of the data's
README, so that a fast but wrong minimisation shows).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tbotan.checks.benchmark import machine_description
from tbotan.md import make_engine
from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch

#: e_IS/N of the BOTAN files (shared/data/botan-T0.44/README.md).
REFERENCE_E_IS = {1: -6.83792, 2: -6.85060, 3: -6.84290, 4: -6.86106, 5: -6.85066}


def botan_batch(data_dir: str | Path, files: tuple[int, ...]) -> ConfigurationBatch:
    """The thermal configurations ``initial_positions`` of the given BOTAN files, one batch."""
    from tbotan.labels.botan import read_botan_npz

    confs = []
    for k in files:
        content = read_botan_npz(Path(data_dir) / f"isoconfig_N4096T0.44_{k}_tc07.npz")
        n = content["types"].shape[0]
        confs.append(
            ConfigurationBatch(content["initial_positions"], content["types"], kalj.box_length(n))
        )
    return ConfigurationBatch.concatenate(confs)


def benchmark_fire(
    data_dir: str | Path,
    files: tuple[int, ...] = (1, 2, 3, 4, 5),
    engines: tuple[str, ...] = ("torch", "lammps"),
    device: str = "cpu",
    lammps_threads: int | None = None,
    progress=print,
) -> dict:
    """Time FIRE on the BOTAN files with each engine; a JSON-ready dictionary."""
    import torch

    batch = botan_batch(data_dir, files)
    measurements = []
    for name in engines:
        options = {"device": device}
        if name == "lammps":
            options["threads"] = lammps_threads or torch.get_num_threads()
        engine = make_engine(name, **options)
        progress(f"{name}: FIRE on BOTAN files {list(files)} ...")
        start = time.perf_counter()
        result = engine.minimize(batch)
        seconds = time.perf_counter() - start
        measurements.append(
            {
                "engine": name,
                "seconds": seconds,
                "inherent_structures_per_second": len(files) / seconds,
                "steps": result.steps.tolist(),
                "e_is": result.energy.tolist(),
                "details": engine.describe(),
            }
        )
        progress(f"  {len(files) / seconds:.3f} inherent structures/s ({seconds:.1f} s)")
    rates = {m["engine"]: m["inherent_structures_per_second"] for m in measurements}
    ratios = {
        f"torch_over_{name}": rates["torch"] / rate
        for name, rate in rates.items()
        if name != "torch" and "torch" in rates
    }
    return {
        "benchmark": "fire",
        "workload": {
            "data": "BOTAN T = 0.44, N = 4096 (initial_positions)",
            "files": list(files),
            "force_tolerance": 1e-12,
            "reference_e_is": [REFERENCE_E_IS.get(k) for k in files],
        },
        "machine": machine_description(),
        "measurements": measurements,
        "ratios": ratios,
    }


def format_fire(result: dict) -> str:
    """A short table of a FIRE benchmark result."""
    ref = np.array([np.nan if e is None else e for e in result["workload"]["reference_e_is"]])
    lines = [
        f"FIRE on BOTAN files {result['workload']['files']}, "
        f"{result['machine']['processor']} ({result['machine']['torch_threads']} threads)",
        f"{'engine':<8} {'IS/s':>8} {'steps':>26}  max |e_IS/N - reference|",
    ]
    for m in result["measurements"]:
        dev = np.nanmax(np.abs(np.array(m["e_is"]) - ref)) if np.isfinite(ref).any() else np.nan
        steps = " ".join(str(s) for s in m["steps"])
        rate = m["inherent_structures_per_second"]
        lines.append(f"{m['engine']:<8} {rate:>8.3f} {steps:>26}  {dev:.2e}")
    for key, value in result["ratios"].items():
        lines.append(f"{key}: {value:.2f}x")
    return "\n".join(lines)
