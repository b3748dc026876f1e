"""GPU readiness check of the torch MD engine and the T-BOTAN training (run by gpu-check.sh).

Each stage measures one thing and records it; a stage that fails records its error and the
check goes on; a stage whose estimated cost exceeds the time left is skipped (never overrun).
Results: ``$OUT/gpu-check.json`` (one entry per stage: status ok / failed / skipped, seconds,
results) and ``$OUT/gpu-check.log``.

``--device cpu`` (``gpu-check.sh --cpu-dry-run``) runs every stage on the CPU with smaller
sizes, so that the whole script is exercised on a machine without a GPU; its numbers say
nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("gpu-check")


class Check:
    """Stages under one time budget."""

    def __init__(self, out: Path, budget_s: float, device: str, dry_run: bool):
        self.out, self.device, self.dry_run = out, device, dry_run
        self.deadline = time.monotonic() + budget_s
        self.report = {
            "device": device,
            "dry_run": dry_run,
            "budget_s": budget_s,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "stages": {},
        }

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def stage(self, name: str, estimate_s: float, fn) -> None:
        entry = {"estimate_s": estimate_s}
        if self.left() < estimate_s:
            entry.update(status="skipped", reason=f"{self.left():.0f} s left < {estimate_s} s")
            log.warning("%-22s skipped (%s)", name, entry["reason"])
        else:
            start = time.monotonic()
            try:
                entry["results"] = fn()
                entry["status"] = "ok"
            except Exception as exc:  # a failed stage is a result too
                entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                entry["traceback"] = traceback.format_exc(limit=6)
                log.error("%-22s FAILED: %s", name, entry["error"])
            entry["seconds"] = round(time.monotonic() - start, 2)
            if entry["status"] == "ok":
                log.info("%-22s ok in %.1f s: %s", name, entry["seconds"], _short(entry["results"]))
        self.report["stages"][name] = entry
        self.write()

    def write(self) -> None:
        path = self.out / "gpu-check.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.report, indent=2, default=_jsonable) + "\n")
        os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _short(results) -> str:
    text = json.dumps(results, default=_jsonable)
    return text if len(text) < 300 else text[:297] + "..."


def botan_dir() -> Path | None:
    env = os.environ.get("TBOTAN_BOTAN_DATA")
    for path in ([Path(env)] if env else []) + [
        ROOT / "shared" / "data" / "botan-T0.44",
        ROOT.parent / "shared" / "data" / "botan-T0.44",
    ]:
        if (path / "isoconfig_N4096T0.44_1_tc07.npz").is_file():
            return path
    return None


def botan_configuration(index: int = 1):
    """BOTAN file ``index`` as a ConfigurationBatch (thermal positions), or None."""
    from tbotan.physics.configurations import ConfigurationBatch

    folder = botan_dir()
    if folder is None:
        return None
    with np.load(folder / f"isoconfig_N4096T0.44_{index}_tc07.npz") as d:
        return ConfigurationBatch(d["initial_positions"], d["types"], np.full(3, 15.05658))


def liquid(n: int, seed: int = 3):
    """A dense random KALJ configuration quenched a little (FIRE, CPU) so that MD is stable."""
    from tbotan.physics.configurations import random_configuration

    return random_configuration(n, seed=seed)


def synchronize(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- stages


def stage_environment(check: Check) -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    for module in ("torch_geometric", "h5py", "matplotlib", "jsonschema", "gsd", "freud", "yaml"):
        try:
            mod = __import__(module)
            info[module] = getattr(mod, "__version__", "present")
        except ImportError:
            info[module] = None
    info["botan_data"] = str(botan_dir())
    return info


def stage_forces(check: Check) -> dict:
    """Forces, energies and virials of the device kernels vs the NumPy reference (float64)."""
    from tbotan import kalj
    from tbotan.md.torch_engine import TorchEngine

    conf = botan_configuration(1) or liquid(4096)
    ref = kalj.evaluate(conf.positions[0], conf.types[0], conf.box[0])
    out = {"configuration": "BOTAN file 1" if botan_dir() else "random N = 4096"}
    for kernels in ("eager", "compiled"):
        engine = TorchEngine(device=check.device, kernels=kernels)
        result = engine.evaluate(conf)
        scale = np.abs(ref.forces).max()
        out[kernels] = {
            "max_rel_force_error": float(np.abs(result.forces[0] - ref.forces).max() / scale),
            "u_per_particle": float(result.per_particle_energy[0].mean()),
            "u_reference": float(ref.per_particle_energy.mean()),
            "virial_rel_error": float(abs(result.virial[0] - ref.virial) / abs(ref.virial)),
        }
        if out[kernels]["max_rel_force_error"] > 1e-10:
            raise AssertionError(f"{kernels} forces differ from the reference: {out[kernels]}")
    return out


def stage_neighbor_lists(check: Check) -> dict:
    """The device build gives the CPU build's lists exactly (same entries, same order)."""
    import torch

    from tbotan.md import torch_neighbors as nl
    from tbotan.physics.configurations import ConfigurationBatch

    confs = [botan_configuration(1) or liquid(4096), liquid(4096, seed=5)]
    conf = ConfigurationBatch.concatenate(confs)
    coords = torch.tensor(np.moveaxis(conf.positions, 2, 0).copy(), dtype=torch.float64)
    types = torch.as_tensor(conf.types).long()
    box = torch.as_tensor(conf.box, dtype=torch.float64)
    radii = nl.ListRadii.create(0.3)
    cap = nl.default_capacity(1.2, radii)
    wrapped, _ = nl.wrap(coords, box)
    cpu = nl.build(wrapped, types, box, radii, cap)
    dev = nl.build(
        wrapped.to(check.device), types.to(check.device), box.to(check.device), radii, cap
    )
    same = all(torch.equal(a, b.cpu()) for a, b in zip(cpu, dev, strict=True))
    if not same:
        raise AssertionError("device and CPU neighbour lists differ")
    return {"identical": same, "capacity": cap, "mean_count": float(cpu[1].double().mean())}


def stage_nve(check: Check) -> dict:
    """Energy conservation of a short NVE run (float64, compiled kernels)."""
    from tbotan.md import DynamicsParameters
    from tbotan.md.torch_engine import TorchEngine
    from tbotan.physics.configurations import maxwell_boltzmann_velocities

    n = 1000
    engine = TorchEngine(device=check.device, kernels="compiled")
    conf = liquid(n).with_velocities(maxwell_boltzmann_velocities(n, 1.0, 1, 0)[None])
    melt = engine.simulation(conf, DynamicsParameters(dt=0.002, kT=1.0, tau=0.1, seed=1))
    melt.run(300)
    sim = engine.simulation(melt.state(), DynamicsParameters(dt=0.005))
    energies = []
    steps = 1000 if not check.dry_run else 400
    for _ in range(steps // 100):
        sim.run(100)
        t = sim.thermo()
        energies.append(float(t.total_energy_per_particle[0]))
    drift = max(energies) - min(energies)
    if drift > 1e-3:
        raise AssertionError(f"total energy per particle drifts by {drift:.3g}")
    return {"steps": steps, "e_per_particle": energies[-1], "max_minus_min": drift}


def stage_fire(check: Check) -> dict:
    from tbotan.md.torch_engine import TorchEngine

    conf = botan_configuration(1)
    if conf is None:
        return {"skipped": "BOTAN data not found (set TBOTAN_BOTAN_DATA)"}
    engine = TorchEngine(device=check.device, kernels="compiled")
    start = time.perf_counter()
    result = engine.minimize(conf)
    seconds = time.perf_counter() - start
    e_is = float(result.energy[0])
    if abs(e_is - (-6.83792)) > 1e-3:
        raise AssertionError(f"e_IS/N = {e_is} far from the reference -6.83792")
    return {"e_is": e_is, "reference": -6.83792, "steps": int(result.steps[0]), "seconds": seconds}


def stage_rng(check: Check) -> dict:
    """The thermostat's counter-based random streams on the device vs the CPU."""
    import torch

    from tbotan.md import torch_integrators as integ

    m = 4096
    seed = torch.full((m,), 12345, dtype=torch.int64)
    stream = torch.arange(m, dtype=torch.int64)
    counter = torch.arange(m, dtype=torch.int64) * 7 + 1
    cpu = integ.bussi_noise(12285.0, seed, stream, counter)
    dev = integ.bussi_noise(
        12285.0, seed.to(check.device), stream.to(check.device), counter.to(check.device)
    )
    out = {}
    for name, a, b in zip(("r1", "chi2"), cpu, dev, strict=True):
        b = b.cpu()
        out[name] = {
            "bit_identical": bool(torch.equal(a, b)),
            "max_rel_diff": float(((a - b).abs() / a.abs().clamp(min=1e-300)).max()),
        }
        if out[name]["max_rel_diff"] > 1e-12:
            raise AssertionError(f"{name} streams differ beyond rounding: {out[name]}")
    return out


def _timed_run(engine, conf, steps, integrator):
    sim = engine.simulation(conf, integrator)
    sim.run(20)  # compile / capture
    synchronize(engine.device)
    start = time.perf_counter()
    sim.run(steps)
    synchronize(engine.device)
    return sim, time.perf_counter() - start


def stage_cuda_graphs(check: Check) -> dict:
    """CUDA graphs on vs off: the same trajectory (to rounding), and the time per step."""
    from tbotan.md import DynamicsParameters
    from tbotan.md.torch_engine import TorchEngine
    from tbotan.physics.configurations import maxwell_boltzmann_velocities

    n, b, steps = (4096, 8, 200) if not check.dry_run else (1000, 2, 40)
    conf = (botan_configuration(1) or liquid(4096)) if n == 4096 else liquid(n)
    conf = conf.repeat(b).with_velocities(
        np.stack([maxwell_boltzmann_velocities(n, 0.44, 1, k) for k in range(b)])
    )
    integrator = DynamicsParameters(dt=0.005, kT=0.44, tau=0.5, seed=3)
    out = {"n": n, "batch": b, "steps": steps}
    finals = {}
    for graphs in (False, True):
        engine = TorchEngine(device=check.device, kernels="compiled", cuda_graphs=graphs)
        sim, seconds = _timed_run(engine, conf, steps, integrator)
        finals[graphs] = sim.state().unwrapped_positions()
        out[f"graphs_{graphs}_replica_steps_per_s"] = b * steps / seconds
    out["max_position_difference"] = float(np.abs(finals[True] - finals[False]).max())
    if out["max_position_difference"] > 1e-6:
        raise AssertionError(f"CUDA graphs change the trajectory: {out}")
    return out


def stage_recompiles(check: Check) -> dict:
    """Compilations of the compiled kernels over runs at batch 1, 1 (another source) and 4:
    one per distinct shape; a recompile-limit hit fails the stage."""
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    from tbotan.md import DynamicsParameters
    from tbotan.md.torch_engine import TorchEngine
    from tbotan.physics.configurations import maxwell_boltzmann_velocities

    torch._dynamo.reset()
    counters.clear()
    n = 1000
    base = (
        liquid(n)
        .repeat(4)
        .with_velocities(np.stack([maxwell_boltzmann_velocities(n, 0.8, 1, k) for k in range(4)]))
    )
    graphs = {}
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=4):
        engine = TorchEngine(device=check.device, kernels="compiled")
        for label, conf in (
            ("b1", base.select(0)),
            ("b1_again", base.select(2).repeat(1)),
            ("b4", base),
        ):
            engine.simulation(conf, DynamicsParameters(dt=0.005, kT=0.8, tau=0.5)).run(5)
            graphs[label] = int(counters["stats"]["unique_graphs"])
    if graphs["b1_again"] != graphs["b1"]:
        raise AssertionError(f"a batch of one from another source recompiled: {graphs}")
    return {"unique_graphs_after": graphs}


def stage_profile(check: Check) -> dict:
    """Kernel launches, host syncs and copies per MD step (torch.profiler over 20 steps)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tbotan.md import DynamicsParameters
    from tbotan.md.torch_engine import TorchEngine
    from tbotan.physics.configurations import maxwell_boltzmann_velocities

    n, b, steps = (4096, 32, 20) if not check.dry_run else (1000, 2, 10)
    conf = (botan_configuration(1) or liquid(4096)) if n == 4096 else liquid(n)
    conf = conf.repeat(b).with_velocities(
        np.stack([maxwell_boltzmann_velocities(n, 0.44, 1, k) for k in range(b)])
    )
    out = {"n": n, "batch": b, "steps": steps}
    for graphs in (False, True):
        engine = TorchEngine(device=check.device, kernels="compiled", cuda_graphs=graphs)
        sim = engine.simulation(conf, DynamicsParameters(dt=0.005, kT=0.44, tau=0.5, seed=1))
        sim.run(20)
        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available() and check.device.startswith("cuda"):
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            sim.run(steps)
            synchronize(check.device)
        names = {}
        for e in prof.events():
            names[e.name] = names.get(e.name, 0) + 1

        def count(*keys, names=names):
            return sum(v for k, v in names.items() if any(s in k for s in keys)) / steps

        out[f"graphs_{graphs}"] = {
            "kernel_launches_per_step": count("cudaLaunchKernel", "cuLaunchKernel"),
            "graph_launches_per_step": count("cudaGraphLaunch"),
            "syncs_per_step": count(
                "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"
            ),
            "memcpy_per_step": count("cudaMemcpy"),
            "aten_item_per_step": count("aten::item", "aten::_local_scalar_dense"),
            "aten_nonzero_per_step": count("aten::nonzero"),
        }
    return out


def _cli(check: Check, args: list[str], timeout: float) -> dict:
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    cmd = [sys.executable, "-m", "tbotan", *args]
    log.info("running: %s", " ".join(cmd))
    # a dry run on a (shared) CPU is slower than the GPU run the limits are set for
    limit = max(10.0, min(timeout * (4.0 if check.dry_run else 1.0), check.left()))
    log_path = check.out / f"{args[0]}-{args[1] if len(args) > 1 else ''}.log"
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        text = [t.decode() if isinstance(t, bytes) else (t or "") for t in (exc.stdout, exc.stderr)]
        log_path.write_text("".join(text))
        raise RuntimeError(f"timed out after {limit:.0f} s; output so far in {log_path}") from None
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")
    return {"stdout_tail": proc.stdout[-1500:]}


def stage_benchmark_md(check: Check) -> dict:
    size = ["--n-particles", "4096", "--batch-sizes", "32", "--steps", "300"]
    if check.dry_run:
        size = ["--n-particles", "1000", "--batch-sizes", "2", "--steps", "20", "--warmup", "5"]
    out = check.out / "md-benchmark.json"
    res = _cli(
        check,
        [
            "benchmark",
            "md",
            "--device",
            check.device,
            "--kernels",
            "compiled",
            "--engine",
            "torch",
            *size,
            "--output",
            str(out),
        ],
        240,
    )
    data = json.loads(out.read_text())
    res["replica_steps_per_s"] = {
        m["batch_size"]: m["replica_steps_per_second"] for m in data["measurements"]
    }
    return res


def stage_benchmark_train(check: Check) -> dict:
    out = check.out / "train-benchmark.json"
    size = ["--n-particles", "4096", "--steps", "6", "--warmup", "2", "--epoch-configurations", "2"]
    if check.dry_run:
        overlay = check.out / "train-benchmark-dry-run.yaml"  # a smaller network
        overlay.write_text("model:\n  message_passing_steps: 2\n")
        size = [
            "--n-particles",
            "400",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--epoch-configurations",
            "1",
            "--config",
            str(overlay),
            "--no-reference",
        ]
    flags = ["--compile", "--amp"] if not check.dry_run else []
    res = _cli(
        check,
        ["benchmark", "train", "--device", check.device, *flags, *size, "--output", str(out)],
        300,
    )
    data = json.loads(out.read_text())
    res["step_seconds"] = data["step"]["seconds"]
    res["corr_fraction"] = data["step"]["corr_fraction"]
    return res


def stage_predict(check: Check) -> dict:
    """Train a tiny model for one epoch on the device, then ``tbotan predict --device``."""
    from tbotan import config as cfgmod
    from tbotan.checks.benchmark import synthetic_dataset_content
    from tbotan.formats.dataset import DatasetFile, select_configurations, write_dataset
    from tbotan.learning.training import train

    folder = check.out / "predict"
    folder.mkdir(exist_ok=True)
    n = 500
    write_dataset(folder / "all.h5", synthetic_dataset_content(n, 3, 0))
    whole = DatasetFile(folder / "all.h5")
    write_dataset(folder / "train.h5", select_configurations(whole, [0, 1], "train"))
    write_dataset(folder / "validation.h5", select_configurations(whole, [2], "validation"))
    half_box = 0.5 * whole.box_length
    config = cfgmod.validate(
        {
            "model": {"hidden": 16, "message_passing_steps": 2},
            "training": {
                "epochs": 1,
                "warmup_epochs": 0,
                "device": check.device,
                "corr_distances": [half_box / 3, 2 * half_box / 3, 0.95 * half_box],
            },
        }
    )
    result = train(
        config,
        [folder / "train.h5"],
        [folder / "validation.h5"],
        folder / "model",
        device=check.device,
        progress=False,
    )
    res = _cli(
        check,
        [
            "predict",
            "--model",
            str(result.model_path),
            "--dataset",
            str(folder / "validation.h5"),
            "--out",
            str(folder / "predictions.h5"),
            "--device",
            check.device,
            "--allow-extrapolation",
        ],
        120,
    )
    res["predictions"] = str(folder / "predictions.h5")
    return res


STAGES = [
    # name, estimated seconds on a GPU (dry run: on 2 CPU cores), function
    ("environment", 5, stage_environment),
    ("forces", 60, stage_forces),
    ("neighbor_lists", 20, stage_neighbor_lists),
    ("rng_streams", 5, stage_rng),
    ("nve", 60, stage_nve),
    ("fire", 60, stage_fire),
    ("cuda_graphs", 90, stage_cuda_graphs),
    ("recompiles", 60, stage_recompiles),
    ("profile", 60, stage_profile),
    ("benchmark_md", 120, stage_benchmark_md),
    ("benchmark_train", 150, stage_benchmark_train),
    ("predict", 60, stage_predict),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "gpu-check-out"))
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run)")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all stages")
    p.add_argument("--only", nargs="*", default=None, help="run only these stages")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=[logging.FileHandler(out / "gpu-check.log"), logging.StreamHandler()],
    )
    dry_run = args.device == "cpu"
    import torch

    if not dry_run and not torch.cuda.is_available():
        log.error("torch sees no CUDA device; use --device cpu for a dry run")
        return 2
    torch.set_float32_matmul_precision("high")
    check = Check(out, args.budget, args.device, dry_run)
    for name, estimate, fn in STAGES:
        if args.only and name not in args.only:
            continue
        check.stage(name, estimate * (1.5 if dry_run else 1.0), lambda fn=fn: fn(check))
    check.report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    check.write()
    statuses = [s["status"] for s in check.report["stages"].values()]
    log.info(
        "done: %d ok, %d failed, %d skipped; %s",
        statuses.count("ok"),
        statuses.count("failed"),
        statuses.count("skipped"),
        out / "gpu-check.json",
    )
    return 1 if "failed" in statuses else 0


if __name__ == "__main__":
    sys.exit(main())
