"""The float64 NumPy reference evaluator against the real BOTAN data and independent checks."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BOTAN_BOX, BOTAN_REFERENCE, dense_random_configuration
from tbotan.physics import kalj


def brute_force_energy(positions, types, box):
    """O(N²) double loop-free evaluation over all pairs (independent of the KD-tree path)."""
    n = len(types)
    i, j = np.triu_indices(n, k=1)
    d = kalj.minimum_image(positions[i] - positions[j], box)
    r = np.sqrt((d * d).sum(1))
    return kalj.pair_energy(r, types[i], types[j]).sum()


def test_mixture_parameters_match_the_paper():
    assert kalj.EPSILON.tolist() == [[1.0, 1.5], [1.5, 0.5]]
    assert kalj.SIGMA.tolist() == [[1.0, 0.8], [0.8, 0.88]]
    assert kalj.R_CUT[0, 0] == 2.5 and kalj.R_CUT[0, 1] == 2.0 and kalj.R_CUT[1, 1] == 2.2
    assert kalj.box_length(4096) == pytest.approx(BOTAN_BOX, abs=1e-5)
    assert kalj.number_of_a(4096) == 3277


@pytest.mark.parametrize("index", sorted(BOTAN_REFERENCE))
def test_potential_energy_of_botan_files_matches_reference(botan_npz, index):
    d = botan_npz[index]
    result = kalj.evaluate(d["initial_positions"], d["types"], kalj.box_length(4096))
    assert result.total_potential_energy / 4096 == pytest.approx(
        BOTAN_REFERENCE[index]["u"], abs=1e-5
    )
    assert result.per_particle_energy.sum() == pytest.approx(
        result.total_potential_energy, rel=1e-13
    )
    # Newton's third law: the total force vanishes
    assert np.abs(result.forces.sum(axis=0)).max() < 1e-9


def test_pair_potential_and_force_vanish_continuously_at_the_cutoff():
    for ti in (0, 1):
        for tj in (0, 1):
            rc = kalj.R_CUT[ti, tj]
            below = rc * (1 - 1e-9)
            assert abs(kalj.pair_energy(below, ti, tj)) < 1e-12
            assert abs(kalj.pair_force_over_r(below, ti, tj)) < 1e-8
            assert kalj.pair_energy(rc * 1.001, ti, tj) == 0.0


def test_pair_force_is_minus_derivative_of_pair_energy():
    r = np.linspace(0.75, 2.45, 50)
    h = 1e-6
    for ti, tj in [(0, 0), (0, 1), (1, 1)]:
        r_in = r[r < kalj.R_CUT[ti, tj] - 2 * h]
        numeric = -(kalj.pair_energy(r_in + h, ti, tj) - kalj.pair_energy(r_in - h, ti, tj)) / (
            2 * h
        )
        analytic = kalj.pair_force_over_r(r_in, ti, tj) * r_in
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


def test_minimum_of_aa_potential_is_shifted_outwards_by_the_force_shift():
    # U'(r) = u'(r) − u'(r_c) vanishes where u'(r) = u'(r_c) > 0: just beyond 2^(1/6) σ, by
    # u'(r_c) / u''(2^(1/6)) to first order (u'' = 57.15 ε/σ² at the LJ minimum)
    r = np.linspace(1.1, 1.15, 500001)
    r_min = r[np.argmin(kalj.pair_energy(r, 0, 0))]
    du_cut = kalj.lj_derivative(2.5, 1.0, 1.0)
    expected = 2 ** (1 / 6) + du_cut / (72 / 2 ** (1 / 3))
    assert du_cut > 0
    assert r_min == pytest.approx(expected, abs=2e-5)


def test_kd_tree_evaluation_equals_brute_force_on_random_dense_configuration():
    conf = dense_random_configuration(300, seed=4)
    pos, types, box = conf.positions[0], conf.types[0].astype(int), conf.box[0]
    result = kalj.evaluate(pos, types, box)
    assert result.total_potential_energy == pytest.approx(
        brute_force_energy(pos, types, box), rel=1e-12
    )


def test_forces_are_minus_gradient_of_total_energy():
    conf = dense_random_configuration(200, seed=5)
    pos, types, box = conf.positions[0], conf.types[0], conf.box[0]
    forces = kalj.evaluate(pos, types, box).forces
    h = 1e-6
    for i in (0, 17, 123):
        for k in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[i, k] += h
            minus[i, k] -= h
            numeric = -(
                kalj.evaluate(plus, types, box).total_potential_energy
                - kalj.evaluate(minus, types, box).total_potential_energy
            ) / (2 * h)
            assert forces[i, k] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_virial_is_minus_derivative_under_uniform_scaling():
    conf = dense_random_configuration(200, seed=6)
    pos, types, box = conf.positions[0], conf.types[0], conf.box[0]
    virial = kalj.evaluate(pos, types, box).virial
    h = 1e-6
    e_plus = kalj.evaluate(pos * (1 + h), types, box * (1 + h)).total_potential_energy
    e_minus = kalj.evaluate(pos * (1 - h), types, box * (1 - h)).total_potential_energy
    assert virial == pytest.approx(-(e_plus - e_minus) / (2 * h), rel=1e-6)


def test_unwrapped_and_wrapped_positions_give_the_same_result(botan_npz):
    d = botan_npz[1]
    L = kalj.box_length(4096)
    shifted = d["initial_positions"] + L * np.random.default_rng(0).integers(-3, 4, size=(4096, 3))
    a = kalj.evaluate(d["initial_positions"], d["types"], L)
    b = kalj.evaluate(shifted, d["types"], L)
    assert a.total_potential_energy == pytest.approx(b.total_potential_energy, rel=1e-12)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-9)


@pytest.mark.parametrize(
    "positions, types, box, message",
    [
        (np.zeros((10, 2)), np.zeros(10, int), 10.0, "shape \\(N, 3\\)"),
        (np.zeros((10, 3)), np.zeros(9, int), 10.0, "types must have shape"),
        (np.zeros((10, 3)), np.full(10, 2), 10.0, "0 \\(A\\) or 1 \\(B\\)"),
        (np.zeros((10, 3)), np.zeros(10, int), -1.0, "positive"),
        (np.full((10, 3), np.nan), np.zeros(10, int), 10.0, "NaN"),
        (np.zeros((10, 3)), np.zeros(10, int), 4.0, "too small"),
    ],
)
def test_bad_input_is_rejected_clearly(positions, types, box, message):
    with pytest.raises(ValueError, match=message):
        kalj.evaluate(positions, types, box)
