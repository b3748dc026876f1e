"""Benchmarks: throughput of the MD engines (and, later, of training), measured side by side.

``tbotan benchmark md`` prepares one KALJ liquid, then times every requested engine (torch at
each batch size; HOOMD-blue and LAMMPS, one system each) on exactly that liquid (NVT, Bussi,
dt = 0.005) and reports replica-steps per second: one replica of N particles advanced by one
step.  Ratios between engines are only meaningful when measured in the same run on the same
machine, which is what this does.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tbotan.errors import ConfigError, FileFormatError
from tbotan.md import DynamicsParameters, hoomd_available, make_engine
from tbotan.physics import kalj, observables
from tbotan.physics.configurations import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
)

if TYPE_CHECKING:
    from tbotan.formats.dataset import DatasetFile


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

    from tbotan.devices import cpu_flags

    info = {
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512f": "avx512f" in cpu_flags(),
        "avx2": "avx2" in cpu_flags(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


#: Time step and Bussi time constant of the timed MD (and of the liquid's last preparation).
TIMED_DT = 0.005
TIMED_TAU = 0.5


def md_workload(n_particles: int, kT: float, precision: str, skin: float, **extra) -> dict:
    """The ``workload`` record of an MD benchmark: the liquid and the timed protocol."""
    return {
        "system": "KALJ shifted-force",
        "n_particles": n_particles,
        "density": kalj.DENSITY,
        "kT": kT,
        "dt": TIMED_DT,
        "ensemble": f"NVT (Bussi, tau = {TIMED_TAU})",
        "skin": skin,
        "precision": precision,
        **extra,
    }


def prepare_liquid(n_particles: int, kT: float, seed: int, engine) -> ConfigurationBatch:
    """A KALJ liquid at ``kT``: random lattice, melt at T = 2, then 500 steps at ``kT``."""
    conf = random_configuration(n_particles, seed=seed)
    conf = conf.with_velocities(maxwell_boltzmann_velocities(n_particles, 2.0, seed, 0)[None])
    sim = engine.simulation(conf, DynamicsParameters(dt=0.002, kT=2.0, tau=0.1, seed=seed))
    sim.run(500)
    sim = engine.simulation(
        sim.state(), DynamicsParameters(dt=TIMED_DT, kT=kT, tau=TIMED_TAU, seed=seed)
    )
    sim.run(500)
    return sim.state()


def time_engine(
    engine, liquid: ConfigurationBatch, batch_size: int, steps: int, kT: float, warmup: int
) -> MDMeasurement:
    """Replica-steps per second of ``engine`` on ``batch_size`` copies of ``liquid``."""
    n = liquid.n_particles
    batch = liquid.repeat(batch_size)
    vel = np.stack([maxwell_boltzmann_velocities(n, kT, 1, b) for b in range(batch_size)])
    sim = engine.simulation(
        batch.with_velocities(vel), DynamicsParameters(dt=TIMED_DT, kT=kT, tau=TIMED_TAU)
    )
    sim.run(warmup)
    _sync(getattr(engine, "device", None))
    start = time.perf_counter()
    sim.run(steps)
    _sync(getattr(engine, "device", None))
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
    with_lammps: bool = False,
    lammps_steps: int | None = None,
    lammps_threads: int | None = None,
    seed: int = 7,
    progress=print,
    neighbor_list: str = "auto",
) -> dict:
    """Measure the torch engine (and HOOMD-blue, LAMMPS beside it) on one KALJ liquid.

    Args:
        with_hoomd: time HOOMD-blue too (None: when it imports).
        with_lammps: time LAMMPS too, on ``lammps_threads`` OpenMP threads (default: as many
            as torch uses, ``torch.get_num_threads()``).
        hoomd_steps, lammps_steps: timed steps of those engines (default ``steps``).
        neighbor_list: the torch engine's lists, ``auto`` | ``half`` | ``full``.

    Returns a JSON-ready dictionary with the machine, every measurement and the
    torch / other-engine throughput ratios (``torch_batch{B}_over_{engine}``).
    """
    import torch

    if n_particles < 250:
        raise ConfigError(
            f"n_particles must be ≥ 250 (box larger than 2 r_list), got {n_particles}"
        )
    torch_engine = make_engine(
        "torch", device=device, kernels=kernels, precision=precision, neighbor_list=neighbor_list
    )
    progress(f"preparing a KALJ liquid of N = {n_particles} at T = {kT} ...")
    liquid = prepare_liquid(n_particles, kT, seed, torch_engine)
    machine = machine_description()  # before LAMMPS sets the process's OpenMP thread count
    results: list[MDMeasurement] = []
    for b in batch_sizes:
        progress(f"torch engine ({torch_engine.describe()['kernels']} kernels), batch {b} ...")
        m = time_engine(torch_engine, liquid, b, steps, kT, warmup)
        progress(f"  {m.replica_steps_per_second:,.1f} replica-steps/s")
        results.append(m)
    if with_hoomd is None:
        with_hoomd = hoomd_available()
    others = []
    if with_hoomd:
        hoomd_engine = make_engine("hoomd", device="cuda" if device == "cuda" else "cpu")
        others.append(("HOOMD-blue", hoomd_engine, hoomd_steps or steps))
    if with_lammps:
        threads = lammps_threads or torch.get_num_threads()
        others.append(("LAMMPS", make_engine("lammps", threads=threads), lammps_steps or steps))
    ratios = {}
    torch_results = list(results)
    torch_threads = torch.get_num_threads()
    for label, engine, n_steps in others:
        progress(f"{label}, one system ...")
        h = time_engine(engine, liquid, 1, n_steps, kT, warmup)
        progress(f"  {h.replica_steps_per_second:,.1f} replica-steps/s")
        results.append(h)
        for m in torch_results:
            ratios[f"torch_batch{m.batch_size}_over_{h.engine}"] = (
                m.replica_steps_per_second / h.replica_steps_per_second
            )
    torch.set_num_threads(torch_threads)  # LAMMPS sets the process's OpenMP thread count
    return {
        "benchmark": "md",
        "workload": md_workload(n_particles, kT, precision, torch_engine.radii.skin),
        "machine": machine,
        "measurements": [asdict(m) for m in results],
        "ratios": ratios,
    }


def _lammps_side_by_side_worker(index, liquid, steps, kT, warmup, threads, barrier, results):
    """One LAMMPS process of :func:`time_lammps_side_by_side` (runs in a spawned child): warm
    up, wait for its siblings, time ``steps`` steps, report (index, seconds, start, end)."""
    import torch

    torch.set_num_threads(threads)
    engine = make_engine("lammps", threads=threads)
    n = liquid.n_particles
    vel = maxwell_boltzmann_velocities(n, kT, 1, 0)[None]
    sim = engine.simulation(
        liquid.with_velocities(vel), DynamicsParameters(dt=TIMED_DT, kT=kT, tau=TIMED_TAU)
    )
    sim.run(warmup)
    barrier.wait(timeout=600)
    start = time.time()
    sim.run(steps)
    end = time.time()
    results.put((index, end - start, start, end))


def time_lammps_side_by_side(
    liquid: ConfigurationBatch, processes: int, steps: int, kT: float, warmup: int, threads: int
) -> dict:
    """``processes`` LAMMPS processes of ``threads`` OpenMP threads each, every one running one
    copy of ``liquid`` at the same time (started together after their warm-up).

    Returns ``{"rates": per-process replica-steps/s, "aggregate": their sum, "overlap": the
    fraction of the longest timed run during which all of them ran}``."""
    import multiprocessing as mp

    if processes < 1:
        raise ConfigError(f"LAMMPS processes must be ≥ 1, got {processes}")
    ctx = mp.get_context("spawn")  # a fresh interpreter each: LAMMPS's OpenMP state is its own
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=_lammps_side_by_side_worker,
            args=(i, liquid, steps, kT, warmup, threads, barrier, results),
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    reports = []
    try:
        for _ in range(processes):
            reports.append(results.get(timeout=3600))
    except Exception as exc:
        codes = [w.exitcode for w in workers]
        raise RuntimeError(
            f"side-by-side LAMMPS processes did not all report (exit codes {codes}): {exc!r}"
        ) from exc
    finally:
        for w in workers:
            w.join(timeout=60)
    reports.sort()
    rates = [steps / seconds for _, seconds, _, _ in reports]
    first_end = min(end for *_, end in reports)
    last_start = max(start for _, _, start, _ in reports)
    longest = max(seconds for _, seconds, _, _ in reports)
    return {
        "rates": rates,
        "aggregate": float(sum(rates)),
        "overlap": max(0.0, first_end - last_start) / longest,
    }


def benchmark_md_interleaved(
    n_particles: int = 4096,
    batch_sizes: tuple[int, ...] = (1, 16),
    steps: int = 100,
    warmup: int = 20,
    rounds: int = 3,
    kT: float = 0.8,
    neighbor_lists: tuple[str, ...] = ("half", "full"),
    with_lammps: bool = True,
    lammps_threads: int | None = None,
    lammps_processes: int | None = None,
    seed: int = 7,
    progress=print,
) -> dict:
    """The torch engine (native kernels, one engine per neighbour-list kind) and LAMMPS timed
    in turns on one KALJ liquid, CPU, float64: ``rounds`` rounds, each timing every engine and
    batch size once for ``steps`` steps, so that the load of a shared machine hits all alike.

    LAMMPS is timed as one process (``lammps_batch1``) and, where ``lammps_processes`` > 1, also
    as that many processes running side by side (:func:`time_lammps_side_by_side`), whose summed
    throughput is ``lammps-x{P}_aggregate``: on the torch engine's cores, P = torch threads /
    LAMMPS threads independent LAMMPS runs is what the same cores give LAMMPS (default: that P,
    at least 1).

    Returns a JSON-ready dictionary: every measurement, the median and best replica-steps/s of
    each (engine, batch size), and the ratios of medians ``torch-{list}_batch{B}_over_lammps``
    (one LAMMPS process), ``torch-{list}_batch{B}_over_lammps-x{P}`` (the aggregate of P) and
    ``torch-half_batch{B}_over_torch-full``.
    """
    import torch

    engines = {
        f"torch-{nl}": make_engine("torch", device="cpu", kernels="native", neighbor_list=nl)
        for nl in neighbor_lists
    }
    progress(f"preparing a KALJ liquid of N = {n_particles} at T = {kT} ...")
    liquid = prepare_liquid(n_particles, kT, seed, next(iter(engines.values())))
    machine = machine_description()  # before LAMMPS sets the process's OpenMP thread count
    runs = [(label, e, b) for label, e in engines.items() for b in batch_sizes]
    processes = 1
    if with_lammps:
        threads = lammps_threads or torch.get_num_threads()
        runs.append(("lammps", make_engine("lammps", threads=threads), 1))
        if lammps_processes is None:
            processes = max(1, torch.get_num_threads() // threads)
        else:
            processes = int(lammps_processes)
            if processes < 1:
                raise ConfigError(f"lammps_processes must be ≥ 1, got {lammps_processes}")
    side_by_side = f"lammps-x{processes}_aggregate" if processes > 1 else None
    rates: dict[str, list[float]] = {f"{label}_batch{b}": [] for label, _, b in runs}
    if side_by_side:
        rates[side_by_side] = []
    measurements = []
    # LAMMPS sets the OpenMP thread count of the whole process (``-pk omp``), which the torch
    # engine's kernels share: each torch measurement restores the torch thread count
    torch_threads = torch.get_num_threads()
    for r in range(rounds):
        for label, engine, b in runs:
            if label != "lammps":
                torch.set_num_threads(torch_threads)
            m = time_engine(engine, liquid, b, steps, kT, warmup)
            # the thread count in effect for the measurement (LAMMPS: its own)
            m.details["threads"] = threads if label == "lammps" else torch.get_num_threads()
            m.details["round"] = r
            m.details["label"] = label
            measurements.append(asdict(m))
            rates[f"{label}_batch{b}"].append(m.replica_steps_per_second)
            progress(f"round {r + 1} {label} batch {b}: {m.replica_steps_per_second:,.1f}")
        if side_by_side:
            t = time_lammps_side_by_side(liquid, processes, steps, kT, warmup, threads)
            measurements.append(
                {
                    "engine": "lammps",
                    "batch_size": 1,
                    "n_particles": n_particles,
                    "steps": steps,
                    "replica_steps_per_second": t["aggregate"],
                    "details": {
                        "label": f"lammps-x{processes}",
                        "processes": processes,
                        "threads": threads,
                        "rates": t["rates"],
                        "overlap": t["overlap"],
                        "round": r,
                    },
                }
            )
            rates[side_by_side].append(t["aggregate"])
            per = ", ".join(f"{v:,.1f}" for v in t["rates"])
            progress(
                f"round {r + 1} {processes} LAMMPS processes side by side: {per} "
                f"(aggregate {t['aggregate']:,.1f}, overlap {t['overlap']:.0%})"
            )
    torch.set_num_threads(torch_threads)
    summary = {
        key: {"median": float(np.median(v)), "best": float(np.max(v)), "all": v}
        for key, v in rates.items()
    }
    ratios = {}
    for key, value in summary.items():
        if with_lammps and key.startswith("torch"):
            ratios[f"{key}_over_lammps"] = value["median"] / summary["lammps_batch1"]["median"]
            if side_by_side:
                ratios[f"{key}_over_lammps-x{processes}"] = (
                    value["median"] / summary[side_by_side]["median"]
                )
    if "half" in neighbor_lists and "full" in neighbor_lists:
        for b in batch_sizes:
            ratios[f"torch-half_batch{b}_over_torch-full"] = (
                summary[f"torch-half_batch{b}"]["median"]
                / summary[f"torch-full_batch{b}"]["median"]
            )
    return {
        "benchmark": "md-interleaved",
        "workload": md_workload(
            n_particles,
            kT,
            "float64",
            next(iter(engines.values())).radii.skin,
            steps_per_measurement=steps,
            rounds=rounds,
            lammps_processes_side_by_side=processes if side_by_side else None,
        ),
        "machine": machine,
        "measurements": measurements,
        "summary": summary,
        "ratios": ratios,
    }


def format_md_interleaved(result: dict) -> str:
    """A short table of an interleaved MD benchmark (medians over rounds)."""
    lines = [
        f"KALJ N = {result['workload']['n_particles']}, float64, "
        f"{result['machine']['processor']} ({result['machine']['torch_threads']} threads), "
        f"{result['workload']['rounds']} rounds",
        f"{'engine, batch':<22} {'median':>10} {'best':>10}  replica-steps/s",
    ]
    for key, value in result["summary"].items():
        lines.append(f"{key:<22} {value['median']:>10,.1f} {value['best']:>10,.1f}")
    for key, value in result["ratios"].items():
        lines.append(f"{key}: {value:.2f}x")
    return "\n".join(lines)


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


# ---------------------------------------------------------------------------- training


def synthetic_attrs(box_length: float, **overrides) -> dict:
    """Dataset attributes (schema v1) for synthetic content: timing runs and tests.

    Defaults: T = 0.44, τα = label time = 1, one replica, the paper's bond and graph cut-offs,
    engine "synthetic", split "train", no provenance
    (:func:`tbotan.formats.dataset.dataset_attrs`); ``overrides`` replace or add keys.
    """
    from tbotan.formats.dataset import dataset_attrs

    attrs = dataset_attrs(
        temperature=0.44,
        tau_alpha=1.0,
        tau_alpha_source="given",
        label_time=1.0,
        n_replicas=1,
        box_length=box_length,
        bond_in=observables.BOND_IN,
        bond_out=observables.BOND_OUT,
        graph_cutoff=2.0,
        engine={"engine": "synthetic"},
        config_hash="synthetic",
        seeds=[],
        split="train",
        source="pipeline",
        provenance=False,
    )
    attrs.update(overrides)
    return attrs


def synthetic_dataset_content(n_particles: int, n_configurations: int, seed: int = 0):
    """A dataset of jittered-lattice KALJ configurations with smooth synthetic labels.

    Only for timing: the graphs have the real edge count (≈ 40 per particle at ρ = 1.2, cut-off
    2.0), the labels are structure-free random fields.
    """
    from tbotan.formats.dataset import DatasetContent, configuration_record
    from tbotan.physics import neighbors

    rng = np.random.default_rng(seed)
    confs = [random_configuration(n_particles, seed=seed + c) for c in range(n_configurations)]
    L = float(confs[0].box[0, 0])
    inherent = np.stack(
        [np.mod(c.positions[0] + rng.normal(0, 0.1, (n_particles, 3)), L) for c in confs]
    )
    thermal = np.mod(inherent + rng.normal(0, 0.08, inherent.shape), L)
    graphs, graphs_ts = [], []
    for c in range(n_configurations):
        g = neighbors.graph_edges(inherent[c], L, 2.0)
        graphs.append((g, rng.normal(0, 0.1, g.shape[1])))
        g = neighbors.graph_edges(thermal[c], L, 2.0)
        graphs_ts.append((g, rng.normal(0, 0.1, g.shape[1])))
    cb = np.clip(rng.normal(0.7, 0.1, (n_configurations, n_particles)), 0, 1)
    records = [
        configuration_record(
            types=confs[c].types[0],
            thermal_positions=thermal[c],
            inherent_positions=inherent[c],
            inherent_energy=0.0,
            cb=cb[c],
            propensity=1.0 - cb[c],
            n_bonds=np.full(n_particles, 12),
            graph=graphs[c],
            graph_ts=graphs_ts[c],
            origin=(0, 0),
        )
        for c in range(n_configurations)
    ]
    return DatasetContent.from_configurations(
        synthetic_attrs(L, config_hash="benchmark", seeds=[seed]), records
    )


def reference_botan_model(hidden: int = 64, layers: int = 2, steps: int = 7):
    """BOTAN's reference network (h3-Open-BDEC/pyg_botan), rewritten here only for timing.

    Its computation: one node feature (the species as a number), three edge features,
    concatenate-then-MLP updates on gathered edge copies, a scatter sum, and one decoder for
    both nodes and edges.  Not used for science.
    """
    import torch
    from torch_geometric.utils import scatter

    from tbotan.learning.model import MLP

    class ReferenceBotan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.node_encoder = MLP(1, hidden, layers)
            self.edge_encoder = MLP(3, hidden, layers)
            self.edge_mlp = MLP(4 * hidden, hidden, layers)
            self.node_mlp = MLP(3 * hidden, hidden, layers)
            self.decoder = MLP(hidden, hidden, layers, out=1)

        def forward(self, x, edge_index, edge_attr):
            row, col = edge_index
            h = h_enc = self.node_encoder(x)
            e = e_enc = self.edge_encoder(edge_attr)
            for _ in range(steps):
                e = self.edge_mlp(torch.cat([h[row], h[col], e, e_enc], dim=1))
                received = scatter(e, col, dim=0, dim_size=h.size(0), reduce="sum")
                h = self.node_mlp(torch.cat([h, h_enc, received], dim=1))
            return self.decoder(h), self.decoder(e)

    return ReferenceBotan()


def _sync(device) -> None:
    """Wait for the queued CUDA work of ``device`` (a torch device; anything else: no-op)."""
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def benchmark_config(
    config: dict | None = None,
    *,
    device: str | None = None,
    compile: bool | None = None,
    amp: bool | None = None,
    batch_size: int | None = None,
    box_length: float | None = None,
) -> dict:
    """The configuration a training benchmark trains with: ``config`` (the schema's defaults,
    i.e. the repository's ``config.yaml``, when None) with what a benchmark varies over it.

    ``device``, ``compile``, ``amp`` and ``batch_size`` replace ``training.device``,
    ``training.compile``, ``training.amp`` and ``training.batch_size`` when given; the warm-up
    is over (``training.warmup_epochs`` 0: every loss term active from the first step); the
    L_Corr distances are scaled down to fit half of ``box_length`` where they do not (the
    paper's d = 2, 4, 6 need L ≥ 12).  Everything else (``model``, the loss, the optimiser,
    ``training.corr_block_rows``, ...) is the configuration's.
    """
    from tbotan import config as cfgmod

    base = _base_config(config)
    overlay: dict = {"warmup_epochs": 0}
    for key, value in (
        ("device", device),
        ("compile", compile),
        ("amp", amp),
        ("batch_size", batch_size),
    ):
        if value is not None:
            overlay[key] = value
    out = cfgmod.validate(cfgmod.merge(base, {"training": overlay}), check_engine=False)
    distances = out["training"]["corr_distances"]
    if box_length is not None and max(distances) > 0.5 * box_length:
        shrink = 0.5 * box_length / max(distances)
        out["training"]["corr_distances"] = [d * shrink for d in distances]
    return out


def _base_config(config: dict | None) -> dict:
    """``config``, or the schema's defaults (validated, without the engine check) when None."""
    from tbotan import config as cfgmod

    return cfgmod.validate({}, check_engine=False) if config is None else config


def _train_defaults(config: dict | None, n_particles: int | None, device: str | None):
    """(configuration, N, torch device) of a training benchmark: the arguments where given,
    else the configuration's ``system.n_particles`` and ``training.device``."""
    from tbotan.devices import resolve_device

    base = _base_config(config)
    n = n_particles or base["system"]["n_particles"]
    return base, n, resolve_device(device or base["training"]["device"])


def _epoch_files(
    folder: Path,
    n_train: int,
    n_particles: int,
    dataset: str | os.PathLike | None,
    seed: int,
    progress,
) -> tuple[Path, Path, int, DatasetFile]:
    """``train.h5`` (``n_train`` configurations) and ``validation.h5`` (the next one) in
    ``folder``: from the first configurations of ``dataset``, or synthetic N-particle ones
    (:func:`synthetic_dataset_content`).  Returns (train, validation, n_train, the source)."""
    from tbotan.formats.dataset import DatasetFile, select_configurations, write_dataset

    if dataset is None:
        progress(f"building {n_train + 1} synthetic configurations of N = {n_particles} ...")
        source = folder / "synthetic.h5"
        write_dataset(source, synthetic_dataset_content(n_particles, n_train + 1, seed))
    else:
        source = Path(dataset)
    f = DatasetFile(source)
    if f.n_configurations < 2:
        raise FileFormatError(f"{source}: the benchmark needs at least 2 configurations")
    n_train = min(n_train, f.n_configurations - 1)
    train, validation = folder / "train.h5", folder / "validation.h5"
    write_dataset(train, select_configurations(f, range(n_train), "train"))
    write_dataset(validation, select_configurations(f, [n_train], "validation"))
    return train, validation, n_train, f


def _workload(trainer) -> dict:
    """What a training benchmark ran: the trainer's model and training settings."""
    from tbotan import config as cfgmod
    from tbotan.learning.model import count_parameters

    m, t = trainer.config["model"], trainer.training
    return {
        "variant": trainer.variant,
        "hidden": m["hidden"],
        "mlp_layers": m["mlp_layers"],
        "message_passing_steps": m["message_passing_steps"],
        "global_readout": m["global_readout"],
        "parameters": count_parameters(trainer.model),
        "compile": bool(t["compile"]),
        "amp_bf16": trainer.amp,
        "corr_block_rows": t["corr_block_rows"],
        "corr_distances": list(t["corr_distances"]),
        "batch_size": t["batch_size"],
        "config_hash": cfgmod.section_hash(trainer.config, ["model", "training"]),
    }


def benchmark_train(
    config: dict | None = None,
    n_particles: int | None = None,
    steps: int = 10,
    warmup: int = 3,
    device: str | None = None,
    compile: bool | None = None,
    amp: bool | None = None,
    dataset: str | os.PathLike | None = None,
    epoch_configurations: int = 4,
    reference: bool = True,
    seed: int = 0,
    progress=print,
) -> dict:
    """Time T-BOTAN training on N-particle graphs (docs/benchmarks.md, "Learning").

    The model and the training are those of ``config`` (a validated configuration; the
    schema's defaults when None), built by :class:`tbotan.learning.training.Trainer` as
    ``tbotan train`` builds them, with the benchmark's settings over it
    (:func:`benchmark_config`: ``device``, ``compile``, ``amp`` when given, the warm-up over).
    Measures, on one device: (1) the trainer's training step (forward, all loss terms,
    backward, clip, Adam, with the trainer's model, loss settings and optimiser) on one graph,
    split into forward / loss / backward+update, and the share of the step spent in L_Corr
    (forward and backward); (2) a real :meth:`~tbotan.learning.training.Trainer.train_epoch`
    over ``epoch_configurations`` configurations written to a temporary dataset file (reading
    and graph building included; with ``compile`` after one untimed epoch) plus its validation
    on one configuration; (3) peak memory; (4) optionally the same step of BOTAN's reference
    network (:func:`reference_botan_model` of the same width and depth, node + edge MSE) on
    the same graph, measured interleaved with ours so that machine load affects both alike.

    Configurations are synthetic, of ``n_particles`` (default: ``system.n_particles``), when
    ``dataset`` is None, else the first ones of that dataset file.
    """
    import resource
    import tempfile

    import torch

    from tbotan.formats.dataset import DatasetFile
    from tbotan.learning.graphs import graph_from_dataset, octahedral_augment, octahedral_operation
    from tbotan.learning.losses import correlation_loss, loss_weights
    from tbotan.learning.training import Trainer

    base, n_particles, dev = _train_defaults(config, n_particles, device)
    with tempfile.TemporaryDirectory(prefix="tbotan-bench-") as folder:
        tmp = Path(folder)
        train_file, validation_file, epoch_configurations, source = _epoch_files(
            tmp, epoch_configurations, n_particles, dataset, seed, progress
        )
        config = benchmark_config(
            base, device=str(dev), compile=compile, amp=amp, box_length=source.box_length
        )
        trainer = Trainer(
            config, [train_file], [validation_file], tmp / "model", seed=seed, device=str(dev)
        )
        training = trainer.training
        model, optimizer = trainer.model, trainer.optimizer
        data = graph_from_dataset(DatasetFile(train_file), 0, trainer.variant).to(dev)
        n_edges = int(data.edge_index.shape[1])
        weights = loss_weights(training, 1, trainer.lambda_global)  # every term active
        distances, block_rows = training["corr_distances"], training["corr_block_rows"]
        rng = np.random.default_rng(seed)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        def our_step(split: dict | None = None, amp: bool | None = None):
            """One optimiser step of the trainer on ``data`` (as in Trainer.train_epoch); with
            ``amp`` False, the same step in float32 although the trainer uses bf16."""
            t0 = time.perf_counter()
            sample = data
            if training["augment"]:
                sample = octahedral_augment(data, *octahedral_operation(rng))
            bf16 = trainer.amp if amp is None else amp
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = trainer.forward(sample.x, sample.edge_index, sample.edge_attr)
            if split is not None:
                _sync(dev)
            t1 = time.perf_counter()
            terms = trainer.loss_terms(out, sample, weights)
            if split is not None:
                _sync(dev)
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), training["grad_clip"])
            optimizer.step()
            _sync(dev)
            t3 = time.perf_counter()
            if split is not None:
                split["forward"].append(t1 - t0)
                split["loss"].append(t2 - t1)
                split["backward_update"].append(t3 - t2)
            return t3 - t0

        a = data.a_mask
        corr_input = data.y[a].clone()

        def corr_step():
            t0 = time.perf_counter()
            pred = corr_input.clone().requires_grad_(True)
            value = correlation_loss(
                pred * 1.01, data.y[a], data.corr_positions, data.box, distances, block_rows
            )
            value.backward()
            _sync(dev)
            return time.perf_counter() - t0

        m = config["model"]
        ref_model = ref_step = None
        if reference:
            torch.manual_seed(seed)
            ref_model = reference_botan_model(
                m["hidden"], m["mlp_layers"], m["message_passing_steps"]
            ).to(dev)
            ref_optimizer = torch.optim.Adam(ref_model.parameters(), lr=training["learning_rate"])
            ref_x = data.x[:, 1:2].contiguous()  # BOTAN: the species as one number
            ref_edge = data.edge_attr[:, :3].contiguous()

            def ref_step():
                t0 = time.perf_counter()
                node, edge = ref_model(ref_x, data.edge_index, ref_edge)
                loss = 0.5 * torch.nn.functional.mse_loss(node[:, 0], data.y)
                loss = loss + 0.5 * torch.nn.functional.mse_loss(edge[:, 0], data.y_edge)
                ref_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(ref_model.parameters(), training["grad_clip"])
                ref_optimizer.step()
                _sync(dev)
                return time.perf_counter() - t0

        compiled = bool(training["compile"])
        progress(f"warm-up ({warmup} steps{', compiling' if compiled else ''}) ...")
        for _ in range(max(warmup, 1)):
            our_step()
        # peak memory of T-BOTAN training alone (before the reference network runs)
        if dev.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(dev))
            memory = {"kind": "cuda max_memory_allocated", "peak_bytes": peak}
        else:
            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
            memory = {"kind": "process max RSS (getrusage)", "peak_bytes": peak}
        for _ in range(warmup):
            corr_step()
            if ref_step is not None:
                ref_step()
        progress(f"timing {steps} training steps on N = {data.num_nodes}, E = {n_edges} ...")
        split = {"forward": [], "loss": [], "backward_update": []}
        ours, corr, ref, ours_float32 = [], [], [], []
        for _ in range(steps):  # interleaved: load on a shared machine hits all alike
            ours.append(our_step())
            if trainer.amp:  # the same step in float32, for the bf16 speed-up
                ours_float32.append(our_step(amp=False))
            our_step(split)
            corr.append(corr_step())
            if ref_step is not None:
                ref.append(ref_step())

        progress(f"one training epoch of {epoch_configurations} configurations (Trainer) ...")
        if compiled:  # the eval graph and the other graphs' shapes compile before timing
            progress("  (a first, untimed epoch compiles the trainer's model)")
            trainer.train_epoch()
            trainer.validate()
        start = time.perf_counter()
        trainer.train_epoch()
        _sync(dev)
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        trainer.validate()
        _sync(dev)
        validation_seconds = time.perf_counter() - start
        workload = _workload(trainer)

    step_s = float(np.median(ours))
    result = {
        "benchmark": "train",
        "workload": {
            "n_particles": int(data.num_nodes),
            "n_edges": n_edges,
            **workload,
            "data": "synthetic" if dataset is None else str(dataset),
        },
        "machine": machine_description(),
        "device": str(dev),
        "step": {
            "seconds": step_s,
            "steps": steps,
            "forward_s": float(np.median(split["forward"])),
            "loss_s": float(np.median(split["loss"])),
            "backward_update_s": float(np.median(split["backward_update"])),
            "corr_seconds": float(np.median(corr)),
            "corr_fraction": float(np.median(corr)) / step_s,
        },
        "epoch": {
            "configurations": epoch_configurations,
            "seconds": train_seconds,
            "seconds_per_configuration": train_seconds / epoch_configurations,
            "validation_seconds_per_configuration": validation_seconds,
            "paper_epoch_estimate_s": 400 * train_seconds / epoch_configurations
            + 40 * validation_seconds,
        },
        "memory": memory,
    }
    if ours_float32:
        float32_s = float(np.median(ours_float32))
        result["step"]["float32_seconds"] = float32_s
        result["step"]["speedup_over_float32"] = float32_s / step_s
    if ref:
        ref_s = float(np.median(ref))
        result["reference"] = {
            "model": "BOTAN reference network (pyg_botan), node + edge MSE",
            "step_seconds": ref_s,
            "speedup_step": ref_s / step_s,
        }
    return result


def format_train(result: dict) -> str:
    """A short report of a training benchmark."""
    w, s, e, m = result["workload"], result["step"], result["epoch"], result["memory"]
    lines = [
        f"T-BOTAN training, N = {w['n_particles']}, E = {w['n_edges']}, variant {w['variant']}, "
        f"H = {w['hidden']}, {w['message_passing_steps']} steps, compile {w['compile']}, "
        f"bf16 {w['amp_bf16']}; {result['device']} "
        f"({result['machine']['processor']}, {result['machine']['torch_threads']} threads"
        + (f", {result['machine']['gpu']}" if "gpu" in result["machine"] else "")
        + ")",
        f"step: {s['seconds'] * 1e3:.1f} ms (forward {s['forward_s'] * 1e3:.1f}, loss "
        f"{s['loss_s'] * 1e3:.1f}, backward+update {s['backward_update_s'] * 1e3:.1f} ms)",
        f"L_Corr forward+backward: {s['corr_seconds'] * 1e3:.1f} ms = "
        f"{100 * s['corr_fraction']:.1f} % of the step",
        f"epoch of {e['configurations']} configurations: {e['seconds']:.2f} s "
        f"({e['seconds_per_configuration'] * 1e3:.1f} ms per configuration, reading included); "
        f"validation {e['validation_seconds_per_configuration'] * 1e3:.1f} ms per configuration",
        f"paper epoch (400 training + 40 validation configurations), estimated: "
        f"{e['paper_epoch_estimate_s']:.1f} s",
        f"peak memory of the training step: {m['peak_bytes'] / 2**20:.0f} MiB ({m['kind']})",
    ]
    if "float32_seconds" in s:
        lines.append(
            f"the same step in float32 (interleaved): {s['float32_seconds'] * 1e3:.1f} ms; "
            f"bf16 is {s['speedup_over_float32']:.2f}x faster"
        )
    if "reference" in result:
        r = result["reference"]
        lines.append(
            f"BOTAN reference step: {r['step_seconds'] * 1e3:.1f} ms; T-BOTAN step is "
            f"{r['speedup_step']:.2f}x faster (while computing three heads and L_Corr)"
        )
    return "\n".join(lines)


def benchmark_train_batches(
    config: dict | None = None,
    n_particles: int | None = None,
    batch_sizes: tuple[int, ...] = (1, 4, 8),
    configurations: int = 8,
    rounds: int = 2,
    device: str | None = None,
    compile: bool | None = None,
    amp: bool | None = None,
    dataset: str | os.PathLike | None = None,
    seed: int = 0,
    progress=print,
) -> dict:
    """Training throughput of :class:`tbotan.learning.training.Trainer` per
    ``training.batch_size``.

    The model and the training are those of ``config`` (the schema's defaults when None),
    with the benchmark's settings over it (:func:`benchmark_config`), as in
    :func:`benchmark_train`.  One training file of ``configurations`` synthetic N-particle
    configurations (default N: ``system.n_particles``; or the first ones of ``dataset``); for
    every batch size B a trainer runs one untimed epoch (allocations, compilation), then
    ``rounds`` timed epochs, the batch sizes taking turns round by round so that machine load
    hits all alike.  An epoch is ``ceil(configurations / B)`` optimiser steps over every
    configuration (HDF5 reading and graph building included, as in ``tbotan train``).

    Returns a JSON-ready dictionary: per batch size the median epoch time (s), optimiser
    steps per second and configurations per second, and configurations per second relative to
    batch size 1 (or the first batch size given).
    """
    import math
    import tempfile

    from tbotan.learning.training import Trainer

    base, n_particles, dev = _train_defaults(config, n_particles, device)
    with tempfile.TemporaryDirectory(prefix="tbotan-bench-batches-") as folder:
        tmp = Path(folder)
        train_file, validation_file, configurations, source = _epoch_files(
            tmp, configurations, n_particles, dataset, seed, progress
        )
        trainers = {}
        for b in batch_sizes:
            config = benchmark_config(
                base,
                device=str(dev),
                compile=compile,
                amp=amp,
                batch_size=int(b),
                box_length=source.box_length,
            )
            trainers[b] = Trainer(
                config,
                [train_file],
                [validation_file],
                tmp / f"model-{b}",
                seed=seed,
                device=str(dev),
            )
            progress(f"batch size {b}: untimed first epoch ...")
            trainers[b].train_epoch()
            trainers[b].progress.epoch += 1
        times = {b: [] for b in batch_sizes}
        for r in range(rounds):
            for b in batch_sizes:
                start = time.perf_counter()
                trainers[b].train_epoch()
                _sync(dev)
                times[b].append(time.perf_counter() - start)
                trainers[b].progress.epoch += 1
                progress(f"round {r + 1}, batch size {b}: epoch {times[b][-1]:.2f} s")
        workload = _workload(trainers[batch_sizes[0]])
        n_particles = source.n_particles
    rows = []
    for b in batch_sizes:
        seconds = float(np.median(times[b]))
        steps = max(math.ceil(configurations / b), 1)
        rows.append(
            {
                "batch_size": int(b),
                "epoch_seconds": seconds,
                "epoch_seconds_all": times[b],
                "optimizer_steps": steps,
                "steps_per_second": steps / seconds,
                "configurations_per_second": configurations / seconds,
            }
        )
    base_rate = rows[0]["configurations_per_second"]
    for row in rows:
        row["configurations_per_second_vs_first"] = row["configurations_per_second"] / base_rate
    for key in ("batch_size", "config_hash"):  # they vary with the batch size
        workload.pop(key)
    return {
        "benchmark": "train-batches",
        "workload": {
            "n_particles": n_particles,
            "configurations_per_epoch": configurations,
            **workload,
            "data": "synthetic" if dataset is None else str(dataset),
            "rounds": rounds,
        },
        "machine": machine_description(),
        "device": str(dev),
        "batches": rows,
    }


def format_train_batches(result: dict) -> str:
    """A short table of a training batch-size benchmark."""
    w = result["workload"]
    lines = [
        f"T-BOTAN training epochs, N = {w['n_particles']}, {w['configurations_per_epoch']} "
        f"configurations per epoch, {result['device']} ({result['machine']['processor']}, "
        f"{result['machine']['torch_threads']} threads)",
        f"{'batch':>5} {'epoch s':>8} {'steps/s':>8} {'configs/s':>9} {'vs first':>8}",
    ]
    for r in result["batches"]:
        ratio = r["configurations_per_second_vs_first"]
        lines.append(
            f"{r['batch_size']:>5} {r['epoch_seconds']:>8.2f} {r['steps_per_second']:>8.3f} "
            f"{r['configurations_per_second']:>9.3f} {ratio:>7.2f}x"
        )
    return "\n".join(lines)
