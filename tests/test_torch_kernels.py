"""The three kernel sets (native C++, torch.compile, eager torch) agree."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from conftest import dense_random_configuration
from tbotan.md import DynamicsParameters, native
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
    kernels = NativeKernels(native_module, torch.float64, "full")
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
    nat = NativeKernels(native_module, torch.float64, "full")
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
    nat = NativeKernels(native_module, torch.float64, "full")
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
    integrator = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=2)
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


# ------------------------------------------------------------------ half neighbour lists


def half_pairs(neighbors, counts):
    """Set of unordered flat pairs of a half list, and the number of entries (each pair once)."""
    pairs, entries = set(), 0
    for b in range(neighbors.shape[0]):
        n = neighbors.shape[1]
        for i in range(n):
            row = neighbors[b, i, : int(counts[b, i, 0])].tolist()
            entries += len(row)
            pairs.update(frozenset((b * n + i, j)) for j in row)
    return pairs, entries


@pytest.mark.parametrize("n", [240, 900, 2000])  # all pairs; cells of r_max / 2, 5³ stencil
def test_half_list_holds_every_pair_once_with_a_neighbours_first(native_module, n):
    conf = ConfigurationBatch.concatenate([dense_random_configuration(n, seed=s) for s in (4, 5)])
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    half = NativeKernels(native_module, torch.float64, "half")
    neighbors, counts = half.build(coords, types, box, radii, 176)
    assert counts.shape == (2, n, 2)
    assert neighbors.dtype == counts.dtype == torch.int32  # half the memory of int64 rows
    pairs, entries = half_pairs(neighbors, counts)
    brute = {
        frozenset((b * n + i, b * n + j))
        for b, i, j in nl.brute_force_pairs(coords, types, box, radii)
    }
    assert pairs == brute
    assert entries == len(brute)  # no pair twice
    flat_types = types.reshape(-1)
    for b in range(2):
        for i in range(0, n, 7):
            n_all, n_a = (int(v) for v in counts[b, i])
            assert (flat_types[neighbors[b, i, :n_a]] == 0).all()
            assert (flat_types[neighbors[b, i, n_a:n_all]] == 1).all()
            assert (neighbors[b, i, n_all:] == b * n + i).all()  # padding: own index
    # rows are about evenly loaded (half of a full row on average)
    assert abs(counts[..., 0].double().mean() - 0.5 * len(brute) * 2 / (2 * n)) < 1e-9


def compare_half_with_full(native_module, conf, rel_force=1e-12):
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    full = NativeKernels(native_module, torch.float64, "full")
    half = NativeKernels(native_module, torch.float64, "half")
    f_list = full.build(coords, types, box, radii, 176)
    h_list = half.build(coords, types, box, radii, 176)
    f_f, u_f, w_f, m_f = full.energy_virial(coords, *f_list, types, box)
    f_h, u_h, w_h, m_h = half.energy_virial(coords, *h_list, types, box)
    scale = f_f.abs().max()
    assert (f_h - f_f).abs().max() / scale < rel_force
    assert (half.forces(coords, *h_list, types, box) - f_h).abs().max() == 0
    torch.testing.assert_close(u_h, u_f, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(u_h.sum(-1), u_f.sum(-1), rtol=1e-13, atol=0)
    torch.testing.assert_close(w_h, w_f, rtol=1e-12, atol=0)
    assert torch.equal(m_h, m_f)


def test_half_list_forces_energies_virials_equal_full_list_on_dense_configurations(native_module):
    for n, seeds in ((300, (1, 2)), (1500, (3, 4))):
        conf = ConfigurationBatch.concatenate(
            [dense_random_configuration(n, seed=s) for s in seeds]
        )
        compare_half_with_full(native_module, conf)


def test_half_list_forces_energies_virials_equal_full_list_on_botan_files(
    native_module, botan_batch
):
    compare_half_with_full(native_module, botan_batch)


def test_half_list_results_do_not_depend_on_threads_or_on_the_batch(native_module):
    n = 2500  # two accumulation chunks per system (2048 rows and 452)
    assert native_module.half_chunk_rows(n) < n
    conf = ConfigurationBatch.concatenate([dense_random_configuration(n, seed=s) for s in (8, 9)])
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    half = NativeKernels(native_module, torch.float64, "half")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        lists = half.build(coords, types, box, radii, 176)
        one = half.energy_virial(coords, *lists, types, box)
        torch.set_num_threads(max(2, threads))
        assert all(
            torch.equal(a, b)
            for a, b in zip(lists, half.build(coords, types, box, radii, 176), strict=True)
        )
        many = half.energy_virial(coords, *lists, types, box)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a, b)
    # the second system alone: the same rows (up to the flat offset) and bit-identical results
    alone = conf.select(1)
    c1, t1, b1 = tensors(alone)
    nbr1, cnt1 = half.build(c1, t1, b1, radii, 176)
    assert torch.equal(nbr1[0] + n, lists[0][1]) and torch.equal(cnt1[0], lists[1][1])
    f1, u1, w1, m1 = half.energy_virial(c1, nbr1, cnt1, t1, b1)
    assert torch.equal(f1[:, 0], one[0][:, 1]) and torch.equal(u1[0], one[1][1])
    assert torch.equal(w1[0], one[2][1]) and torch.equal(m1[0], one[3][1])


@pytest.fixture
def portable_too(native_module):
    """The native module, with the explicitly vectorised loops switched back on afterwards."""
    if not native_module.simd_available():
        pytest.skip("this build has no vectorised loops to compare (CPU or compiler lacks them)")
    yield native_module
    native_module.use_simd(True)


@pytest.mark.parametrize("n", [400, 1000, 4096])  # all pairs; 6³ and 10³ cells of r_max / 2
def test_vectorised_and_portable_half_kernels_agree(portable_too, n):
    """Vectorised list builds (AVX-512 cell runs, AVX2 candidate appends) are the portable
    builds entry for entry; AVX-512 forces, energies and virials equal the portable ones to
    rounding (1/r from a refined reciprocal square root, lanes summed in another order; the AVX2
    ones bit for bit), on a dense configuration and through an in-place rebuild."""
    conf = ConfigurationBatch.concatenate([dense_random_configuration(n, seed=s) for s in (6, 7)])
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    half = NativeKernels(portable_too, torch.float64, "half")
    results = {}
    for simd in (True, False):
        portable_too.use_simd(simd)
        lists = half.build(coords, types, box, radii, 176)
        results[simd] = (lists, half.energy_virial(coords, *lists, types, box))
        assert torch.equal(half.forces(coords, *lists, types, box), results[simd][1][0])
    (l_v, (f_v, u_v, w_v, m_v)), (l_p, (f_p, u_p, w_p, m_p)) = results[True], results[False]
    assert all(torch.equal(a, b) for a, b in zip(l_v, l_p, strict=True))
    assert (f_v - f_p).abs().max() / f_p.abs().max() < 1e-13
    torch.testing.assert_close(u_v, u_p, rtol=1e-12, atol=1e-12)  # sums of ±O(1) pair terms
    torch.testing.assert_close(w_v, w_p, rtol=1e-13, atol=0)
    assert torch.equal(m_v, m_p)
    # in-place rebuilds of both systems (whole systems in parallel with two threads, one after
    # the other with one), with and without the vectorised loops: the same rows
    shifted = coords + 0.37 * box.T[:, :, None]  # out of the box: the rebuild wraps them back
    rebuilt = {}
    threads = torch.get_num_threads()
    try:
        for simd, n_threads in ((True, 1), (True, 2), (False, 1)):
            portable_too.use_simd(simd)
            torch.set_num_threads(n_threads)
            c = shifted.clone()
            images = torch.zeros_like(c, dtype=torch.int64)
            reference = torch.zeros_like(c)
            nbr, cnt = (t.clone() for t in l_p)
            longest = half.rebuild_in_place(
                c, images, reference, types, box, torch.ones(2, dtype=torch.bool), nbr, cnt, radii
            )
            rebuilt[simd, n_threads] = (c, images, reference, nbr, cnt, longest)
    finally:
        torch.set_num_threads(threads)
    first = rebuilt[True, 1]
    for other in (rebuilt[True, 2], rebuilt[False, 1]):
        assert all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert torch.equal(first[2], first[0])  # the reference is the wrapped coordinates
    assert (first[0] >= 0).all() and (first[0] < box.T[:, :, None]).all()
    assert int(first[5].max()) == int(first[4][..., 0].max()) <= 176


def test_half_and_full_lists_follow_the_same_trajectory_to_rounding(liquid_256):
    conf = liquid_256.repeat(2).with_velocities(
        np.stack([maxwell_boltzmann_velocities(256, 0.8, 3, b) for b in range(2)])
    )
    integrator = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=2)
    finals = {}
    for neighbor_list in ("full", "half"):
        if native.load() is None:
            pytest.skip("native kernels cannot be built here")
        engine = TorchEngine(device="cpu", kernels="native", neighbor_list=neighbor_list)
        sim = engine.simulation(conf, integrator)
        sim.run(60)
        finals[neighbor_list] = sim.state().unwrapped_positions()
    np.testing.assert_allclose(finals["half"], finals["full"], rtol=0, atol=1e-10)


def test_half_lists_never_miss_a_pair_in_a_long_batched_run(native_module):
    from tbotan.physics.configurations import random_configuration

    confs = [random_configuration(700, seed=s) for s in (1, 2, 3)]
    conf = ConfigurationBatch.concatenate(confs).with_velocities(
        np.stack([maxwell_boltzmann_velocities(700, 2.0, 5, b) for b in range(3)])
    )
    engine = TorchEngine(
        device="cpu",
        kernels="native",
        neighbor_list="half",
        verify_neighbors=True,
        check_interval=5,
        skin=0.2,
    )
    assert engine.kernels.rebuilds_in_place
    sim = engine.simulation(conf, DynamicsParameters(dt=0.003, kT=2.0, tau=0.2, seed=2))
    sim.run(600)  # partial in-place rebuilds; raises SimulationError on a missed pair
    assert np.isfinite(sim.thermo().potential_energy_per_particle).all()


def test_half_lists_need_the_native_kernels():
    with pytest.raises(ValueError, match="native"):
        TorchEngine(device="cpu", kernels="eager", neighbor_list="half")
    with pytest.raises(ValueError, match="neighbor_list"):
        TorchEngine(device="cpu", neighbor_list="quarter")


def test_compiled_kernels_compile_once_per_shape_whatever_the_strides(liquid_256):
    """torch.compile(dynamic=False) guards on shapes and strides: the engine gives its compiled
    kernels canonical strides, so batches of one from different sources (a configuration, a
    repeat, a selection from a batch) reuse one compilation; recompile-limit hits fail."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    pair = liquid_256.repeat(2).with_velocities(
        np.stack([maxwell_boltzmann_velocities(256, 0.8, 3, b) for b in range(2)])
    )
    sources = [pair.select(1), pair.select(0).repeat(1), pair.select(1)]
    integrator = DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=2)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=3):
        engine = TorchEngine(device="cpu", kernels="compiled")
        graphs = []
        for conf in sources:
            engine.simulation(conf, integrator).run(3)
            graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 2  # forces and kick-drift compiled
    assert graphs[1] == graphs[0] and graphs[2] == graphs[0], graphs


@pytest.mark.parametrize("march", ["x86-64-v3", "x86-64-v4"])  # AVX2 only; with AVX-512
def test_native_kernels_compile_for_cpus_with_and_without_avx512(march):
    """The portable loops stand alone where the CPU (``-march=native``) has no AVX-512, and the
    AVX-512 ones compile wherever it has: a syntax-only compile for both instruction sets."""
    import platform
    import shutil
    import subprocess
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    if platform.machine() not in ("x86_64", "AMD64") or shutil.which("c++") is None:
        pytest.skip("needs an x86-64 C++ compiler")
    source = native.kernel_sources()[0]
    includes = [f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"]]]
    command = ["c++", "-fsyntax-only", f"-march={march}", "-std=c++17", "-fopenmp", "-Wall"]
    command += ["-Wextra", "-DTORCH_EXTENSION_NAME=check", *includes]
    result = subprocess.run([*command, str(source)], capture_output=True, text=True)
    own = [line for line in result.stderr.splitlines() if source.name in line]
    assert result.returncode == 0, "\n".join(own[:20]) or result.stderr[-2000:]
    assert not [line for line in own if "warning" in line]  # none in our own code


@pytest.mark.parametrize("n", [400, 2500])  # one force chunk per system (fused); two chunks
def test_fused_rebuild_and_forces_equal_the_two_calls(native_module, n):
    """``rebuild_forces`` (each system's task rebuilds it if flagged, then its forces) gives the
    coordinates, images, references, rows and forces of ``rebuild_in_place`` followed by
    ``forces``, bit for bit, on one thread and on two, flagged and unflagged systems mixed."""
    conf = ConfigurationBatch.concatenate(
        [dense_random_configuration(n, seed=s) for s in (11, 12, 13)]
    )
    coords, types, box = tensors(conf)
    radii = nl.ListRadii.create(0.3)
    half = NativeKernels(native_module, torch.float64, "half")
    lists = half.build(coords, types, box, radii, 96)
    shifted = coords + 0.37 * box.T[:, :, None]  # out of the box: the rebuild wraps them back
    flagged = torch.tensor([True, False, True])

    def state():
        return (
            shifted.clone(),
            torch.zeros_like(shifted, dtype=torch.int64),
            torch.zeros_like(shifted),
            lists[0].clone(),
            lists[1].clone(),
        )

    c, images, reference, nbr, cnt = state()
    longest = half.rebuild_in_place(c, images, reference, types, box, flagged, nbr, cnt, radii)
    expected = (c, images, reference, nbr, cnt, half.forces(c, nbr, cnt, types, box), longest)
    assert int(longest[1]) == 0 and int(longest[0]) > 0
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            c, images, reference, nbr, cnt = state()
            forces, longest = half.rebuild_forces(
                c, images, reference, types, box, flagged, nbr, cnt, radii
            )
            got = (c, images, reference, nbr, cnt, forces, longest)
            assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    finally:
        torch.set_num_threads(threads)


def test_native_velocity_scaling_is_torchs_product(native_module):
    half = NativeKernels(native_module, torch.float64, "half")
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(3, 5, 400, generator=gen, dtype=torch.float64)
    scale = 1.0 + 0.01 * torch.randn(5, generator=gen, dtype=torch.float64)
    expected = v * scale.view(1, -1, 1)
    got = half.scale_velocities(v.clone(), scale)
    assert torch.equal(got, expected)


def test_half_list_capacity_fits_the_liquid_in_half_the_memory(liquid_256):
    """Half lists start at about half the full lists' capacity, and a liquid's rows fit it."""
    radii = nl.ListRadii.create(0.3)
    full, half = nl.default_capacity(1.2, radii), nl.default_capacity(1.2, radii, half=True)
    assert half % nl.CAPACITY_QUANTUM == 0 and 0.5 * full <= half < 0.7 * full
    if native.load() is None:
        pytest.skip(f"native kernels cannot be built here: {native.unavailable_reason()}")
    engine = TorchEngine(device="cpu", kernels="native", neighbor_list="half")
    sim = engine.simulation(
        liquid_256.with_velocities(maxwell_boltzmann_velocities(256, 0.8, 1, 0)[None]),
        DynamicsParameters(dt=0.005, kT=0.8, tau=0.5, seed=1),
    )
    sim.run(50)
    s = sim._state
    assert s.capacity == half == s.neighbors.shape[-1]  # no overflow, no widening
    assert s.neighbors.dtype == s.counts.dtype == torch.int32
    assert int(s.counts[..., 0].max()) <= half
