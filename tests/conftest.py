"""Shared fixtures: the real BOTAN data, small KALJ configurations, engines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tbotan.physics import kalj
from tbotan.physics.configurations import ConfigurationBatch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (the shared 2-core machine runs other jobs beside the
    tests, and results are bit-identical only at a fixed thread count); restored after.
    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


#: Reference values of shared/data/botan-T0.44/README.md (independent computations).
BOTAN_REFERENCE = {
    1: dict(
        u=-6.18434,
        e_is=-6.83792,
        fire_steps=1600,
        n0=12.211,
        cb_mean=0.63085,
        cb_var=0.00679,
        prop_mean=0.69862,
        cb_first=(0.45455, 0.52344, 0.48958),
        disp_is=0.1308,
    ),
    2: dict(
        u=-6.21626,
        e_is=-6.85060,
        fire_steps=1300,
        n0=12.224,
        cb_mean=0.76334,
        cb_var=0.01778,
        prop_mean=0.49624,
        cb_first=(0.66406, 0.77344, 0.56971),
        disp_is=0.1158,
    ),
    3: dict(
        u=-6.20575,
        e_is=-6.84290,
        fire_steps=1400,
        n0=12.231,
        cb_mean=0.68415,
        cb_var=0.00967,
        prop_mean=0.61657,
        cb_first=(0.61538, 0.55208, 0.73295),
        disp_is=0.1172,
    ),
    4: dict(
        u=-6.22082,
        e_is=-6.86106,
        fire_steps=1600,
        n0=12.216,
        cb_mean=0.80699,
        cb_var=0.01289,
        prop_mean=0.42772,
        cb_first=(0.91827, 0.91295, 0.83654),
        disp_is=0.1190,
    ),
    5: dict(
        u=-6.19785,
        e_is=-6.85066,
        fire_steps=1900,
        n0=12.232,
        cb_mean=0.72494,
        cb_var=0.01211,
        prop_mean=0.55486,
        cb_first=(0.97356, 0.69602, 0.60096),
        disp_is=0.1237,
    ),
}
BOTAN_BOX = 15.05658
BOTAN_TEMPERATURE = 0.44


def botan_data_dir() -> Path | None:
    """The BOTAN data folder: $TBOTAN_BOTAN_DATA or ../shared/data/botan-T0.44."""
    env = os.environ.get("TBOTAN_BOTAN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "data" / "botan-T0.44")
    for path in candidates:
        if (path / "isoconfig_N4096T0.44_1_tc07.npz").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def botan_dir() -> Path:
    path = botan_data_dir()
    if path is None:
        pytest.skip(
            "BOTAN data not found: set TBOTAN_BOTAN_DATA or place it at ../shared/data/botan-T0.44"
        )
    return path


def botan_file(directory: Path, index: int) -> Path:
    return directory / f"isoconfig_N4096T0.44_{index}_tc07.npz"


@pytest.fixture(scope="session")
def botan_npz(botan_dir):
    """Loaded BOTAN files {index: dict(types, initial_positions, positions)}."""
    out = {}
    for k in BOTAN_REFERENCE:
        with np.load(botan_file(botan_dir, k)) as data:
            out[k] = {name: data[name] for name in data.files}
    return out


@pytest.fixture(scope="session")
def botan_batch(botan_npz) -> ConfigurationBatch:
    """The five BOTAN thermal configurations as one batch."""
    return ConfigurationBatch.concatenate(
        [
            ConfigurationBatch(d["initial_positions"], d["types"], np.full(3, BOTAN_BOX))
            for d in botan_npz.values()
        ]
    )


def dense_random_configuration(
    n: int, seed: int, density: float = kalj.DENSITY, min_distance: float = 0.75
) -> ConfigurationBatch:
    """A random dense KALJ configuration with no pair closer than ``min_distance`` σ_AA.

    Random sequential addition in a periodic box (the liquid's first peak sits near 1 σ), so
    that forces are large but finite: a harsh test of force evaluation.
    """
    rng = np.random.default_rng(seed)
    L = kalj.box_length(n, density)
    pts = np.empty((0, 3))
    while pts.shape[0] < n:
        trial = rng.uniform(0, L, size=3)
        if pts.shape[0]:
            d = pts - trial
            d -= L * np.round(d / L)
            if np.min((d * d).sum(1)) < min_distance**2:
                continue
        pts = np.vstack([pts, trial])
    types = rng.permutation(kalj.standard_types(n))
    return ConfigurationBatch(pts, types, np.full(3, L))


@pytest.fixture(scope="session")
def cpu_engine():
    from tbotan.md.torch_engine import TorchEngine

    torch.manual_seed(0)
    return TorchEngine(device="cpu", precision="float64")


@pytest.fixture(scope="session")
def liquid_256(cpu_engine) -> ConfigurationBatch:
    """An equilibrated-ish KALJ liquid, N = 256 at T = 0.8 (melted from a lattice for 2000 steps).

    Session-scoped: built once, reused by the dynamics tests.
    """
    from tbotan.md import DynamicsParameters
    from tbotan.physics.configurations import maxwell_boltzmann_velocities, random_configuration

    conf = random_configuration(256, seed=11)
    conf = conf.with_velocities(maxwell_boltzmann_velocities(256, 2.0, seed=11, stream=0)[None])
    sim = cpu_engine.simulation(conf, DynamicsParameters(dt=0.003, kT=2.0, tau=0.1, seed=3))
    sim.run(1000)
    state = sim.state()
    sim = cpu_engine.simulation(state, DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=4))
    sim.run(1000)
    return sim.state()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke pipeline (config/smoke.yaml) run here with profiles/laptop: (run dir, args).

    Session-scoped: the workflow tests inspect it and the cluster tests compare against it.
    """
    pytest.importorskip(
        "snakemake", reason="the workflow extra is not installed (pip install .[workflow])"
    )
    from workflow_helpers import SMOKE_ARGS, snakemake

    results = tmp_path_factory.mktemp("smoke")
    args = ["--workflow-profile", "profiles/laptop", *SMOKE_ARGS]
    args += ["--config", f"results_dir={results}"]
    snakemake(*args, timeout=1500)
    return results / "smoke", args
