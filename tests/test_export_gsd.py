"""``tbotan export-gsd``: labels and predictions as GSD per-particle data.

Round trip: every array of the GSD file equals its HDF5 source (read here with h5py, not through
tbotan's readers), checked with the real readers: gsd.hoomd, freud (the bonds are the IS-graph
pairs within the cut-off) and OVITO (``ovito.io.import_file`` shows the particle and bond
properties and the global attributes with the HDF5 values; skipped where ovito does not
import).  Also: the units attributes of the HDF5 writers, and the diameters and provenance of
every GSD file tbotan writes.
"""

from __future__ import annotations

from pathlib import Path

import gsd.hoomd
import h5py
import numpy as np
import pytest

import tbotan
from learning_helpers import prediction_attrs, write_synthetic
from tbotan import cli
from tbotan.formats.predictions import write_predictions
from tbotan.physics import kalj
from tbotan.physics.configurations import (
    CONFIG_HASH_KEY,
    VERSION_KEY,
    random_configuration,
    read_gsd,
    read_gsd_text,
    write_gsd,
)

N = 250


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A dataset of three configurations and the predictions of a two-member ensemble."""
    folder = tmp_path_factory.mktemp("export")
    dataset = write_synthetic(folder / "T0.80_test.h5", n=N, seeds=(0, 1, 2), split="test")
    with h5py.File(dataset) as f:
        n_edges = f["graph/edge_index"].shape[1]
    rng = np.random.default_rng(7)
    members = []
    for seed in range(2):
        path = folder / f"pred_s{seed}.h5"
        write_predictions(
            path,
            cb=rng.uniform(0.2, 1.0, (3, N)),
            edge=rng.normal(0.0, 0.1, n_edges),
            t_pred=rng.uniform(0.6, 1.0, 3),
            embedding=rng.normal(size=(3, 8)),
            attrs=dict(
                dataset=str(dataset),
                dataset_config_hash="synthetic",
                temperature=0.8,
                split="test",
                model=f"is+ts_lg0.1_s{seed}",
                variant="is+ts",
                seed=seed,
                lambda_global=0.1,
                epoch=1,
                edge_graph="graph",
            ),
        )
        members.append(path)
    return {"dataset": dataset, "members": members}


def h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        out = {}
        f.visititems(
            lambda name, item: out.update({name: item[...]}) if hasattr(item, "shape") else None
        )
        return out


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def edges_of(data: dict, c: int, graph: str = "graph") -> slice:
    offsets = data[f"{graph}/edge_offsets"]
    return slice(int(offsets[c]), int(offsets[c + 1]))


@pytest.mark.parametrize("structure", ["thermal", "inherent"])
def test_every_array_of_the_gsd_equals_its_hdf5_source(files, tmp_path, capsys, structure):
    out = tmp_path / "ensemble.gsd"
    argv = ["export-gsd", "--dataset", files["dataset"], "--predictions", *files["members"]]
    code, stdout, err = run_cli(capsys, *argv, "--structure", structure, "--output", out)
    assert code == 0, err
    assert "3 frames of N = 250" in stdout
    data = h5(files["dataset"])
    preds = [h5(p) for p in files["members"]]
    with h5py.File(files["dataset"]) as f:
        config_hash = f.attrs["config_hash"]
        L = float(f.attrs["box_length"])
    cb = np.stack([p["cb"] for p in preds]).astype(np.float64)
    edge = np.stack([p["edge"] for p in preds]).astype(np.float64)
    t_pred = np.stack([p["t_pred"] for p in preds]).astype(np.float64)
    with gsd.hoomd.open(out) as traj:
        assert len(traj) == 3
        for c, frame in enumerate(traj):
            log = frame.log
            positions = data[f"{structure}/positions"][c]
            np.testing.assert_array_equal(log["tbotan/position_float64"], positions)
            np.testing.assert_allclose(frame.particles.position, positions - L / 2, atol=1e-5)
            np.testing.assert_array_equal(frame.configuration.box, np.float32([L, L, L, 0, 0, 0]))
            np.testing.assert_array_equal(log["tbotan/box_float64"], [L, L, L])
            np.testing.assert_array_equal(frame.particles.typeid, data["types"][c])
            assert list(frame.particles.types) == ["A", "B"]
            np.testing.assert_array_equal(
                frame.particles.diameter, np.where(data["types"][c] == 0, 1.0, 0.88).astype("f4")
            )
            np.testing.assert_array_equal(log["particles/cb_md"], data["labels/cb"][c])
            np.testing.assert_array_equal(
                log["particles/propensity_md"], data["labels/propensity"][c]
            )
            np.testing.assert_array_equal(log["particles/n_bonds"], data["labels/n_bonds"][c])
            np.testing.assert_allclose(log["particles/cb_pred"], cb[:, c].mean(0), rtol=1e-6)
            np.testing.assert_allclose(log["particles/cb_pred_std"], cb[:, c].std(0), rtol=1e-5)
            e = edges_of(data, c)
            np.testing.assert_array_equal(frame.bonds.group, data["graph/edge_index"][:, e].T)
            assert frame.bonds.N == e.stop - e.start and list(frame.bonds.types) == ["graph"]
            np.testing.assert_array_equal(log["bonds/edge_md"], data["labels/edge"][e])
            np.testing.assert_allclose(log["bonds/edge_pred"], edge[:, e].mean(0), rtol=1e-6)
            np.testing.assert_allclose(
                log["bonds/edge_pred_std"], edge[:, e].std(0), rtol=1e-5, atol=1e-8
            )
            np.testing.assert_allclose(log["t_pred"], [t_pred[:, c].mean()], rtol=1e-6)
            np.testing.assert_allclose(log["t_pred_std"], [t_pred[:, c].std()], rtol=1e-5)
            assert log["temperature"][0] == 0.8
            assert log["inherent_energy"][0] == data["inherent/energy"][c]
            assert log["tbotan/configuration"][0] == c
    assert read_gsd_text(out, VERSION_KEY, 2) == tbotan.__version__
    assert read_gsd_text(out, CONFIG_HASH_KEY, 2) == config_hash
    # tbotan reads it back as a configuration (e.g. for `tbotan predict --gsd`)
    back = read_gsd(out, frames=[1])
    np.testing.assert_array_equal(back.positions[0], data[f"{structure}/positions"][1])


def test_one_member_is_exported_bit_for_bit_with_its_dataset_found_by_name(files, tmp_path, capsys):
    """One predictions file: its values unchanged, no spread; the dataset is the file its
    ``dataset`` attribute names; ``--configurations`` picks frames."""
    out = tmp_path / "one.gsd"
    argv = ["export-gsd", "--predictions", files["members"][1], "--configurations", 2, 0]
    code, _, err = run_cli(capsys, *argv, "--output", out)
    assert code == 0, err
    pred, data = h5(files["members"][1]), h5(files["dataset"])
    with gsd.hoomd.open(out) as traj:
        assert [int(f.log["tbotan/configuration"][0]) for f in traj] == [2, 0]
        for frame, c in zip(traj, (2, 0), strict=True):
            assert not any(k.endswith("_std") for k in frame.log)
            np.testing.assert_array_equal(frame.log["particles/cb_pred"], pred["cb"][c])
            np.testing.assert_array_equal(
                frame.log["bonds/edge_pred"], pred["edge"][edges_of(data, c)]
            )
            np.testing.assert_array_equal(frame.log["t_pred"], pred["t_pred"][c : c + 1])
            np.testing.assert_array_equal(frame.log["particles/cb_md"], data["labels/cb"][c])


def test_freud_reads_the_box_and_the_bonds_are_the_is_graph_pairs(files, tmp_path, capsys):
    freud = pytest.importorskip("freud")
    out = tmp_path / "inherent.gsd"
    argv = ["export-gsd", "--dataset", files["dataset"], "--structure", "inherent"]
    assert run_cli(capsys, *argv, "--output", out)[0] == 0
    with h5py.File(files["dataset"]) as f:
        cutoff = float(f.attrs["graph_cutoff"])
    with gsd.hoomd.open(out) as traj:
        for frame in traj:
            box = freud.box.Box.from_box(frame.configuration.box)
            points = frame.particles.position
            query = freud.locality.AABBQuery(box, points)
            nlist = query.query(points, {"r_max": cutoff, "exclude_ii": True}).toNeighborList()
            # float32 positions: a pair within 1e-4 of the cut-off may fall on either side
            clear = np.abs(nlist.distances - cutoff) > 1e-4
            pairs = set(
                zip(
                    nlist.query_point_indices[clear].tolist(),
                    nlist.point_indices[clear].tolist(),
                    strict=True,
                )
            )
            bonds = frame.bonds.group
            r = box.compute_distances(points[bonds[:, 0]], points[bonds[:, 1]])
            assert pairs <= set(map(tuple, bonds.tolist()))
            extra = [k for k, pair in enumerate(bonds.tolist()) if tuple(pair) not in pairs]
            assert np.all(np.abs(r[extra] - cutoff) <= 1e-4)
            assert len(pairs) > 10 * N  # about 40 edges per particle


def test_ovito_shows_the_properties_with_the_hdf5_values(files, tmp_path, capsys):
    try:
        from ovito.io import import_file
    except ImportError as exc:  # pragma: no cover - where ovito cannot be installed
        pytest.skip(f"ovito does not import here ({exc}); pip install .[viz]")
    out = tmp_path / "ovito.gsd"
    argv = ["export-gsd", "--predictions", *files["members"], "--output", out]
    assert run_cli(capsys, *argv)[0] == 0
    data = h5(files["dataset"])
    cb = np.stack([h5(p)["cb"] for p in files["members"]]).astype(np.float64)
    t_pred = np.stack([h5(p)["t_pred"] for p in files["members"]]).astype(np.float64)
    pipeline = import_file(str(out))
    assert pipeline.source.num_frames == 3
    for c in range(3):
        state = pipeline.compute(c)
        particles = state.particles
        assert particles.count == N
        np.testing.assert_array_equal(particles["cb_md"][...], data["labels/cb"][c])
        np.testing.assert_array_equal(particles["propensity_md"][...], data["labels/propensity"][c])
        np.testing.assert_allclose(particles["cb_pred"][...], cb[:, c].mean(0), rtol=1e-6)
        np.testing.assert_allclose(particles["cb_pred_std"][...], cb[:, c].std(0), rtol=1e-5)
        np.testing.assert_array_equal(particles["Particle Type"][...], data["types"][c])
        np.testing.assert_allclose(
            particles["Radius"][...], np.where(data["types"][c] == 0, 0.5, 0.44), rtol=1e-6
        )
        e = edges_of(data, c)
        bonds = particles.bonds
        np.testing.assert_array_equal(bonds["Topology"][...], data["graph/edge_index"][:, e].T)
        np.testing.assert_array_equal(bonds["edge_md"][...], data["labels/edge"][e])
        assert state.attributes["t_pred"] == pytest.approx(t_pred[:, c].mean(), rel=1e-6)
        assert state.attributes["temperature"] == 0.8


def test_a_user_configurations_predictions_carry_their_own_positions(tmp_path, capsys):
    conf = random_configuration(N, seed=4)
    L = float(conf.box[0, 0])
    from tbotan.physics.neighbors import graph_edges

    inherent = conf.positions[0]
    edges = graph_edges(inherent, L, 2.0).astype(np.int32)
    thermal = np.mod(inherent + 0.05, L)
    pred = tmp_path / "user.h5"
    rng = np.random.default_rng(1)
    write_predictions(
        pred,
        cb=rng.random((1, N)),
        edge=rng.random(edges.shape[1]),
        t_pred=np.array([0.7]),
        embedding=rng.random((1, 8)),
        attrs=prediction_attrs(
            dataset="my.gsd frame 0",
            dataset_config_hash="",
            temperature=float("nan"),
            split="user",
            model="is_lg0.1_s0",
            variant="is",
            lambda_global=0.1,
            epoch=1,
        ),
        inputs={
            "types": conf.types[0],
            "thermal_positions": thermal,
            "inherent_positions": inherent,
            "box": conf.box[0],
            "edge_index": edges,
        },
    )
    out = tmp_path / "user.gsd"
    argv = ["export-gsd", "--predictions", pred, "--structure", "inherent", "--output", out]
    assert run_cli(capsys, *argv)[0] == 0
    stored = h5(pred)
    with gsd.hoomd.open(out) as traj:
        (frame,) = traj
        np.testing.assert_array_equal(frame.log["tbotan/position_float64"], inherent)
        np.testing.assert_array_equal(frame.bonds.group, edges.T)
        np.testing.assert_array_equal(frame.log["particles/cb_pred"], stored["cb"][0])
        np.testing.assert_array_equal(frame.log["bonds/edge_pred"], stored["edge"])
        assert "particles/cb_md" not in frame.log and np.isnan(frame.log["temperature"][0])
        assert CONFIG_HASH_KEY not in frame.log  # a user configuration has no run


def test_export_refuses_predictions_whose_dataset_is_gone(files, tmp_path, capsys):
    moved = tmp_path / "pred.h5"
    moved.write_bytes(Path(files["members"][0]).read_bytes())
    with h5py.File(moved, "a") as f:
        f.attrs["dataset"] = str(tmp_path / "gone.h5")
    out = tmp_path / "x.gsd"
    code, _, err = run_cli(capsys, "export-gsd", "--predictions", moved, "--output", out)
    assert code == 2 and "gone.h5" in err and "--dataset" in err and "Traceback" not in err
    assert not out.exists()


def arrays_without_units(path: Path) -> list[str]:
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda name, item: names.append(name) if hasattr(item, "shape") else None)
        return [name for name in names if not f[name].attrs.get("units")]


def test_hdf5_writers_give_every_array_units(files):
    for path in (files["dataset"], files["members"][0]):
        assert not arrays_without_units(path), path
    with h5py.File(files["dataset"]) as f:
        assert f["thermal/positions"].attrs["units"] == "sigma_AA"
        assert f["labels/cb"].attrs["units"].startswith("dimensionless")
    with h5py.File(files["members"][0]) as f:
        assert f["t_pred"].attrs["units"] == "epsilon_AA / k_B"


def test_every_gsd_file_gets_per_type_diameters_and_provenance(tmp_path):
    conf = random_configuration(N, seed=5)
    path = tmp_path / "c.gsd"
    write_gsd(path, conf, config_hash="0123abcd")
    with gsd.hoomd.open(path) as traj:
        frame = traj[0]
        sigma = np.diag(kalj.SIGMA)[conf.types[0]]
        np.testing.assert_array_equal(frame.particles.diameter, sigma.astype(np.float32))
        assert set(np.unique(frame.particles.diameter)) == {np.float32(1.0), np.float32(0.88)}
    assert read_gsd_text(path, VERSION_KEY) == tbotan.__version__
    assert read_gsd_text(path, CONFIG_HASH_KEY) == "0123abcd"


def test_the_render_script_draws_each_property(files, tmp_path, capsys):
    """scripts/render_ovito.py (the README's picture) on an export: one panel per property,
    each with particles drawn (not a blank image); skipped where OVITO cannot render."""
    try:
        import ovito.vis  # noqa: F401
    except ImportError as exc:  # pragma: no cover - where ovito cannot be installed
        pytest.skip(f"ovito does not import here ({exc}); pip install .[viz]")
    import importlib.util

    import matplotlib.pyplot as plt

    gsd_file = tmp_path / "c.gsd"
    argv = ["export-gsd", "--predictions", files["members"][0], "--configurations", 1]
    assert run_cli(capsys, *argv, "--output", gsd_file)[0] == 0
    script = Path(__file__).resolve().parents[1] / "scripts" / "render_ovito.py"
    spec = importlib.util.spec_from_file_location("render_ovito", script)
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    png = tmp_path / "c.png"
    try:
        argv = [str(gsd_file), "--properties", "cb_md", "cb_pred", "--size", "160"]
        assert render.main([*argv, "--output", str(png)]) == 0
    except RuntimeError as exc:
        if "Vulkan" not in str(exc):
            raise
        pytest.skip(
            "OVITO cannot render here: no Vulkan loader (apt install libvulkan1 "
            "mesa-vulkan-drivers)"
        )
    image = plt.imread(png)[..., :3]
    height, width = image.shape[:2]
    panels = image[int(0.15 * height) : int(0.75 * height)]  # above the colour bars
    for half in (panels[:, : width // 2], panels[:, width // 2 :]):
        coloured = np.ptp(half, axis=-1) > 0.2  # viridis colours, not the white or grey
        assert coloured.mean() > 0.05


def test_tbotan_quench_writes_diameters_and_the_runs_configuration_hash(
    tmp_path, capsys, liquid_256
):
    """A pipeline stage's GSD (tbotan quench): diameters per type, the tbotan version and the
    hash of the run's configuration, the same as the dataset files' config_hash."""
    from tbotan import config as cfgmod

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "system: {n_particles: 256}\n"
        "temperatures: [{T: 1.2, tau_alpha: 0.78, train: true}]\n"
        "engine: {name: torch, device: cpu}\n"
        "dataset: {n_train: 1, n_validation: 1, n_test: 1}\n"
        "training: {corr_distances: [1, 2]}\n"
    )
    config = cfgmod.load([cfg])
    needed = cfgmod.configurations_needed(config, 1.2)
    equilibrium = tmp_path / "eq.gsd"
    write_gsd(equilibrium, liquid_256.repeat(needed))
    out = tmp_path / "ih.gsd"
    argv = ["quench", "--config", cfg, "--temperature", 1.2, "--equilibrium", equilibrium]
    code, _, err = run_cli(capsys, *argv, "--output", out)
    assert code == 0, err
    assert read_gsd_text(out, CONFIG_HASH_KEY) == cfgmod.section_hash(config)
    assert read_gsd_text(out, VERSION_KEY) == tbotan.__version__
    types = read_gsd(out).types[0]
    with gsd.hoomd.open(out) as traj:
        np.testing.assert_array_equal(
            traj[0].particles.diameter, np.where(types == 0, 1.0, 0.88).astype(np.float32)
        )


def test_predictions_of_the_ts_variant_put_the_thermal_graph_in_the_bonds(files, tmp_path, capsys):
    data = h5(files["dataset"])
    n_edges = data["graph_ts/edge_index"].shape[1]
    pred = tmp_path / "ts.h5"
    rng = np.random.default_rng(3)
    write_predictions(
        pred,
        cb=rng.random((3, N)),
        edge=rng.random(n_edges),
        t_pred=rng.random(3),
        embedding=rng.random((3, 8)),
        attrs=prediction_attrs(
            dataset=str(files["dataset"]),
            dataset_config_hash="synthetic",
            temperature=0.8,
            model="ts_lg0.1_s0",
            variant="ts",
            lambda_global=0.1,
            epoch=1,
            edge_graph="graph_ts",
        ),
    )
    out = tmp_path / "ts.gsd"
    assert run_cli(capsys, "export-gsd", "--predictions", pred, "--output", out)[0] == 0
    stored = h5(pred)
    with gsd.hoomd.open(out) as traj:
        for c, frame in enumerate(traj):
            e = edges_of(data, c, "graph_ts")
            assert list(frame.bonds.types) == ["graph_ts"]
            np.testing.assert_array_equal(frame.bonds.group, data["graph_ts/edge_index"][:, e].T)
            np.testing.assert_array_equal(frame.log["bonds/edge_md"], data["labels/edge_ts"][e])
            np.testing.assert_array_equal(frame.log["bonds/edge_pred"], stored["edge"][e])


def test_an_ensemble_file_exports_its_stored_spread_as_its_members_files_do(
    files, tmp_path, capsys
):
    """One predictions file of a seed ensemble (mean and spread stored, as `tbotan predict`
    with several models writes it) exports the same arrays as its members' files."""
    from tbotan.formats.predictions import read_predictions
    from tbotan.learning.ensemble import combine_members, ensemble_attrs

    preds = [read_predictions(p) for p in files["members"]]
    combined = combine_members([p.member() for p in preds])
    ensemble = tmp_path / "ensemble.h5"
    attrs = dict(ensemble_attrs([p.attrs for p in preds]), model_path=["a.pt", "b.pt"])
    write_predictions(ensemble, **combined, attrs=attrs)
    from_file, from_members = tmp_path / "file.gsd", tmp_path / "members.gsd"
    assert run_cli(capsys, "export-gsd", "--predictions", ensemble, "--output", from_file)[0] == 0
    argv = ["export-gsd", "--predictions", *files["members"], "--output", from_members]
    assert run_cli(capsys, *argv)[0] == 0
    stored = h5(ensemble)
    with gsd.hoomd.open(from_file) as a, gsd.hoomd.open(from_members) as b:
        for c, (fa, fb) in enumerate(zip(a, b, strict=True)):
            assert set(fa.log) == set(fb.log)
            for name in fa.log:
                assert np.array_equal(fa.log[name], fb.log[name]), name
            np.testing.assert_array_equal(fa.log["particles/cb_pred_std"], stored["cb_std"][c])
            np.testing.assert_array_equal(fa.log["t_pred_std"], stored["t_pred_std"][c : c + 1])
    code, _, err = run_cli(
        capsys,
        "export-gsd",
        "--predictions",
        ensemble,
        files["members"][0],
        "--output",
        tmp_path / "x.gsd",
    )
    assert code == 2 and "already hold seed ensembles" in err
