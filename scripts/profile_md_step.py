"""Split one torch-engine MD step (native kernels) into forces / list builds / integration.

Usage: OMP_WAIT_POLICY=passive python scripts/profile_md_step.py [--n 4096 1000] [--batch 1 16]
       [--threads 1] [--steps 200] [--portable]

Runs an NVT (Bussi) trajectory of a prepared KALJ liquid with the kernels' calls wrapped by
timers and prints milliseconds per step spent in each part (and per call for list builds).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tbotan.checks.benchmark import prepare_liquid
from tbotan.md import DynamicsParameters, make_engine
from tbotan.physics.configurations import maxwell_boltzmann_velocities


def profile(n: int, batch: int, steps: int, kernels: str = "native", **engine_options) -> dict:
    engine = make_engine("torch", device="cpu", kernels=kernels, **engine_options)
    liquid = prepare_liquid(n, 0.8, 7, engine)
    conf = liquid.repeat(batch).with_velocities(
        np.stack([maxwell_boltzmann_velocities(n, 0.8, 1, b) for b in range(batch)])
    )
    sim = engine.simulation(conf, DynamicsParameters(dt=0.005, kT=0.8, tau=0.5))
    sim.run(50)
    kern = engine.kernels
    # kernel method -> timer key; partial rebuilds of half lists go through rebuild_in_place,
    # not build, and are timed apart (left out, they would be counted as "rest")
    timed_methods = {"forces": "forces", "build": "build", "kick_drift_check": "kick_drift"}
    if getattr(kern, "rebuilds_in_place", False):
        timed_methods["rebuild_in_place"] = "rebuild"
        # steps with rebuilds: the flagged systems' rebuilds and all forces in one call
        timed_methods["rebuild_forces"] = "rebuild+forces"
    spent = dict.fromkeys(timed_methods.values(), 0.0)
    calls = dict.fromkeys(timed_methods.values(), 0)
    originals = {name: getattr(kern, name) for name in timed_methods}

    def timed(key, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[key] += time.perf_counter() - t
            calls[key] += 1
            return out

        return wrapper

    for name, key in timed_methods.items():
        setattr(kern, name, timed(key, originals[name]))
    start = time.perf_counter()
    sim.run(steps)
    total = time.perf_counter() - start
    for name, fn in originals.items():
        setattr(kern, name, fn)
    per_step = {k: 1e3 * v / steps for k, v in spent.items()}
    per_step["rest (kick, thermostat, python)"] = 1e3 * total / steps - sum(per_step.values())
    return {
        "n": n,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "ms_per_step": round(1e3 * total / steps, 3),
        "ms_per_step_split": {k: round(v, 3) for k, v in per_step.items()},
        "builds_per_step": round(calls["build"] / steps, 3),
        "ms_per_build": round(1e3 * spent["build"] / max(calls["build"], 1), 3),
        "rebuilds_per_step": round(calls.get("rebuild", 0) / steps, 3),
        "ms_per_rebuild": round(
            1e3 * spent.get("rebuild", 0.0) / max(calls.get("rebuild", 0), 1), 3
        ),
        "replica_steps_per_s": round(batch * steps / total, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, nargs="+", default=[4096, 1000])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--kernels", default="native")
    p.add_argument("--option", action="append", default=[], help="engine option key=value")
    p.add_argument(
        "--portable", action="store_true", help="native kernels without their AVX-512 loops"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.portable:
        from tbotan.md import native

        native.load().use_simd(False)
    options = {}
    for item in args.option:
        key, value = item.split("=", 1)
        options[key] = json.loads(value) if value not in ("full", "half") else value
    for n in args.n:
        for b in args.batch:
            print(json.dumps(profile(n, b, args.steps, args.kernels, **options)), flush=True)


if __name__ == "__main__":
    main()
