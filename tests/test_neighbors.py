"""Dense neighbour lists against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import dense_random_configuration
from tbotan.md import torch_neighbors as nl
from tbotan.physics import kalj


def as_tensors(conf):
    coords = torch.as_tensor(conf.positions).permute(2, 0, 1).contiguous()
    types = torch.as_tensor(conf.types).to(torch.int64)
    box = torch.as_tensor(conf.box)
    return coords, types, box


def listed_pairs(neighbors: torch.Tensor) -> set:
    n_sys, n, _ = neighbors.shape
    found = set()
    for b in range(n_sys):
        for i in range(n):
            for flat in neighbors[b, i].tolist():
                if flat != b * n + i:
                    found.add((b, i, flat - b * n))
    return found


@pytest.mark.parametrize("n, skin", [(240, 0.3), (700, 0.3), (1500, 0.1)])
def test_list_equals_brute_force(n, skin):
    # n = 240 gives L = 5.85, just above 2 r_list = 5.6 (all-pairs path); larger boxes use cells
    confs = [dense_random_configuration(n, seed=s) for s in (1, 2)]
    from tbotan.physics.configurations import ConfigurationBatch

    conf = ConfigurationBatch.concatenate(confs)
    coords, types, box = as_tensors(conf)
    radii = nl.ListRadii.create(skin)
    neighbors, counts = nl.build(coords, types, box, radii, capacity=256)
    assert int(counts.max()) <= 256
    pairs = listed_pairs(neighbors)
    assert pairs == nl.brute_force_pairs(coords, types, box, radii)
    assert all((b, j, i) in pairs for (b, i, j) in pairs)  # j lists i whenever i lists j
    assert counts.sum().item() == len(pairs)


def test_list_on_botan_configuration_holds_every_pair_within_cutoff(botan_npz):
    d = botan_npz[3]
    L = kalj.box_length(4096)
    coords = torch.as_tensor(d["initial_positions"]).t().unsqueeze(1).contiguous()
    types = torch.as_tensor(d["types"]).to(torch.int64)[None]
    box = torch.full((1, 3), L, dtype=torch.float64)
    radii = nl.ListRadii.create(0.3)
    neighbors, counts = nl.build(coords, types, box, radii, nl.default_capacity(1.2, radii))
    assert int(counts.max()) <= neighbors.shape[-1]
    i, j = kalj.neighbor_pairs(d["initial_positions"], L, max(radii.radius))
    dd = kalj.minimum_image(d["initial_positions"][i] - d["initial_positions"][j], L)
    r = np.sqrt((dd * dd).sum(1))
    t = d["types"].astype(int)
    inside = r < np.array(radii.radius)[2 * t[i] + t[j]]
    expected = {(0, a, b) for a, b in zip(i[inside], j[inside], strict=True)}
    expected |= {(0, b, a) for (_, a, b) in expected}
    assert listed_pairs(neighbors) == expected


def test_overflowing_rows_report_their_true_count():
    conf = dense_random_configuration(400, seed=3)
    coords, types, box = as_tensors(conf)
    radii = nl.ListRadii.create(0.3)
    neighbors, counts = nl.build(coords, types, box, radii, capacity=16)
    assert neighbors.shape[-1] == 16
    assert int(counts.max()) > 16


def test_too_small_box_is_rejected():
    conf = dense_random_configuration(150, seed=3)
    coords, types, box = as_tensors(conf)
    with pytest.raises(ValueError, match="too small for the neighbour list"):
        nl.build(coords, types, box, nl.ListRadii.create(0.3), capacity=64)


def test_default_capacity_is_a_multiple_of_the_quantum_and_fits_the_liquid():
    radii = nl.ListRadii.create(0.3)
    k = nl.default_capacity(1.2, radii)
    assert k % nl.CAPACITY_QUANTUM == 0
    # an A particle has ~ 1.2 * 4/3 π (0.8 * 2.8³ + 0.2 * 2.3³) ≈ 101 neighbours on average
    assert 110 < k < 180
