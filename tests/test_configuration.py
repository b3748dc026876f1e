"""ConfigurationBatch, Maxwell–Boltzmann velocities and GSD files."""

from __future__ import annotations

import numpy as np
import pytest

from tbotan.physics import kalj
from tbotan.physics.configurations import (
    ConfigurationBatch,
    ConfigurationError,
    maxwell_boltzmann_velocities,
    random_configuration,
    read_gsd,
    read_gsd_logs,
    write_gsd,
)


def make_batch(n_sys=3, n=50, seed=0):
    rng = np.random.default_rng(seed)
    L = kalj.box_length(n)
    pos = rng.uniform(-2 * L, 3 * L, size=(n_sys, n, 3))  # deliberately unwrapped
    return ConfigurationBatch(
        positions=pos,
        types=np.tile(kalj.standard_types(n), (n_sys, 1)),
        box=np.full((n_sys, 3), L),
        velocities=rng.normal(size=(n_sys, n, 3)),
        timestep=np.arange(n_sys) * 100,
    ), pos


def test_positions_are_wrapped_and_unwrapping_is_exact():
    batch, raw = make_batch()
    assert np.all(batch.positions >= 0) and np.all(batch.positions < batch.box[:, None, :])
    np.testing.assert_allclose(batch.unwrapped_positions(), raw, rtol=0, atol=1e-12)


def test_gsd_round_trip_keeps_everything(tmp_path):
    batch, raw = make_batch()
    path = tmp_path / "frames.gsd"
    write_gsd(path, batch, logs=[{"tbotan/kT": np.array([0.5 + b])} for b in range(3)])
    back = read_gsd(path)
    np.testing.assert_array_equal(back.positions, batch.positions)
    np.testing.assert_array_equal(back.images, batch.images)
    np.testing.assert_array_equal(back.velocities, batch.velocities)
    np.testing.assert_array_equal(back.types, batch.types)
    np.testing.assert_array_equal(back.box, batch.box)
    np.testing.assert_array_equal(back.timestep, batch.timestep)
    np.testing.assert_allclose(back.unwrapped_positions(), raw, atol=1e-12)
    assert read_gsd_logs(path, "tbotan/kT").ravel().tolist() == [0.5, 1.5, 2.5]
    assert read_gsd(path, frames=[2]).timestep.tolist() == [200]
    assert not (tmp_path / "frames.gsd.tmp").exists()


def test_gsd_file_is_hoomd_compatible(tmp_path):
    gsd_hoomd = pytest.importorskip("gsd.hoomd")
    batch, _ = make_batch(n_sys=1)
    write_gsd(tmp_path / "a.gsd", batch)
    with gsd_hoomd.open(str(tmp_path / "a.gsd"), "r") as traj:
        frame = traj[0]
        half = batch.box[0] / 2
        # HOOMD boxes are centred at the origin
        assert np.all(frame.particles.position >= -half - 1e-12)
        assert np.all(frame.particles.position < half + 1e-12)
        assert list(frame.particles.types) == ["A", "B"]


def test_bad_shapes_and_values_are_rejected():
    n = 20
    good = dict(positions=np.zeros((1, n, 3)), types=np.zeros((1, n), np.int8), box=np.full(3, 5.0))
    with pytest.raises(ConfigurationError, match="positions must have shape"):
        ConfigurationBatch(**{**good, "positions": np.zeros((1, n, 2))})
    with pytest.raises(ConfigurationError, match="types must have shape"):
        ConfigurationBatch(**{**good, "types": np.zeros((1, n + 1), np.int8)})
    with pytest.raises(ConfigurationError, match="integers"):
        ConfigurationBatch(**{**good, "types": np.zeros((1, n), float)})
    with pytest.raises(ConfigurationError, match="box lengths must be positive"):
        ConfigurationBatch(**{**good, "box": np.array([5.0, 0.0, 5.0])})
    with pytest.raises(ConfigurationError, match="velocities must have shape"):
        ConfigurationBatch(**good, velocities=np.zeros((1, n - 1, 3)))
    bad = np.zeros((1, n, 3))
    bad[0, 7, 1] = np.nan
    with pytest.raises(ConfigurationError, match="system 0, particle 7"):
        ConfigurationBatch(**{**good, "positions": bad})


def test_missing_and_damaged_gsd_files_fail_clearly(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        read_gsd(tmp_path / "nope.gsd")
    junk = tmp_path / "junk.gsd"
    junk.write_bytes(b"this is not a gsd file" * 10)
    with pytest.raises(ConfigurationError, match="cannot read GSD file"):
        read_gsd(junk)
    batch, _ = make_batch()
    good = tmp_path / "good.gsd"
    write_gsd(good, batch)
    truncated = tmp_path / "truncated.gsd"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConfigurationError):
        read_gsd(truncated)
    with pytest.raises(ConfigurationError, match="frame 7 does not exist"):
        read_gsd(good, frames=[7])


def test_maxwell_boltzmann_velocities_are_reproducible_and_canonical():
    v1 = maxwell_boltzmann_velocities(4000, 0.6, seed=5, stream=3)
    v2 = maxwell_boltzmann_velocities(4000, 0.6, seed=5, stream=3)
    v3 = maxwell_boltzmann_velocities(4000, 0.6, seed=5, stream=4)
    np.testing.assert_array_equal(v1, v2)
    assert not np.allclose(v1, v3)
    np.testing.assert_allclose(v1.sum(axis=0), 0.0, atol=1e-10)
    temperature = (v1 * v1).sum() / (3 * 4000 - 3)
    # the kinetic temperature of 12k Gaussian dof scatters by sqrt(2/12000) ≈ 1.3 %
    assert temperature == pytest.approx(0.6, rel=0.05)
    with pytest.raises(ValueError, match="kT must be positive"):
        maxwell_boltzmann_velocities(10, 0.0, seed=1, stream=0)


def test_random_configuration_is_overlap_free_with_kalj_composition():
    conf = random_configuration(500, seed=2)
    assert (conf.types == 0).sum() == 400
    result = kalj.evaluate(conf.positions[0], conf.types[0], conf.box[0])
    assert result.min_distance_over_sigma > 0.8


def test_select_concatenate_and_repeat():
    batch, _ = make_batch(n_sys=3)
    rep = batch.repeat(2)
    assert rep.n_systems == 6
    np.testing.assert_array_equal(rep.positions[1], batch.positions[0])
    joined = ConfigurationBatch.concatenate([batch.select(2), batch.select([0, 1])])
    np.testing.assert_array_equal(joined.positions[0], batch.positions[2])
    other, _ = make_batch(n_sys=1, n=60)
    with pytest.raises(ConfigurationError, match="different N"):
        ConfigurationBatch.concatenate([batch, other])
