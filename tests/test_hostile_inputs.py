"""Bad input never yields a plausible file: every expected failure of a ``tbotan`` command exits
with status 2 and one line naming the problem and the file, prints no traceback, runs no MD, and
leaves no output (nor ``.tmp``) behind.

Most commands run in-process (``tbotan.cli.main``) on tiny systems (N = 256) with the MD
protocols replaced by guards that fail the test if they are reached; a few run as subprocesses
to check the whole process (no traceback on stderr, exit status 2).
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tbotan import cli
from tbotan.formats.dataset import DatasetContent, Graph, write_dataset
from tbotan.physics import kalj
from tbotan.physics.configurations import (
    ConfigurationBatch,
    maxwell_boltzmann_velocities,
    random_configuration,
    read_gsd_logs,
    write_gsd,
)
from tbotan.physics.neighbors import graph_edges

N = 256
L = kalj.box_length(N)
T = "1.20"

CONFIG = """
system: {n_particles: 256}
temperatures:
  - {T: 1.2, tau_alpha: 0.78, train: true}
engine: {name: torch, device: cpu}
equilibration: {n_systems: 2}
iso: {n_replicas: 2, configurations_per_chunk: 3}
dataset: {n_train: 1, n_validation: 1, n_test: 1}
training: {corr_distances: [1, 2], epochs: 2, warmup_epochs: 1, device: cpu}
"""


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


class MDRan(AssertionError):
    pass


@pytest.fixture
def no_md(monkeypatch):
    """Every MD protocol and minimiser fails the test if it is reached."""

    def guard(*args, **kwargs):
        raise MDRan("MD ran although the input was bad")

    import tbotan.labels.chunks
    import tbotan.md.protocols as protocols
    from tbotan.md.torch_engine import TorchEngine

    for name in ("equilibrate", "measure_tau_alpha", "quench", "isoconfigurational"):
        monkeypatch.setattr(protocols, name, guard)
    monkeypatch.setattr(tbotan.labels.chunks, "isoconfigurational", guard)
    monkeypatch.setattr(TorchEngine, "minimize", guard)
    monkeypatch.setattr(TorchEngine, "simulation", guard)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, err, *words, outputs=()):
    """Exit 2, one error line holding every word (regex-free), no traceback, no outputs."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    for word in words:
        assert str(word) in lines[0], f"{word!r} not in {lines[0]!r}"
    for path in outputs:
        path = Path(path)
        assert not path.exists(), f"{path} was left behind"
        assert not path.with_name(path.name + ".tmp").exists(), f"{path}.tmp was left behind"
    return lines[0]


def batch(n_frames: int, seed: int = 0, velocities: bool = True) -> ConfigurationBatch:
    confs = []
    for f in range(n_frames):
        conf = random_configuration(N, seed=seed + f)
        if velocities:
            v = maxwell_boltzmann_velocities(N, 1.2, seed=seed, stream=f)
            conf = conf.with_velocities(v[None])
        confs.append(conf)
    return ConfigurationBatch.concatenate(confs)


def write_equilibrium(path: Path, n_frames: int = 3, seed: int = 0) -> ConfigurationBatch:
    b = batch(n_frames, seed)
    logs = [
        {"tbotan/system": np.array([i]), "tbotan/sample": np.array([0])} for i in range(n_frames)
    ]
    write_gsd(path, b, logs=logs)
    return b


def write_inherent(path: Path, thermal: ConfigurationBatch) -> None:
    logs = [
        {
            "tbotan/system": np.array([i]),
            "tbotan/sample": np.array([0]),
            "tbotan/energy": np.array([-6.5]),
        }
        for i in range(thermal.n_systems)
    ]
    write_gsd(path, thermal.with_velocities(None), logs=logs)


def raw_frames(path: Path, n_frames: int = 3, mode: str = "w", **change) -> None:
    """Frames in HOOMD-blue's schema only (no tbotan logs), as another tool writes them."""
    import gsd.hoomd

    b = batch(n_frames)
    with gsd.hoomd.open(str(path), mode) as traj:
        for i in range(n_frames):
            frame = gsd.hoomd.Frame()
            frame.configuration.box = change.get("box", [L, L, L, 0, 0, 0])
            frame.particles.N = N
            frame.particles.types = change.get("types", ["A", "B"])
            typeid = b.types[i].astype(np.uint32)
            if "typeid" in change and i == n_frames - 1:
                typeid = typeid.copy()
                typeid[7] = change["typeid"]
            frame.particles.typeid = typeid
            pos = (b.positions[i] - L / 2).astype(np.float32)
            if change.get("nan") and i == n_frames - 1:
                pos[5, 1] = np.nan
            frame.particles.position = pos
            frame.particles.velocity = b.velocities[i].astype(np.float32)
            traj.append(frame)


def damage_gsd(path: Path, kind: str) -> None:
    """Write a damaged configuration file of 3 frames (kind: see GSD_DAMAGE)."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        write_equilibrium(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "non-cubic":
        b = batch(3)
        b = ConfigurationBatch(b.positions, b.types, np.array([L, L, 1.25 * L]), b.images)
        logs = [{"tbotan/system": np.array([i]), "tbotan/sample": np.array([0])} for i in range(3)]
        write_gsd(path, b, logs=logs)
    elif kind == "mixed":  # two tbotan frames, then one appended by another tool
        write_equilibrium(path, n_frames=2)
        raw_frames(path, n_frames=1, mode="a")
    elif kind == "typeid":
        raw_frames(path, typeid=5)
    elif kind == "type-names":
        raw_frames(path, types=["Ar", "Kr"])
    elif kind == "non-finite":
        raw_frames(path, nan=True)
    else:
        raise ValueError(kind)


#: damage → words the error line must hold
GSD_DAMAGE = {
    "empty": ["empty (0 bytes)"],
    "truncated": ["truncated"],
    "non-cubic": ["not cubic"],
    "mixed": ["frame 2", "another tool"],
    "typeid": ["typeid 5"],
    "type-names": ["not the KALJ types"],
    "non-finite": ["frame 2", "non-finite position"],
}


# ---------------------------------------------------------------------------- GSD inputs


@pytest.mark.parametrize("damage", list(GSD_DAMAGE))
@pytest.mark.parametrize("command", ["quench", "tau-alpha", "iso-equilibrium", "iso-inherent"])
def test_damaged_gsd_inputs_are_refused_before_md(
    tmp_path, capsys, config_file, no_md, command, damage
):
    bad, good = tmp_path / "bad.gsd", tmp_path / "good.gsd"
    damage_gsd(bad, damage)
    out = tmp_path / "out" / "result"
    if command == "quench":
        argv = ["quench", "--config", config_file, "--temperature", T, "--equilibrium", bad]
        argv += ["--output", out]
    elif command == "tau-alpha":
        argv = ["tau-alpha", "--config", config_file, "--temperature", T, "--equilibrium", bad]
        argv += ["--output", out]
    else:
        thermal = write_equilibrium(good)
        inherent = tmp_path / "inherent.gsd"
        write_inherent(inherent, thermal)
        eq, ih = (bad, inherent) if command == "iso-equilibrium" else (good, bad)
        argv = ["iso", "--config", config_file, "--temperature", T, "--chunk", 0]
        argv += ["--equilibrium", eq, "--inherent", ih, "--output", out]
    code, _, err = run_cli(capsys, *argv)
    assert_refused(code, err, bad, *GSD_DAMAGE[damage], outputs=[out])


@pytest.mark.parametrize("damage", list(GSD_DAMAGE))
def test_predict_refuses_damaged_gsd_before_loading_the_model(tmp_path, capsys, no_md, damage):
    bad = tmp_path / "bad.gsd"
    damage_gsd(bad, damage)
    out = tmp_path / "pred.h5"
    # the input is checked first: the (missing) model file is never reached
    argv = ["predict", "--model", tmp_path / "model.pt", "--gsd", bad, "--frame", 2]
    code, _, err = run_cli(capsys, *argv, "--output", out)
    words = [w for w in GSD_DAMAGE[damage] if w != "frame 2"]
    assert_refused(code, err, bad, *words, outputs=[out])


def test_foreign_gsd_falls_back_explicitly_or_is_refused_before_md(
    tmp_path, capsys, config_file, no_md, monkeypatch
):
    foreign = tmp_path / "hoomd.gsd"
    raw_frames(foreign)  # HOOMD-blue schema only: no tbotan/system, sample, energy logs
    # iso: the inherent file lacks e_IS/N → refused before the replicas run
    eq = tmp_path / "eq.gsd"
    write_equilibrium(eq)
    out = tmp_path / "chunk.h5"
    argv = ["iso", "--config", config_file, "--temperature", T, "--chunk", 0]
    code, _, err = run_cli(
        capsys, *argv, "--equilibrium", eq, "--inherent", foreign, "--output", out
    )
    assert_refused(code, err, foreign, "log/tbotan/energy", "tbotan quench", outputs=[out])

    # quench: provenance falls back to frame = system, sample 0, with a note (MD stubbed)
    import tbotan.md.protocols as protocols

    def fake_quench(engine, thermal, fire, batch_size, progress=None):
        c = thermal.n_systems
        return thermal, np.full(c, -6.5), np.full(c, 10), np.full(c, 1e-6)

    monkeypatch.setattr(protocols, "quench", fake_quench)
    inherent = tmp_path / "inherent.gsd"
    argv = ["quench", "--config", config_file, "--temperature", T, "--equilibrium", foreign]
    code, out_text, err = run_cli(capsys, *argv, "--output", inherent)
    assert code == 0, err
    assert "carries no log/tbotan/system" in out_text
    assert read_gsd_logs(inherent, "tbotan/system").ravel().tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------- npz inputs


def botan_arrays(seed: int = 0, replicas: int = 2) -> dict:
    conf = random_configuration(N, seed=seed)
    rng = np.random.default_rng(seed)
    initial = conf.positions[0]
    final = initial[None] + rng.normal(0, 0.3, (replicas, N, 3))  # unwrapped
    return {
        "types": conf.types[0].astype(np.int64),
        "initial_positions": initial,
        "positions": final,
    }


def _wrapped(a):
    initial = a["initial_positions"].copy()
    initial[:40, 0] = L - 0.3  # particles near a face ...
    final = np.repeat(initial[None], a["positions"].shape[0], axis=0)
    final[:, :40, 0] = np.mod(initial[:40, 0] + 0.6, L)  # ... cross it and are wrapped
    return {**a, "initial_positions": initial, "positions": final}


NPZ_DAMAGE = {
    "missing-key": (
        lambda a: {k: v for k, v in a.items() if k != "positions"},
        ["missing arrays", "positions"],
    ),
    "types-str": (lambda a: {**a, "types": a["types"].astype(str)}, ["types has dtype"]),
    "types-range": (lambda a: {**a, "types": a["types"] + 2}, ["types must be 0 (A) or 1 (B)"]),
    "complex": (
        lambda a: {**a, "positions": a["positions"].astype(complex)},
        ["positions has dtype complex"],
    ),
    "non-finite": (
        lambda a: {
            **a,
            "initial_positions": np.where(np.eye(N, 3) > 0, np.inf, a["initial_positions"]),
        },
        ["initial_positions contains NaN or infinite"],
    ),
    "shape": (lambda a: {**a, "positions": a["positions"][:, :-1]}, ["do not fit"]),
    "wrapped": (_wrapped, ["look wrapped into the box", "unwrapped"]),
}


@pytest.mark.parametrize("damage", list(NPZ_DAMAGE))
def test_import_botan_refuses_bad_npz(tmp_path, capsys, config_file, no_md, damage):
    change, words = NPZ_DAMAGE[damage]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **change(botan_arrays()))
    good = tmp_path / "good.npz"
    np.savez(good, **botan_arrays(seed=1))
    out = tmp_path / "imported.h5"
    argv = ["import-botan", good, bad, "--box", L, "--temperature", 1.2, "--tau-alpha", 0.78]
    code, _, err = run_cli(capsys, *argv, "--output", out, "--config", config_file)
    assert_refused(code, err, bad, *words, outputs=[out])


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--tau-alpha", "-1"),
        ("--tau-alpha", "nan"),
        ("--temperature", "-0.5"),
        ("--temperature", "inf"),
        ("--label-time", "0"),
        ("--box", "nan"),
    ],
)
def test_import_botan_refuses_bad_numbers(tmp_path, capsys, config_file, no_md, flag, value):
    good = tmp_path / "good.npz"
    np.savez(good, **botan_arrays())
    out = tmp_path / "imported.h5"
    args = {"--box": str(L), "--temperature": "1.2", "--tau-alpha": "0.78", flag: value}
    argv = ["import-botan", good, *[x for kv in args.items() for x in kv]]
    code, _, err = run_cli(capsys, *argv, "--output", out, "--config", config_file)
    assert_refused(code, err, flag, "positive", outputs=[out])


def test_import_botan_refuses_a_damaged_npz(tmp_path, capsys, config_file, no_md):
    bad = tmp_path / "cut.npz"
    np.savez(bad, **botan_arrays())
    bad.write_bytes(bad.read_bytes()[:1000])
    out = tmp_path / "imported.h5"
    argv = ["import-botan", bad, "--box", L, "--temperature", 1.2, "--tau-alpha", 0.78]
    code, _, err = run_cli(capsys, *argv, "--output", out, "--config", config_file)
    assert_refused(code, err, bad, "cannot read", outputs=[out])


PREDICT_NPZ = {
    "no-box": ({}, None, ["stores no box", "--box"]),
    "non-cubic": ({"box": np.array([L, L, 2 * L])}, None, ["not cubic"]),
    "negative-box": ({"box": np.array(-L)}, None, ["positive edge"]),
    "box-conflict": ({"box": np.array(L)}, 2 * L, ["--box"]),
    "types-float": ({"types": np.full(N, 0.5)}, L, ["types must be the integers"]),
    "non-finite": (
        {"initial_positions": np.full((N, 3), np.nan)},
        L,
        ["initial_positions contains"],
    ),
    "inherent-shape": (
        {"inherent_positions": np.zeros((N - 1, 3))},
        L,
        ["inherent_positions has shape"],
    ),
}


@pytest.mark.parametrize("damage", list(PREDICT_NPZ))
def test_predict_refuses_bad_npz_before_loading_the_model(tmp_path, capsys, no_md, damage):
    change, box, words = PREDICT_NPZ[damage]
    arrays = botan_arrays()
    arrays.pop("positions")
    bad = tmp_path / "conf.npz"
    np.savez(bad, **{**arrays, **change})
    out = tmp_path / "pred.h5"
    argv = ["predict", "--model", tmp_path / "model.pt", "--npz", bad, "--output", out]
    code, _, err = run_cli(capsys, *argv, *(["--box", box] if box is not None else []))
    assert_refused(code, err, bad, *words, outputs=[out])


# ---------------------------------------------------------------------------- HDF5 datasets


def chunk_content(n_conf: int = 3, seed: int = 0) -> DatasetContent:
    from tbotan.checks.benchmark import synthetic_attrs

    b = batch(n_conf, seed, velocities=False)
    graphs = [graph_edges(p, L, 2.0) for p in b.positions]
    rng = np.random.default_rng(seed)
    attrs = synthetic_attrs(
        L, temperature=1.2, tau_alpha=0.78, label_time=0.78, n_replicas=2, split="chunk"
    )
    attrs.update(chunk=0, configurations=list(range(n_conf)))
    return DatasetContent(
        attrs=attrs,
        types=b.types,
        thermal_positions=b.positions,
        inherent_positions=b.positions,
        inherent_energy=np.full(n_conf, -6.5),
        cb=rng.uniform(0, 1, (n_conf, N)),
        propensity=rng.uniform(0, 1, (n_conf, N)),
        n_bonds=np.full((n_conf, N), 12),
        graph=Graph.concatenate([(g, rng.normal(size=g.shape[1])) for g in graphs]),
        graph_ts=Graph.concatenate([(g, rng.normal(size=g.shape[1])) for g in graphs]),
        origin=np.stack([np.arange(n_conf), np.zeros(n_conf, int)], axis=1),
    )


def _set(key, index, value):
    def damage(f):
        data = f[key][...]
        data[index] = value
        f[key][...] = data

    return damage


def _offsets_end(f):
    data = f["graph/edge_offsets"][...]
    data[-1] -= 1
    f["graph/edge_offsets"][...] = data


def _offsets_decrease(f):
    data = f["graph_ts/edge_offsets"][...]
    data[1] = data[2] + 5
    f["graph_ts/edge_offsets"][...] = data


H5_DAMAGE = {
    "offsets-start": (_set("graph/edge_offsets", 0, 3), ["'graph/edge_offsets'", "not 0"]),
    "offsets-decrease": (_offsets_decrease, ["'graph_ts/edge_offsets'", "decreases"]),
    "offsets-end": (_offsets_end, ["'graph/edge_offsets' ends at"]),
    "index-range": (_set("graph/edge_index", (0, 17), N), ["'graph/edge_index'", "outside [0, N"]),
    "types": (_set("types", (1, 3), 2), ["'types'", "only 0 (A) and 1 (B)"]),
    "positions": (_set("thermal/positions", (2, 4, 1), np.nan), ["'thermal/positions'", "NaN"]),
    "edge-labels": (_set("labels/edge_ts", 11, np.inf), ["'labels/edge_ts'", "NaN or infinite"]),
}


def damaged_h5(path: Path, damage) -> Path:
    write_dataset(path, chunk_content())
    with h5py.File(path, "r+") as f:
        damage(f)
    return path


@pytest.mark.parametrize("damage", list(H5_DAMAGE))
def test_dataset_refuses_damaged_chunks(tmp_path, capsys, config_file, damage):
    change, words = H5_DAMAGE[damage]
    bad = damaged_h5(tmp_path / "chunk000.h5", change)
    out_dir = tmp_path / "datasets"
    argv = ["dataset", "--config", config_file, "--temperature", T, "--chunks", bad]
    code, _, err = run_cli(capsys, *argv, "--output-dir", out_dir)
    outputs = [out_dir / f"T{T}_{s}.h5" for s in ("train", "validation", "test")]
    assert_refused(code, err, bad, *words, outputs=outputs)


@pytest.mark.parametrize("damage", ["offsets-end", "index-range"])
def test_train_and_predict_refuse_damaged_datasets(tmp_path, capsys, config_file, damage):
    change, words = H5_DAMAGE[damage]
    bad = damaged_h5(tmp_path / "T1.20_train.h5", change)
    out = tmp_path / "models" / "m"
    argv = ["train", "--train", bad, "--output", out, "--config", config_file, "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert_refused(code, err, bad, *words, outputs=[out / "model.pt", out / "checkpoint.pt"])
    pred = tmp_path / "pred.h5"
    argv = ["predict", "--model", tmp_path / "model.pt", "--dataset", bad, "--output", pred]
    code, _, err = run_cli(capsys, *argv)
    assert_refused(code, err, bad, *words, outputs=[pred])


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "overlay, key",
    [
        ("temperatures:\n  - {T: .nan, tau_alpha: 0.78, train: true}\n", "temperatures[0].T = nan"),
        (
            "temperatures:\n  - {T: 1.2, tau_alpha: .inf, train: true}\n",
            "temperatures[0].tau_alpha",
        ),
        ("md: {dt: .inf}\n", "md.dt = inf"),
        ("md: {thermostat_tau: .nan}\n", "md.thermostat_tau = nan"),
        ("quench: {force_tolerance: -.inf}\n", "quench.force_tolerance = -inf"),
    ],
)
def test_non_finite_numbers_in_the_configuration_are_refused(
    tmp_path, capsys, config_file, no_md, overlay, key
):
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay)
    eq = tmp_path / "eq.gsd"
    write_equilibrium(eq)
    out = tmp_path / "inherent.gsd"
    argv = ["quench", "--config", config_file, bad, "--temperature", T, "--equilibrium", eq]
    code, _, err = run_cli(capsys, *argv, "--output", out)
    assert_refused(code, err, key, "finite", outputs=[out])


def test_a_system_too_large_for_memory_is_refused_at_once(tmp_path, capsys, config_file, no_md):
    import time

    huge = tmp_path / "huge.yaml"
    huge.write_text("system: {n_particles: 2000000000}\n")
    out = tmp_path / "eq.gsd"
    start = time.perf_counter()
    argv = ["equilibrate", "--config", config_file, huge, "--temperature", T, "--output", out]
    code, _, err = run_cli(capsys, *argv)
    assert time.perf_counter() - start < 20
    assert_refused(code, err, "needs at least", "GiB", "system.n_particles", outputs=[out])


# ---------------------------------------------------------------------------- error paths


def test_read_only_output_folder_is_refused_before_md(
    tmp_path, capsys, config_file, no_md, monkeypatch
):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the probe fail as the kernel would
        import tbotan.formats.io_utils

        def refuse(probe):
            raise PermissionError(errno.EACCES, "Permission denied", str(probe))

        monkeypatch.setattr(tbotan.formats.io_utils, "_probe_write", refuse)
    out = folder / "eq.gsd"
    try:
        argv = ["equilibrate", "--config", config_file, "--temperature", T, "--output", out]
        code, _, err = run_cli(capsys, *argv)
    finally:
        folder.chmod(0o755)
    assert_refused(code, err, out, "Permission denied", "writable", outputs=[out])
    assert list(folder.iterdir()) == []


def test_output_under_a_file_is_refused(tmp_path, capsys, config_file, no_md):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "eq.gsd"
    argv = ["equilibrate", "--config", config_file, "--temperature", T, "--output", out]
    code, _, err = run_cli(capsys, *argv)
    assert_refused(code, err, out, "cannot write")


def test_disk_full_while_writing_removes_the_temporary_file(
    tmp_path, capsys, config_file, monkeypatch
):
    import gsd.hoomd

    import tbotan.md.protocols as protocols

    eq = tmp_path / "eq.gsd"
    write_equilibrium(eq)

    def fake_quench(engine, thermal, fire, batch_size, progress=None):
        c = thermal.n_systems
        return thermal, np.full(c, -6.5), np.full(c, 10), np.full(c, 1e-6)

    original = gsd.hoomd.HOOMDTrajectory.append
    calls = []

    def append(self, frame):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, frame)

    monkeypatch.setattr(protocols, "quench", fake_quench)
    monkeypatch.setattr(gsd.hoomd.HOOMDTrajectory, "append", append)
    out = tmp_path / "inherent.gsd"
    argv = ["quench", "--config", config_file, "--temperature", T, "--equilibrium", eq]
    code, _, err = run_cli(capsys, *argv, "--output", out)
    assert_refused(code, err, out, "No space left", "free disk space", outputs=[out])


def _checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _garbage_checkpoint(out: Path) -> Path:
    ckpt = _checkpoint_dir(out)
    (ckpt / "ckpt_0000001").mkdir(parents=True)
    (ckpt / "ckpt_0000001" / "record.json").write_text('{"fingerprint": "ab", "ind')
    (ckpt / "latest").write_text("ckpt_0000001")
    return ckpt


@pytest.mark.parametrize("command", ["equilibrate", "tau-alpha"])
def test_garbage_checkpoint_record_is_one_line(tmp_path, capsys, config_file, no_md, command):
    out = tmp_path / "out" / ("eq.gsd" if command == "equilibrate" else "tau.json")
    out.parent.mkdir()
    ckpt = _garbage_checkpoint(out)
    argv = [command, "--config", config_file, "--temperature", T, "--output", out]
    if command == "tau-alpha":
        eq = tmp_path / "eq.gsd"
        write_equilibrium(eq)
        argv += ["--equilibrium", eq]
    code, _, err = run_cli(capsys, *argv)
    assert_refused(
        code,
        err,
        ckpt / "ckpt_0000001" / "record.json",
        "damaged",
        "--restart-if-incompatible",
        outputs=[out],
    )
    # with the flag the checkpoint is moved aside and the run starts afresh (MD guard hit)
    with pytest.raises(MDRan):
        cli.main([str(a) for a in argv] + ["--restart-if-incompatible"])
    assert (ckpt.with_name(ckpt.name + ".stale") / "ckpt_0000001").is_dir()
    assert not ckpt.exists()


def test_checkpoint_of_a_changed_configuration_is_one_line(tmp_path, capsys, config_file):
    from tbotan.md.checkpoint import Checkpointer

    out = tmp_path / "eq.gsd"
    ckpt = _checkpoint_dir(out)
    Checkpointer(ckpt, "fingerprint-of-the-old-configuration").save(1, batch(2), {})
    argv = ["equilibrate", "--config", config_file, "--temperature", T, "--output", out]
    code, _, err = run_cli(capsys, *argv)
    assert_refused(
        code, err, ckpt, "different parameters", "--restart-if-incompatible", outputs=[out]
    )
    assert (ckpt / "latest").is_file()  # kept: the user decides


# ---------------------------------------------------------------------------- whole processes


def tbotan(*argv, fsize: int | None = None, cwd=None) -> subprocess.CompletedProcess:
    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "tbotan", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        cwd=cwd,
    )


def test_processes_exit_2_without_traceback(tmp_path, config_file):
    truncated = tmp_path / "eq.gsd"
    damage_gsd(truncated, "truncated")
    out = tmp_path / "inherent.gsd"
    argv = ["quench", "--config", config_file, "--temperature", T, "--equilibrium", truncated]
    result = tbotan(*argv, "--output", out)
    assert_refused(result.returncode, result.stderr, truncated, "truncated", outputs=[out])

    bad = tmp_path / "bad.yaml"
    bad.write_text("md: {dt: .nan}\n")
    argv = ["equilibrate", "--config", config_file, bad, "--temperature", T, "--output", out]
    result = tbotan(*argv)
    assert_refused(result.returncode, result.stderr, "md.dt = nan", outputs=[out])


def test_disk_full_process_leaves_nothing(tmp_path, config_file):
    chunk = tmp_path / "chunk000.h5"
    write_dataset(chunk, chunk_content())
    out_dir = tmp_path / "datasets"
    argv = ["dataset", "--config", config_file, "--temperature", T, "--chunks", chunk]
    result = tbotan(*argv, "--output-dir", out_dir, fsize=16_384)
    outputs = [out_dir / f"T{T}_{s}.h5" for s in ("train", "validation", "test")]
    assert_refused(result.returncode, result.stderr, "cannot write", "disk space", outputs=outputs)
    assert list(out_dir.iterdir()) == []
    # the same command with room to write succeeds
    result = tbotan(*argv, "--output-dir", out_dir)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in outputs)


def test_garbage_training_checkpoint_is_one_line(tmp_path, capsys, config_file):
    from learning_helpers import write_synthetic

    train = write_synthetic(tmp_path / "T0.80_train.h5", n=250, seeds=(0,))
    out = tmp_path / "model"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    argv = ["train", "--train", train, "--output", out, "--config", config_file, "--resume"]
    code, _, err = run_cli(capsys, *argv, "--no-progress", "--epochs", 1)
    assert_refused(code, err, out / "checkpoint.pt", "cannot read", outputs=[out / "model.pt"])


def test_garbage_tau_alpha_json_is_refused_before_the_replicas(
    tmp_path, capsys, config_file, no_md
):
    measured = tmp_path / "measured.yaml"
    measured.write_text("tau_alpha: {source: measured}\n")
    eq, inherent = tmp_path / "eq.gsd", tmp_path / "inherent.gsd"
    write_inherent(inherent, write_equilibrium(eq))
    tau = tmp_path / "tau.json"
    tau.write_text('{"tau_alpha_measured": NaN}')
    out = tmp_path / "chunk.h5"
    argv = ["iso", "--config", config_file, measured, "--temperature", T, "--chunk", 0]
    argv += ["--equilibrium", eq, "--inherent", inherent, "--tau-alpha-json", tau]
    code, _, err = run_cli(capsys, *argv, "--output", out)
    assert_refused(code, err, tau, "not a positive number", outputs=[out])
    tau.write_text('{"tau_alpha_meas')
    code, _, err = run_cli(capsys, *argv, "--output", out)
    assert_refused(code, err, tau, "not valid JSON", outputs=[out])


# ---------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    """A trained (one epoch) model file and the synthetic dataset it was trained on."""
    import torch

    from learning_helpers import small_config, write_synthetic
    from tbotan.learning.training import train

    folder = tmp_path_factory.mktemp("model")
    data = write_synthetic(folder / "T0.80_train.h5", seeds=(0,), temperature=0.8)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(small_config(epochs=1, warmup_epochs=0), [data], [], folder / "m", progress=False)
    finally:
        torch.set_num_threads(previous)
    return folder / "m" / "model.pt", data


@pytest.mark.parametrize(
    "tamper, words",
    [
        (lambda m: m["hparams"].update(hidden=8), ["do not fit its hyper-parameters"]),
        (lambda m: m.update(variant="ts"), ["variant 'ts' takes 3 edge features", "built for 4"]),
        (lambda m: m.update(variant="is+ts+x"), ["unknown input variant"]),
        (lambda m: m.pop("state_dict"), ["not a complete model file"]),
        (lambda m: m["hparams"].update(colour="blue"), ["do not fit its hyper-parameters"]),
    ],
    ids=["hidden", "variant-features", "variant-unknown", "no-weights", "unknown-hparam"],
)
def test_predict_refuses_a_model_whose_parts_disagree(
    small_model_file, tmp_path, capsys, tamper, words
):
    import torch

    model, data = small_model_file
    meta = torch.load(model, weights_only=True)
    tamper(meta)
    bad = tmp_path / "bad.pt"
    torch.save(meta, bad)
    out = tmp_path / "p.h5"
    code, _, err = run_cli(capsys, "predict", "--model", bad, "--dataset", data, "--output", out)
    assert_refused(code, err, bad, *words, outputs=[out])


def test_predict_refuses_a_dataset_with_another_graph_cutoff(small_model_file, tmp_path, capsys):
    from learning_helpers import synthetic_content

    model, _ = small_model_file
    content = synthetic_content(250, (3,), 0.8)
    content.attrs["graph_cutoff"] = 2.5
    data = tmp_path / "cut25.h5"
    write_dataset(data, content)
    out = tmp_path / "p.h5"
    code, _, err = run_cli(capsys, "predict", "--model", model, "--dataset", data, "--output", out)
    assert_refused(code, err, data, "cut-off 2.5", "cut-off 2", outputs=[out])


@pytest.mark.parametrize("source", ["gsd", "npz"])
def test_predict_names_the_closest_pair_of_overlapping_particles_before_fire(
    tmp_path, capsys, no_md, source
):
    """Two particles 0.05 σ_AA apart across a face of the box, in a thermal structure to be
    quenched: the error names both indices and the distance before the model is loaded or any
    FIRE runs (the engines would fail in their own words, LAMMPS with "Lost atoms")."""
    good = random_configuration(N, seed=3)
    positions = good.positions[0].copy()
    positions[42] = [0.02, 1.0, 2.0]
    positions[17] = [L - 0.03, 1.0, 2.0]  # minimum image: 0.05 from particle 42
    if source == "gsd":
        path = tmp_path / "thermal.gsd"
        write_gsd(path, ConfigurationBatch(positions=positions, types=good.types[0], box=L))
        inputs = ["--gsd", path]
    else:
        path = tmp_path / "thermal.npz"
        np.savez(path, types=good.types[0].astype(np.int64), initial_positions=positions)
        inputs = ["--npz", path, "--box", L]
    out = tmp_path / "pred.h5"
    argv = ["predict", "--model", tmp_path / "model.pt", *inputs, "--output", out]
    code, _, err = run_cli(capsys, *argv)
    line = assert_refused(code, err, path, "overlap", "particles 17 and 42", outputs=[out])
    assert "0.05 σ_AA apart" in line
    assert "Lost atoms" not in line and "model.pt" not in line
