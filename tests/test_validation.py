"""`tbotan validate`'s comparison of our replicas with the authors' BOTAN replicas."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BOTAN_REFERENCE, botan_file
from tbotan.checks import validation
from tbotan.physics import kalj


def _load(directory, index):
    with np.load(botan_file(directory, index)) as data:
        return data["types"], data["initial_positions"], data["positions"]


def test_replica_statistics_against_plain_numpy_and_readme(botan_dir):
    types, initial, final = _load(botan_dir, 2)
    L = kalj.box_length(len(types))
    stats = validation.replica_statistics(initial, final, types, L)
    a = types == 0
    disp = np.sqrt(((final - initial) ** 2).sum(-1))[:, a]  # (32, N_A)
    fs = np.mean(np.sin(7.25 * disp) / (7.25 * disp), axis=1)
    np.testing.assert_allclose(stats["fs"], fs, rtol=1e-12)
    np.testing.assert_allclose(stats["msd"], (disp**2).mean(axis=1), rtol=1e-12)
    # C_B of the configuration is the replica mean of each replica's C_B
    assert np.mean(stats["cb_mean"]) == pytest.approx(BOTAN_REFERENCE[2]["cb_mean"], abs=1e-5)
    # leave-one-out Pearson of replica 5, by hand
    others = np.delete(np.sqrt(((final - initial) ** 2).sum(-1)), 5, axis=0).mean(axis=0)
    expected = np.corrcoef(disp[5], others[a])[0, 1]
    assert stats["pearson_propensity"][5] == pytest.approx(expected, rel=1e-12)


def test_an_authors_replica_passes_against_the_others(botan_dir):
    types, initial, final = _load(botan_dir, 1)
    L = kalj.box_length(len(types))
    theirs = validation.replica_statistics(initial, final[1:], types, L)
    propensity_of_others = np.sqrt(((final[1:] - initial) ** 2).sum(-1)).mean(axis=0)
    one = validation.replica_statistics(
        initial, final[:1], types, L, reference=propensity_of_others
    )
    comparison = validation.compare_replicas(theirs, one)
    assert all(c["passed"] for c in comparison.values()), comparison


def test_replicas_stopped_early_fail_the_comparison(botan_dir, tmp_path):
    """400 steps instead of 824 000: the check must see that the dynamics are far too short."""
    from tbotan.md import make_engine

    result = validation.validate_botan_replicas(
        make_engine("torch", device="cpu"),
        botan_dir,
        file_index=1,
        n_replicas=1,
        time_limit=2.0,
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert not result["passed"]
    stats = result["statistics"]
    assert stats["fs"]["z"][0] > 10 and stats["cb_mean"]["z"][0] > 5 and stats["msd"]["z"][0] < -5
    table = validation.markdown({"botan_replicas": result})
    assert "FAIL" in table and "isoconfig_N4096T0.44_1_tc07.npz" in table
