"""Interleaved micro-benchmark of the native kernels: full lists, half lists, and half lists
without the AVX-512 loops ("half-portable", where the build has them), min of repeats.

Usage: python scripts/bench_kernels.py [--n 4096] [--batch 1] [--threads 1] [--repeats 30]
Times list builds and force evaluations of one dense random KALJ configuration (copied B times),
alternating the variants call by call so that machine load hits them alike; prints ms per call
(minimum and median over the repeats).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import dense_random_configuration  # noqa: E402
from tbotan.md import native  # noqa: E402
from tbotan.md import torch_neighbors as nl  # noqa: E402
from tbotan.md.torch_kernels import NativeKernels  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    module = native.load()
    conf = dense_random_configuration(args.n, seed=3).repeat(args.batch)
    coords = torch.tensor(np.moveaxis(conf.positions, 2, 0).copy())
    types = torch.as_tensor(conf.types).long().contiguous()
    box = torch.as_tensor(conf.box).contiguous()
    radii = nl.ListRadii.create(0.3)
    cap = nl.default_capacity(1.2, radii)
    variants = {v: NativeKernels(module, torch.float64, v) for v in ("full", "half")}
    if module.simd_available():
        variants["half-portable"] = NativeKernels(module, torch.float64, "half")
    lists = {v: k.build(coords, types, box, radii, cap) for v, k in variants.items()}
    times = {f"{op} {v}": [] for op in ("build", "forces", "energy_virial") for v in variants}
    for _ in range(args.repeats):
        for v, k in variants.items():
            module.use_simd(v != "half-portable")
            t = time.perf_counter()
            k.build(coords, types, box, radii, cap)
            times[f"build {v}"].append(time.perf_counter() - t)
            t = time.perf_counter()
            k.forces(coords, *lists[v], types, box)
            times[f"forces {v}"].append(time.perf_counter() - t)
            t = time.perf_counter()
            k.energy_virial(coords, *lists[v], types, box)
            times[f"energy_virial {v}"].append(time.perf_counter() - t)
    module.use_simd(True)
    print(f"N = {args.n}, batch {args.batch}, {args.threads} thread(s), K = {cap}")
    for key, values in times.items():
        print(
            f"{key:<28} min {1e3 * min(values):8.3f} ms  "
            f"median {1e3 * statistics.median(values):8.3f} ms"
        )


if __name__ == "__main__":
    main()
