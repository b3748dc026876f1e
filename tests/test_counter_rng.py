"""Counter-based RNG: bit-exact against a NumPy uint64 SplitMix64, and statistically sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tbotan.md import counter_rng
from tbotan.md.torch_integrators import chi_square


def splitmix64_numpy(z: np.ndarray) -> np.ndarray:
    """Reference SplitMix64 output function on uint64 (NumPy wraps modulo 2^64)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def test_mix64_is_bit_identical_to_unsigned_reference():
    rng = np.random.default_rng(0)
    values = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=1000, dtype=np.int64)
    ours = counter_rng.mix64(torch.from_numpy(values)).numpy().view(np.uint64)
    np.testing.assert_array_equal(ours, splitmix64_numpy(values.view(np.uint64)))


def test_streams_are_independent_of_batch_composition():
    seed = torch.tensor([7, 7, 7])
    stream = torch.tensor([0, 1, 2])
    counter = torch.tensor([10, 10, 10])
    batch = counter_rng.uniform(seed, stream, counter, 5)
    alone = counter_rng.uniform(seed[1:2], stream[1:2], counter[1:2], 5)
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=0)
    assert not torch.equal(batch[0], batch[1])


def test_uniform_and_normal_moments():
    n = 200_000
    seed = torch.zeros(1, dtype=torch.int64)
    u = counter_rng.uniform(seed, seed, seed + 3, n)[0].numpy()
    assert u.min() > 0 and u.max() < 1
    assert u.mean() == pytest.approx(0.5, abs=4 * np.sqrt(1 / 12 / n))
    assert u.var() == pytest.approx(1 / 12, rel=0.02)
    z = counter_rng.normal(seed, seed, seed + 4, n)[0].numpy()
    assert z.mean() == pytest.approx(0.0, abs=4 / np.sqrt(n))
    assert z.var() == pytest.approx(1.0, rel=0.02)
    assert np.mean(z**4) == pytest.approx(3.0, rel=0.05)  # Gaussian kurtosis


@pytest.mark.parametrize("dof", [1.0, 5.0, 765.0, 12285.0])
def test_chi_square_sampler_has_the_right_mean_and_variance(dof):
    b = 20_000
    seed = torch.full((b,), 3, dtype=torch.int64)
    stream = torch.arange(b, dtype=torch.int64)
    x = chi_square(dof, seed, stream, torch.zeros(b, dtype=torch.int64), torch.float64).numpy()
    assert x.mean() == pytest.approx(dof, abs=5 * np.sqrt(2 * dof / b))
    assert x.var() == pytest.approx(2 * dof, rel=0.06)
