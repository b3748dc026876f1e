"""Bit-identity check of the torch engine (native kernels, half lists) between two checkouts.

Usage:
    PYTHONPATH=/path/to/main/src python scripts/md_bit_identity.py run main.npz
    PYTHONPATH=/path/to/branch/src python scripts/md_bit_identity.py run branch.npz
    python scripts/md_bit_identity.py compare main.npz branch.npz

``run`` integrates short NVT (Bussi) trajectories of a prepared KALJ liquid copied B times
(N = 400 all-pairs lists on 2 and 1 threads, N = 1000 cell lists, N = 2500 two force chunks,
float32, and the portable loops via ``use_simd(False)``) and saves the final positions,
velocities, images, per-particle energies, pressures and re-evaluated forces and virials.
``compare`` reports every array that differs in dtype, shape or any byte.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

# (N, batch, steps, precision, vectorised loops, threads)
CASES = [
    (400, 6, 400, "float64", True, 2),
    (400, 6, 400, "float64", True, 1),
    (1000, 4, 300, "float64", True, 2),
    (2500, 2, 100, "float64", True, 2),
    (400, 4, 200, "float32", True, 2),
    (400, 4, 200, "float64", False, 2),
]


def run(path: str) -> None:
    """Run every case and save its final arrays to the .npz ``path``."""
    from tbotan.checks.benchmark import prepare_liquid
    from tbotan.md import DynamicsParameters, make_engine, native
    from tbotan.physics.configurations import maxwell_boltzmann_velocities

    out = {}
    for n, batch, steps, precision, simd, threads in CASES:
        torch.set_num_threads(threads)
        native.load().use_simd(simd)
        engine = make_engine("torch", device="cpu", kernels="native", precision=precision)
        liquid = prepare_liquid(n, 0.8, 7, engine)
        conf = liquid.repeat(batch).with_velocities(
            np.stack([maxwell_boltzmann_velocities(n, 0.8, 1, b) for b in range(batch)])
        )
        sim = engine.simulation(conf, DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=3))
        sim.run(steps)
        state, thermo = sim.state(), sim.thermo()
        evaluation = engine.evaluate(state)
        key = f"n{n}_b{batch}_s{steps}_{precision}_simd{int(simd)}_t{threads}"
        out |= {
            f"{key}_positions": state.positions,
            f"{key}_velocities": state.velocities,
            f"{key}_images": state.images,
            f"{key}_potential": thermo.potential_energy_per_particle,
            f"{key}_pressure": thermo.pressure,
            f"{key}_forces": evaluation.forces,
            f"{key}_energies": evaluation.per_particle_energy,
            f"{key}_virial": evaluation.virial,
        }
        print(key, "U/N", thermo.potential_energy_per_particle.mean(), flush=True)
    native.load().use_simd(True)
    np.savez(path, **out)


def compare(first: str, second: str) -> int:
    """Print the arrays of two .npz files that differ; returns their number."""
    a, b = np.load(first), np.load(second)
    if sorted(a.files) != sorted(b.files):
        print("different array names:", sorted(set(a.files) ^ set(b.files)))
        return 1
    differ = [
        k
        for k in a.files
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes()
    ]
    print(f"{len(a.files)} arrays compared, {len(differ)} differ: {differ}")
    return len(differ)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("output")
    c = sub.add_parser("compare")
    c.add_argument("first")
    c.add_argument("second")
    args = p.parse_args()
    if args.command == "run":
        run(args.output)
    else:
        raise SystemExit(1 if compare(args.first, args.second) else 0)


if __name__ == "__main__":
    main()
