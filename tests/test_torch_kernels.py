"""The three kernel sets (native C++, torch.compile, eager torch) agree."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from conftest import dense_random_configuration
from tbotan.md import Integrator, native
from tbotan.md import torch_neighbors as nl
from tbotan.md.torch_engine import TorchEngine
from tbotan.md.torch_kernels import NativeKernels, TorchKernels
from tbotan.md.torch_potential import PairCoefficients
from tbotan.physics.configurations import ConfigurationBatch, maxwell_boltzmann_velocities


@pytest.fixture(scope="module")
def native_module():
    module = native.load()
    if module is None:
        pytest.skip(f"native kernels cannot be built here: {native.unavailable_reason()}")
    return module


def tensors(conf):
    coords = torch.tensor(np.moveaxis(conf.positions, 2, 0).copy())
    return coords, torch.as_tensor(conf.types).long().contiguous(), torch.as_tensor(conf.box)


@pytest.mark.parametrize("n", [240, 900])  # all-pairs path and cell-list path
def test_native_and_torch_builds_give_identical_lists(native_module, n):
    conf = ConfigurationBatch.concatenate([dense_random_configuration(n, seed=s) for s in (4, 5)])
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    kernels = NativeKernels(native_module, torch.float64)
    nat, nat_counts = kernels.build(coords, types, box, radii, 176)
    ref, ref_counts = nl.build(coords, types, box, radii, 176)
    assert torch.equal(nat_counts, ref_counts)
    assert torch.equal(nat, ref)


def test_native_forces_and_energies_equal_eager_to_rounding(native_module):
    conf = ConfigurationBatch.concatenate([dense_random_configuration(700, seed=s) for s in (6, 7)])
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    neighbors, counts = nl.build(coords, types, box, radii, 176)
    eager = TorchKernels(PairCoefficients.create(torch.device("cpu"), torch.float64), False)
    nat = NativeKernels(native_module, torch.float64)
    f_e, u_e, w_e, m_e = eager.energy_virial(coords, neighbors, counts, types, box)
    f_n, u_n, w_n, m_n = nat.energy_virial(coords, neighbors, counts, types, box)
    scale = f_e.abs().max()
    assert (f_n - f_e).abs().max() / scale < 1e-13
    assert (nat.forces(coords, neighbors, counts, types, box) - f_e).abs().max() / scale < 1e-13
    torch.testing.assert_close(u_n, u_e, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(w_n, w_e, rtol=1e-12, atol=0)
    torch.testing.assert_close(m_n, m_e, rtol=1e-12, atol=0)


def test_native_results_do_not_depend_on_the_thread_count(native_module):
    conf = dense_random_configuration(900, seed=8)
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    neighbors, counts = nl.build(coords, types, box, radii, 176)
    nat = NativeKernels(native_module, torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nat.energy_virial(coords, neighbors, counts, types, box)
        torch.set_num_threads(max(2, threads))
        many = nat.energy_virial(coords, neighbors, counts, types, box)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a, b)


def test_all_kernel_sets_follow_the_same_short_trajectory(liquid_256):
    conf = liquid_256.repeat(2).with_velocities(
        np.stack([maxwell_boltzmann_velocities(256, 0.8, 3, b) for b in range(2)])
    )
    integrator = Integrator(dt=0.005, kT=0.8, tau=0.5, seed=2)
    finals = {}
    for kernels in ("eager", "native", "compiled"):
        if kernels == "native" and native.load() is None:
            continue
        sim = TorchEngine(device="cpu", kernels=kernels).simulation(conf, integrator)
        sim.run(60)
        finals[kernels] = sim.state().unwrapped_positions()
    for name, positions in finals.items():
        np.testing.assert_allclose(positions, finals["eager"], rtol=0, atol=1e-10, err_msg=name)


def test_unknown_kernel_choice_is_rejected():
    with pytest.raises(ValueError, match="kernels must be one of"):
        TorchEngine(device="cpu", kernels="fast")
    with pytest.raises(ValueError, match="CPU only"):
        from tbotan.md.torch_kernels import make_kernels

        make_kernels("native", torch.device("meta"), torch.float64, False)


def test_build_key_follows_the_source_bytes_not_their_path(tmp_path):
    sources = native.kernel_sources()
    assert [p.name for p in sources] == ["kalj_cpu.cpp"]
    flags, env = native.cflags(), native.build_environment()
    key = native.build_key(sources, flags, native.LDFLAGS, env)
    assert native.extension_name() == f"tbotan_kalj_cpu_{key}"
    copy = tmp_path / "another checkout" / "native"
    copy.mkdir(parents=True)
    for path in sources:
        shutil.copy(path, copy / path.name)
    assert native.build_key(native.kernel_sources(copy), flags, native.LDFLAGS, env) == key
    # any byte of a source, a new header, the flags or the torch build make another build
    cpp = copy / "kalj_cpu.cpp"
    data = bytearray(cpp.read_bytes())
    data[len(data) // 2] ^= 1
    cpp.write_bytes(bytes(data))
    assert native.build_key(native.kernel_sources(copy), flags, native.LDFLAGS, env) != key
    shutil.copy(sources[0], cpp)
    (copy / "extra.h").write_text("#pragma once\n")
    assert native.build_key(native.kernel_sources(copy), flags, native.LDFLAGS, env) != key
    assert native.build_key(sources, [*flags, "-g"], native.LDFLAGS, env) != key
    assert native.build_key(sources, flags, native.LDFLAGS, env | {"torch": "0.0"}) != key
    assert native.build_key(sources, flags, native.LDFLAGS, env | {"cpu": "x86_64 sse2"}) != key


def test_loading_leaves_the_build_key_unchanged(native_module):
    # torch's builder appends to the flag lists it is given; the key must not follow
    assert native_module.__name__ == native.extension_name()
