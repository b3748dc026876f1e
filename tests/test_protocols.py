"""Protocols: equilibration, τα, quench, isoconfigurational labels, splits; kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from tbotan import config as cfgmod
from tbotan.formats.dataset import DatasetFile, write_dataset
from tbotan.formats.io_utils import read_json
from tbotan.labels.chunks import assemble_splits, label_chunk
from tbotan.md.protocols import (
    EquilibrationError,
    equilibrate,
    isoconfigurational,
    measure_tau_alpha,
    quench,
)
from tbotan.physics.configurations import read_gsd, read_gsd_logs
from tbotan.pipeline import equilibration_parameters, iso_parameters, tau_alpha_parameters

# a hot, small state point: everything relaxes within a few hundred steps
SMALL = {
    "system": {"n_particles": 256},
    "temperatures": [
        {"T": 1.5, "tau_alpha": 0.5, "train": True, "equilibration_tau_alpha": 10},
        {"T": 2.0, "tau_alpha": 0.35, "train": False, "equilibration_tau_alpha": 10},
    ],
    "equilibration": {
        "n_systems": 3,
        "melt_time": 1.0,
        "checkpoint_every_tau_alpha": 1,
        "min_msd_between_samples": 0.5,
        "energy_records": 10,
    },
    "dataset": {"n_train": 3, "n_validation": 1, "n_test": 2},
    "training": {"corr_distances": [1.0, 2.0, 2.5]},  # ≤ L/2 at N = 256
    "iso": {"n_replicas": 3, "configurations_per_chunk": 4, "segment_tau_alpha": 0.5},
    "tau_alpha": {"n_origins": 2, "max_time_tau_alpha": 4},
}


@pytest.fixture(scope="module")
def small_config():
    return cfgmod.validate(SMALL)


@pytest.fixture(scope="module")
def equilibrated(cpu_engine, small_config):
    params = equilibration_parameters(small_config, 1.5)
    return equilibrate(cpu_engine, params)


def test_equilibration_passes_its_checks_and_orders_samples_by_system(equilibrated, small_config):
    result = equilibrated
    n_sys = small_config["equilibration"]["n_systems"]
    per = cfgmod.samples_per_system(small_config, 1.5)
    assert result.samples.n_systems == n_sys * per
    assert result.system.tolist() == np.repeat(np.arange(n_sys), per).tolist()
    report = result.report
    assert report["passed"], report["failures"]
    assert report["msd_between_samples"]["min"] > 0.5
    assert abs(report["kinetic_temperature_mean"] - 1.5) < 0.1
    # samples of different systems are different configurations
    assert not np.allclose(result.samples.positions[0], result.samples.positions[per])


def test_failing_checks_stop_unless_allowed(cpu_engine, small_config):
    strict = cfgmod.validate(
        cfgmod.merge(
            SMALL, {"equilibration": {"min_msd_between_samples": 50.0, "max_sample_extensions": 1}}
        )
    )
    params = equilibration_parameters(strict, 2.0)
    with pytest.raises(EquilibrationError, match="MSD between consecutive samples"):
        equilibrate(cpu_engine, params)
    lenient = cfgmod.validate(
        cfgmod.merge(
            SMALL,
            {
                "equilibration": {
                    "min_msd_between_samples": 50.0,
                    "max_sample_extensions": 1,
                    "allow_unequilibrated": True,
                }
            },
        )
    )
    result = equilibrate(cpu_engine, equilibration_parameters(lenient, 2.0))
    assert not result.report["passed"] and result.report["failures"]


def test_interrupted_equilibration_resumes_to_the_same_result(
    cpu_engine, small_config, tmp_path, equilibrated, monkeypatch
):
    import tbotan.md.protocols as protocols

    params = equilibration_parameters(small_config, 1.5)
    original = protocols.run_segments
    calls = {"n": 0}

    def dying_handler_runner(engine, initial, segments, handler, checkpointer, **kw):
        def handler_that_dies(index, segment, state, record, collected):
            calls["n"] += 1
            if calls["n"] == len(segments) // 2:
                raise KeyboardInterrupt("simulated kill")
            return handler(index, segment, state, record, collected)

        return original(engine, initial, segments, handler_that_dies, checkpointer, **kw)

    monkeypatch.setattr(protocols, "run_segments", dying_handler_runner)
    with pytest.raises(KeyboardInterrupt):
        equilibrate(cpu_engine, params, checkpoint_dir=tmp_path / "ckpt")
    monkeypatch.setattr(protocols, "run_segments", original)
    assert (tmp_path / "ckpt" / "latest").is_file()
    resumed = equilibrate(cpu_engine, params, checkpoint_dir=tmp_path / "ckpt")
    np.testing.assert_array_equal(resumed.samples.positions, equilibrated.samples.positions)
    np.testing.assert_array_equal(resumed.samples.velocities, equilibrated.samples.velocities)


def test_killed_equilibrate_command_resumes_to_the_same_file(tmp_path, small_config):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(SMALL))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "tbotan",
        "equilibrate",
        "--config",
        str(cfg),
        "--temperature",
        "1.5",
    ]
    reference = tmp_path / "ref.gsd"
    subprocess.run(cmd + ["--output", str(reference)], check=True, env=env, capture_output=True)
    out = tmp_path / "killed.gsd"
    proc = subprocess.Popen(
        cmd + ["--output", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pointer = tmp_path / "killed.gsd.ckpt" / "latest"
    deadline = time.time() + 120
    while not pointer.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "a killed run must not leave an output that looks complete"
    subprocess.run(cmd + ["--output", str(out)], check=True, env=env, capture_output=True)
    np.testing.assert_array_equal(read_gsd(out).positions, read_gsd(reference).positions)
    assert not (tmp_path / "killed.gsd.ckpt").exists()
    assert read_json(out.with_suffix(".json"))["passed"]

    # SIGTERM (a scheduler's time limit, scancel): a checkpoint at the next segment boundary,
    # though the protocol's own (every 100 tau_alpha here) would come only at the end of the
    # melt, then exit status 143; the rerun resumes to the same file
    term_cfg = tmp_path / "term.yaml"
    term = {**SMALL, "equilibration": {**SMALL["equilibration"], "checkpoint_every_tau_alpha": 100}}
    term_cfg.write_text(yaml.safe_dump(term))
    term_cmd = [*cmd[:5], str(term_cfg), *cmd[6:], "--output", str(tmp_path / "term.gsd")]
    proc = subprocess.Popen(term_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = tmp_path / "term.gsd.ckpt" / "latest"
    deadline = time.time() + 120
    while not pointer.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    melted = pointer.read_text()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert "stopped by SIGTERM" in stderr.decode()
    assert pointer.read_text() > melted  # a later checkpoint than the melt's
    done = subprocess.run(term_cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "resuming from checkpoint" in done.stderr, done.stderr[-2000:]
    np.testing.assert_array_equal(
        read_gsd(tmp_path / "term.gsd").positions, read_gsd(reference).positions
    )


def test_run_segments_checkpoints_on_a_signal_and_on_the_wall_clock_interval():
    """Any segment boundary can be a checkpoint: the protocol's own, the first one after
    checkpoint_interval_minutes, and the one after a stop signal, which then raises."""
    from tbotan.md import DynamicsParameters
    from tbotan.md.segments import Segment, run_segments
    from tbotan.resumable import Interrupted, set_checkpoint_interval

    class Recorder:
        def __init__(self):
            self.saved = []

        def load(self):
            return None

        def save(self, index, state, record, collected=None):
            self.saved.append(index)

    segments = [
        Segment("x", 0, DynamicsParameters(dt=0.005), checkpoint=(i == 4)) for i in range(6)
    ]
    plain = Recorder()
    run_segments(None, "state", segments, lambda i, seg, st, r, c: (c, st), plain)
    assert plain.saved == [5]
    timed = Recorder()
    set_checkpoint_interval(1e-9)
    try:
        run_segments(None, "state", segments, lambda i, seg, st, r, c: (c, st), timed)
    finally:
        set_checkpoint_interval(None)
    assert timed.saved == [1, 2, 3, 4, 5, 6]

    def handler(index, segment, state, record, collected):
        if index == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return collected, state

    stopped = Recorder()
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Interrupted, match="stopped by SIGUSR1") as info:
        run_segments(None, "state", segments, handler, stopped)
    assert stopped.saved == [3] and info.value.exit_code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == previous  # handlers restored


def test_tau_alpha_protocol_measures_a_decaying_fs(cpu_engine, small_config, equilibrated):
    params = tau_alpha_parameters(small_config, 1.5)
    start = equilibrated.samples.select(np.nonzero(equilibrated.sample == 0)[0])
    result = measure_tau_alpha(cpu_engine, start, params)
    fs = np.array(result["fs"])
    assert fs[0] > 0.95 and fs[-1] < np.exp(-1)
    assert np.all(np.diff(fs) < 0.02)  # decays (up to noise)
    assert 0.1 < result["tau_alpha_measured"] < 2.0


def test_quench_reaches_minima(cpu_engine, equilibrated):
    inherent, energy, steps, mean_force = quench(
        cpu_engine, equilibrated.samples.select([0, 1, 2]), None, batch_size=2
    )
    assert np.all(mean_force < 1e-12)
    assert np.all(energy < -6.0) and np.all(steps > 10)


def test_replicas_do_not_depend_on_chunking(cpu_engine, small_config, equilibrated):
    params = iso_parameters(small_config, 1.5, 0.5, "table")
    thermal = equilibrated.samples.select([0, 1, 2, 3]).with_velocities(None)
    together, _ = isoconfigurational(cpu_engine, thermal, np.arange(4), params)
    second, _ = isoconfigurational(cpu_engine, thermal.select([2, 3]), np.array([2, 3]), params)
    np.testing.assert_allclose(together[2:], second, rtol=0, atol=1e-10)
    # replicas of one configuration differ, and move
    assert not np.allclose(together[0, 0], together[0, 1])


def test_label_chunks_assemble_into_disjoint_splits(
    cpu_engine, small_config, equilibrated, tmp_path
):
    from tbotan.physics.configurations import write_gsd

    eq_path, is_path = tmp_path / "eq.gsd", tmp_path / "is.gsd"
    needed = cfgmod.configurations_needed(small_config, 1.5)
    samples = equilibrated.samples.select(np.arange(needed))
    logs = [
        {"tbotan/system": np.array([s]), "tbotan/sample": np.array([k])}
        for s, k in zip(equilibrated.system[:needed], equilibrated.sample[:needed], strict=True)
    ]
    write_gsd(eq_path, samples, logs=logs)
    inherent, energy, steps, _ = quench(cpu_engine, samples.with_velocities(None), None)
    write_gsd(
        is_path,
        inherent,
        logs=[{**lg, "tbotan/energy": np.array([e])} for lg, e in zip(logs, energy, strict=True)],
    )
    chunks = []
    for k in range(cfgmod.n_chunks(small_config, 1.5)):
        content = label_chunk(small_config, 1.5, k, eq_path, is_path, None, cpu_engine)
        path = tmp_path / f"chunk{k}.h5"
        write_dataset(path, content)
        chunks.append(path)
    splits = assemble_splits(small_config, 1.5, chunks)
    assert {s: c.n_configurations for s, c in splits.items()} == {
        "test": 2,
        "validation": 1,
        "train": 3,
    }
    ids = [tuple(c.attrs["configurations"]) for c in splits.values()]
    assert sorted(sum(ids, ())) == list(range(needed))
    train = splits["train"]
    assert train.attrs["tau_alpha"] == 0.5 and train.attrs["label_time"] == 0.5
    assert np.all((train.cb >= 0) & (train.cb <= 1))
    np.testing.assert_allclose(train.inherent_energy, energy[3:6])
    # the origins (system, sample) of the equilibrium file follow their configurations
    origin = np.stack([equilibrated.system[3:6], equilibrated.sample[3:6]], axis=1)
    np.testing.assert_array_equal(train.origin, origin)
    with pytest.raises(ValueError, match="missing or duplicated"):
        assemble_splits(small_config, 1.5, chunks[:1])
    write_dataset(tmp_path / "train.h5", train)
    assert DatasetFile(tmp_path / "train.h5").n_configurations == 3


def test_equilibrium_gsd_logs_name_system_and_sample(tmp_path):
    from tbotan.physics.configurations import random_configuration, write_gsd

    conf = random_configuration(300, seed=1).repeat(2)
    write_gsd(tmp_path / "x.gsd", conf, logs=[{"tbotan/system": np.array([b])} for b in (4, 5)])
    assert read_gsd_logs(tmp_path / "x.gsd", "tbotan/system").ravel().tolist() == [4, 5]
