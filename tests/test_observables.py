"""Observables against the BOTAN reference values, brute force and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BOTAN_BOX, BOTAN_REFERENCE
from tbotan.physics import kalj, observables


def brute_force_cb(initial, final, types, box, bond_in=1.3, bond_out=1.6):
    """O(N² R) double loop over pairs, independent of freud."""
    n = len(types)
    cb = np.zeros(n)
    n_bonds = np.zeros(n, int)
    for j in range(n):
        d0 = kalj.minimum_image(initial - initial[j], box)
        r0 = np.sqrt((d0 * d0).sum(1))
        sig = kalj.SIGMA[types[j], types]
        bonded = (r0 < bond_in * sig) & (np.arange(n) != j)
        n_bonds[j] = bonded.sum()
        kept = []
        for replica in final:
            dt = kalj.minimum_image(replica[bonded] - replica[j], box)
            kept.append((np.sqrt((dt * dt).sum(1)) < bond_out * sig[bonded]).sum() / bonded.sum())
        cb[j] = np.mean(kept)
    return cb, n_bonds


@pytest.mark.parametrize("index", sorted(BOTAN_REFERENCE))
def test_cb_propensity_and_n0_reproduce_botan_reference(botan_npz, index):
    d, ref = botan_npz[index], BOTAN_REFERENCE[index]
    types = d["types"].astype(int)
    result = observables.bond_breaking(d["initial_positions"], d["positions"], types, BOTAN_BOX)
    prop = observables.propensity(d["initial_positions"], d["positions"])
    a = types == 0
    assert result.n_bonds[a].mean() == pytest.approx(ref["n0"], abs=1e-3)
    assert result.cb[a].mean() == pytest.approx(ref["cb_mean"], abs=1e-5)
    assert result.cb[a].var() == pytest.approx(ref["cb_var"], abs=1e-5)
    np.testing.assert_allclose(result.cb[:3], ref["cb_first"], atol=1e-5)
    assert prop[a].mean() == pytest.approx(ref["prop_mean"], abs=1e-5)
    # C_B and propensity are strongly anti-correlated (README: -0.89 to -0.95)
    assert -0.96 < np.corrcoef(result.cb[a], prop[a])[0, 1] < -0.88


def test_cb_equals_brute_force_on_a_small_system():
    rng = np.random.default_rng(3)
    n, box = 300, kalj.box_length(300)
    from conftest import dense_random_configuration

    conf = dense_random_configuration(n, seed=1)
    initial, types = conf.positions[0], conf.types[0].astype(int)
    final = (
        initial + rng.normal(0, 0.25, size=(5, n, 3)) + box * rng.integers(-1, 2, size=(5, n, 3))
    )
    fast = observables.bond_breaking(initial, final, types, box)
    cb, n_bonds = brute_force_cb(initial, final, types, box)
    np.testing.assert_array_equal(fast.n_bonds, n_bonds)
    np.testing.assert_allclose(fast.cb, cb, rtol=0, atol=1e-12)


def test_a_particle_that_keeps_all_its_neighbours_has_cb_one():
    from conftest import dense_random_configuration

    conf = dense_random_configuration(300, seed=2)
    initial, types, box = conf.positions[0], conf.types[0], conf.box[0]
    # a rigid translation by whole and partial box lengths keeps every distance
    final = np.stack([initial + 0.3, initial + box * np.array([1, -2, 0]) - 0.7])
    result = observables.bond_breaking(initial, final, types, box)
    np.testing.assert_array_equal(result.cb, 1.0)
    assert result.n_bonds.min() > 0


def test_edge_labels_equal_direct_computation():
    rng = np.random.default_rng(5)
    n, box = 250, 6.0
    initial = rng.uniform(0, box, size=(n, 3))
    final = initial + rng.normal(0, 0.3, size=(4, n, 3))
    edges = np.array([[0, 5, 17, 249], [1, 3, 200, 0]])
    labels = observables.edge_labels(initial, final, edges, box)
    for e, (j, k) in enumerate(edges.T):
        r0 = np.linalg.norm(kalj.minimum_image(initial[k] - initial[j], box))
        rt = [np.linalg.norm(kalj.minimum_image(f[k] - f[j], box)) for f in final]
        assert labels[e] == pytest.approx(np.mean(rt) - r0, abs=1e-12)


def test_propensity_is_mean_displacement_norm():
    initial = np.zeros((2, 3))
    final = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    np.testing.assert_allclose(observables.propensity(initial, final), [2.5, 1.5])


def test_fs_and_tau_alpha_on_a_gaussian_process_with_known_answer():
    # Brownian displacements: F_s(q, t) = exp(-q² D t) exactly (isotropic Gaussian, <Δx²> = 2Dt)
    rng = np.random.default_rng(0)
    q, diffusion = 7.25, 0.01
    times = observables.log_time_grid(10.0, 0.005, 10)
    disp = rng.normal(size=(times.size, 20000, 3)) * np.sqrt(2 * diffusion * times)[:, None, None]
    fs = observables.self_intermediate_scattering(disp, q)
    np.testing.assert_allclose(fs, np.exp(-q * q * diffusion * times), atol=0.01)
    tau = observables.tau_alpha_from_fs(times, fs)
    assert tau == pytest.approx(1.0 / (q * q * diffusion), rel=0.03)


def test_tau_alpha_interpolates_in_log_time_and_reports_short_runs():
    times = np.array([1.0, 10.0, 100.0])
    fs = np.array([0.9, 0.5, 0.1])
    tau = observables.tau_alpha_from_fs(times, fs)
    expected = np.exp(np.log(10) + (np.exp(-1) - 0.5) / (0.1 - 0.5) * np.log(10))
    assert tau == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="too short"):
        observables.tau_alpha_from_fs(times, np.array([0.99, 0.95, 0.9]))


def test_log_time_grid_is_increasing_multiples_of_dt():
    grid = observables.log_time_grid(100.0, 0.005, 8)
    steps = grid / 0.005
    np.testing.assert_allclose(steps, np.round(steps))
    assert np.all(np.diff(grid) > 0) and grid[0] == 0.005 and grid[-1] >= 100.0 - 1e-9
