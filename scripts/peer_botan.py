"""Beside BOTAN's own code: pyg_botan, tbotan and the ridge baselines on the same BOTAN files.

    python scripts/peer_botan.py --pyg-botan /path/to/pyg_botan --data $TBOTAN_BOTAN_DATA \\
        --budget 300 --out peer [--split holdout|loo] [--files 1 2 3 4 5] [--threads 1]

Writes ``OUT/peer_botan.md`` and ``OUT/peer_botan.json``: one table with, for every split and
model, the Pearson correlation over the type-A particles of the test configuration between the
model's per-particle output and (a) the propensity ⟨|Δr|⟩_iso, (b) C_B (with its sign: a
propensity predictor anticorrelates with C_B), both labels as computed by ``tbotan import-botan``
from the same files.  Models, each trained on the same files for the same CPU time (``--budget``
seconds of process CPU time, ``--threads`` threads each; the default 1 thread makes CPU time
and compute equal):

- **pyg_botan**: BOTAN's public code (h3-Open-BDEC/pyg_botan, Apache-2.0), run from the
  checkout given by ``--pyg-botan`` and never copied here.  Its own settings: ``train.train_model``
  with the arguments of its ``run.py`` (p_frac = 0.4, seed 0, T = 0.44, time index 7) and its
  defaults (Adam at 1e-4, gradient clipping 1, batch 1, random octahedral augmentation, the
  edge-pretrained ``initial_model/model1.pth``, saved from CUDA tensors: the driver's directory
  gets a CPU copy of it, the same numbers), its own graphs (thermal structure, cut-off 2.0)
  and targets (propensity on the nodes, Δ|r_jk| on the edges), computed by its ``load_data``
  from the ``.npz`` files.  A generated driver in a temporary directory imports the checkout's
  modules and calls ``train.train_model`` unchanged; it only wraps two of the names that
  ``train.py`` imports (``Model`` to keep a handle on the network; ``Dataset`` to stop at the
  first epoch boundary after ``--budget`` CPU seconds of the training loop, by raising from
  ``__getitem__``), then evaluates the network on the test file.
- **tbotan (C_B)** and **tbotan (propensity)**: our recipe ``config/botan.yaml`` (over
  ``config.yaml``) with ``model.node_target`` cb or propensity, trained through
  :func:`tbotan.learning.training.train` on the files imported by
  :func:`tbotan.labels.botan.import_botan`.  Its cosine schedule needs the number of epochs in
  advance: a two-epoch calibration run measures the CPU time of an epoch and of the set-up (the
  first epoch builds the graphs), and the recipe is run for as many epochs as the rest of the
  budget holds (the calibration counts in the budget).  pyg_botan stops at the first epoch
  boundary after the budget, so it may overrun by up to one epoch (and its evaluation of the
  test file every fifth epoch, part of its loop); the table gives the CPU seconds each used.
- **ridge (C_B)** and **ridge (propensity)**: :func:`tbotan.learning.baselines.
  structural_baselines` fitted on the training files (penalty chosen on them too: no file to
  spare); a few CPU seconds.

CPU time counts the training only: pyg_botan's graph and target building (in its ``Dataset``,
before its loop) and our import (FIRE quench, labels, graphs) are not counted; our recipe builds
its graphs from the dataset files during its first epoch, which is counted.

Splits: ``holdout`` trains on every file of ``--files`` but the last and tests on the last (the
default: train 1–4, test 5); ``loo`` holds out each file in turn (5-fold leave-one-out) and adds
the mean and the worst fold.

Dependencies of pyg_botan: its ``model.py`` imports ``scatter`` from ``torch_scatter``, a
compiled extension that PyPI has only as a source distribution (it must be built against the
installed torch; the wheels are on data.pyg.org, unreachable here).  When ``torch_scatter``
cannot be imported, the driver's directory gets a one-line shim module ``torch_scatter.py``
that provides ``scatter`` as ``torch_geometric.utils.scatter`` (the same summing scatter for
the call ``scatter(src, index, dim=0, dim_size=n)`` that pyg_botan makes); nothing else of
``torch_scatter`` or ``torch_sparse`` is used (``torch_geometric`` 2.x runs without them).
The table records whether the shim was used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: BOTAN's box edge (σ_AA) and temperature of the public T = 0.44 files.
BOTAN_BOX = 15.05658
BOTAN_TEMPERATURE = 0.44
#: File name of BOTAN configuration i (T = 0.44, time index 7 = τα).
BOTAN_NAME = "isoconfig_N4096T0.44_{}_tc07.npz"
#: pyg_botan's run.py settings (p_frac, time index, temperature).
PYG_RUN = {"p_frac": 0.4, "tcl": 7, "temperature": 0.44}
#: Files a pyg_botan checkout must have.
PYG_FILES = ("model.py", "train.py", "load_data.py", "initial_model")
#: Columns of the table, in order (the JSON rows carry these keys).
COLUMNS = (
    "split",
    "test",
    "model",
    "target",
    "cpu_s",
    "epochs",
    "rho_propensity",
    "rho_cb",
)
HEADER = {
    "split": "split",
    "test": "test file",
    "model": "model",
    "target": "trained on",
    "cpu_s": "CPU s",
    "epochs": "epochs",
    "rho_propensity": "ρ(propensity)",
    "rho_cb": "ρ(C_B)",
}

DRIVER = '''
"""Generated by tbotan's scripts/peer_botan.py: pyg_botan's train.train_model on a CPU budget."""
import json
import sys
import time

import numpy as np
import torch

checkout, budget, threads, seed, out = sys.argv[1:6]
budget, threads, seed = float(budget), int(threads), int(seed)
sys.path[:0] = [".", checkout]  # "." first: the torch_scatter shim, when one was written
torch.set_num_threads(threads)
import load_data  # noqa: E402  (pyg_botan's modules, from the checkout)
import model as botan_model  # noqa: E402
import train as botan_train  # noqa: E402

state = {"models": [], "datasets": [], "start": None, "epochs": 0}


class OutOfBudget(Exception):
    pass


class RecordedModel(botan_model.Model):
    def __init__(self):
        super().__init__()
        state["models"].append(self)


class BudgetedDataset(load_data.Dataset):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        state["datasets"].append(self)

    def __getitem__(self, idx):
        if self is state["datasets"][0]:  # the training set: train_model builds it first
            if self.calls % len(self) == 0:  # an epoch begins
                state["epochs"] = self.calls // len(self)  # epochs done
                now = time.process_time()
                if state["start"] is None:
                    state["start"] = now
                elif now - state["start"] >= budget:
                    raise OutOfBudget
            self.calls += 1
        return super().__getitem__(idx)


botan_train.Model = RecordedModel
botan_train.Dataset = BudgetedDataset
try:
    botan_train.train_model(
        p_frac=P_FRAC,
        temperature=TEMPERATURE,
        train_file_pattern="train/*.npz",
        test_file_pattern="test/*.npz",
        n_epochs=10**9,
        tcl=TCL,
        seed=seed,
    )
except OutOfBudget:
    pass
cpu_s = time.process_time() - state["start"]
net, test = state["models"][0], state["datasets"][1]
net.eval()
with torch.no_grad():
    node, edge = net(test.data[0].to("cpu"))
np.save(out + "/node.npy", node.squeeze(1).numpy())
np.save(out + "/target.npy", test.data[0].y.squeeze(1).numpy())
json.dump(
    {"epochs": state["epochs"], "cpu_s": cpu_s, "steps": state["datasets"][0].calls},
    open(out + "/meta.json", "w"),
)
'''


class InputError(ValueError):
    """Bad user input (exit 2 with a one-line message)."""


def check_inputs(args) -> list[Path]:
    """The BOTAN files of ``--files`` (one-line errors before any work)."""
    checkout = Path(args.pyg_botan)
    missing = [name for name in PYG_FILES if not (checkout / name).exists()]
    if missing:
        raise InputError(
            f"--pyg-botan {checkout}: not a pyg_botan checkout (missing {', '.join(missing)})"
        )
    if not (checkout / "initial_model" / f"model{args.seed + 1}.pth").is_file():
        raise InputError(f"{checkout}/initial_model has no model{args.seed + 1}.pth (--seed)")
    files = [Path(args.data) / BOTAN_NAME.format(i) for i in args.files]
    absent = [str(p) for p in files if not p.is_file()]
    if absent:
        raise InputError(f"--data: BOTAN files not found: {', '.join(absent)}")
    if len(set(args.files)) != len(args.files) or len(args.files) < 2:
        raise InputError(f"--files needs at least two distinct files, got {args.files}")
    if args.budget <= 0:
        raise InputError(f"--budget must be positive, got {args.budget}")
    return files


def splits(indices: list[int], kind: str) -> list[tuple[list[int], int]]:
    """(training files, test file) of each split."""
    if kind == "holdout":
        return [(indices[:-1], indices[-1])]
    return [([i for i in indices if i != k], k) for k in indices]


def import_files(npz_files: list[Path], indices: list[int], folder: Path) -> dict[int, Path]:
    """One dataset file per BOTAN file (reused when already in ``folder``)."""
    from tbotan.formats.dataset import DatasetFile, write_dataset
    from tbotan.labels.botan import import_botan
    from tbotan.md import make_engine

    folder.mkdir(parents=True, exist_ok=True)
    engine = None
    out = {}
    for i, npz in zip(indices, npz_files, strict=True):
        path = folder / f"botan_{i}.h5"
        if not path.is_file():
            engine = engine or make_engine("torch", device="cpu")
            content = import_botan(
                [npz], box=BOTAN_BOX, temperature=BOTAN_TEMPERATURE, engine=engine, split="test"
            )
            write_dataset(path, content)
        DatasetFile(path)
        out[i] = path
    return out


def labels_of(dataset: Path) -> dict[str, np.ndarray]:
    """Types, C_B and propensity of the (single) configuration of a dataset file."""
    from tbotan.formats.dataset import DatasetFile

    conf = DatasetFile(dataset).configuration(0, graphs=())
    return {k: np.asarray(conf[k], np.float64) for k in ("types", "cb", "propensity")}


def correlations(output: np.ndarray, labels: dict) -> dict:
    """ρ of the output with the propensity and with C_B, over type-A particles."""
    a = labels["types"] == 0
    return {
        "rho_propensity": float(np.corrcoef(output[a], labels["propensity"][a])[0, 1]),
        "rho_cb": float(np.corrcoef(output[a], labels["cb"][a])[0, 1]),
    }


def needs_shim() -> bool:
    try:
        import torch_scatter  # noqa: F401
    except ImportError:
        return True
    return False


def run_pyg_botan(args, npz: dict[int, Path], train_idx, test_idx, folder: Path) -> dict:
    """pyg_botan's training for ``args.budget`` CPU seconds; its node output on the test file."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyg_botan_") as tmp:
        work = Path(tmp)
        for part, idx in (("train", train_idx), ("test", [test_idx])):
            (work / part).mkdir()
            for i in idx:
                (work / part / npz[i].name).symlink_to(npz[i].resolve())
        # its pretrained weights were saved from CUDA tensors: a CPU copy, the same numbers
        (work / "initial_model").mkdir()
        name = f"model{args.seed + 1}.pth"
        weights = torch.load(Path(args.pyg_botan) / "initial_model" / name, map_location="cpu")
        torch.save(weights, work / "initial_model" / name)
        shim = needs_shim()
        if shim:
            (work / "torch_scatter.py").write_text(
                '"""Shim for pyg_botan (scripts/peer_botan.py)."""\n'
                "from torch_geometric.utils import scatter  # noqa: F401\n"
            )
        driver = DRIVER.replace("P_FRAC", repr(PYG_RUN["p_frac"]))
        driver = driver.replace("TEMPERATURE", repr(PYG_RUN["temperature"]))
        driver = driver.replace("TCL", repr(PYG_RUN["tcl"]))
        (work / "driver.py").write_text(driver)
        command = [
            sys.executable,
            "driver.py",
            str(Path(args.pyg_botan).resolve()),
            str(args.budget),
            str(args.threads),
            str(args.seed),
            str(work),
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        with open(folder / "pyg_botan.log", "w") as log:
            done = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
        if done.returncode != 0:
            tail = (folder / "pyg_botan.log").read_text().strip().splitlines()[-5:]
            raise RuntimeError(
                f"pyg_botan failed (exit {done.returncode}); log {folder / 'pyg_botan.log'}:\n"
                + "\n".join(tail)
            )
        meta = json.loads((work / "meta.json").read_text())
        node = np.load(work / "node.npy")
        target = np.load(work / "target.npy")
        for name in work.glob("loss_*.dat"):  # its own record: epoch, losses, node/edge ρ
            shutil.copy(name, folder / name.name)
    return {"node": node, "target": target, "shim": shim, **meta}


def recipe_config(args, node_target: str) -> dict:
    from tbotan import config as cfgmod

    config = cfgmod.load([Path(p) for p in args.config])
    config["model"]["node_target"] = node_target
    config["training"]["device"] = "cpu"
    config["training"]["seeds"] = [args.seed]
    return config


def with_epochs(config: dict, epochs: int) -> dict:
    """The recipe stretched or compressed to ``epochs``: the warm-ups keep their fraction."""
    from tbotan import config as cfgmod

    t = dict(config["training"])
    scale = epochs / t["epochs"]
    t.update(
        epochs=epochs,
        warmup_epochs=max(epochs, int(round(t["warmup_epochs"] * scale))),
        lr_warmup_epochs=t["lr_warmup_epochs"] * scale,
        checkpoint_every=epochs,
    )
    return cfgmod.validate({**config, "training": t})


def run_tbotan(args, node_target: str, train_files, test_file, folder: Path) -> dict:
    """Our recipe on ``node_target`` for ``args.budget`` CPU seconds (calibration included)."""
    import torch

    from tbotan.formats.dataset import DatasetFile
    from tbotan.learning.graphs import graph_from_dataset
    from tbotan.learning.inference import load_model, predict_graph
    from tbotan.learning.training import train

    config = recipe_config(args, node_target)
    torch.set_num_threads(args.threads)
    start, wall = time.process_time(), time.perf_counter()
    calibration = with_epochs(config, 2)
    run = train(
        calibration, train_files, [], folder / "calibration", seed=args.seed, progress=False
    )
    calibration_s = time.process_time() - start
    # CPU of one epoch: the calibration's CPU in the proportion of its second epoch's wall time
    # (the first builds the graphs); the rest of the calibration is the set-up of a training
    epoch_s = calibration_s * run.metrics[-1]["time_s"] / (time.perf_counter() - wall)
    setup_s = max(0.0, calibration_s - 2 * epoch_s)
    epochs = max(1, int((args.budget - calibration_s - setup_s) // epoch_s))
    recipe = with_epochs(config, epochs)
    train(recipe, train_files, [], folder / "model", seed=args.seed, progress=False)
    cpu_s = time.process_time() - start
    trained = load_model(folder / "model" / "model.pt", "cpu")
    data = graph_from_dataset(DatasetFile(test_file), 0, trained.variant, trained.node_target)
    node = predict_graph(trained, data)["cb"].astype(np.float64)
    return {"node": node, "epochs": epochs, "cpu_s": cpu_s, "calibration_s": calibration_s}


def run_ridge(node_target: str, train_files, test_file) -> dict:
    """The ridge baseline on ``node_target`` and its output on the test file."""
    from tbotan.formats.dataset import DatasetFile
    from tbotan.learning.baselines import (
        RADII,
        particle_descriptors,
        ridge_from_summary,
        structural_baselines,
        usable_radii,
    )

    start = time.process_time()
    result = structural_baselines(
        train_files, train_files, {"test": test_file}, node_target=node_target
    )
    entry = result[node_target]
    model = ridge_from_summary(entry)
    dataset = DatasetFile(test_file)
    conf = dataset.configuration(0, graphs=())
    radii = usable_radii(sorted(RADII), dataset.box_length)
    features = particle_descriptors(
        conf["thermal_positions"],
        conf["inherent_positions"],
        conf["types"],
        dataset.box_length,
        radii,
    ).features
    return {
        "node": model.predict(features),
        "cpu_s": time.process_time() - start,
        "reported": entry["per_temperature"]["test"]["mean"],
        "penalty": entry["penalty"],
    }


def row(split: str, test: int, model: str, target: str, cpu_s, epochs, rho: dict) -> dict:
    return {
        "split": split,
        "test": test,
        "model": model,
        "target": target,
        "cpu_s": None if cpu_s is None else round(float(cpu_s), 1),
        "epochs": epochs,
        "rho_propensity": round(rho["rho_propensity"], 4),
        "rho_cb": round(rho["rho_cb"], 4),
    }


def fold_rows(args, npz, datasets, train_idx, test_idx, out: Path) -> tuple[list[dict], dict]:
    """Every model of one split: table rows and details."""
    split = "train " + ",".join(map(str, train_idx)) + f" / test {test_idx}"
    train_files = [datasets[i] for i in train_idx]
    test_file = datasets[test_idx]
    labels = labels_of(test_file)
    folder = out / f"test{test_idx}"
    rows, details = [], {}

    pyg = run_pyg_botan(args, npz, train_idx, test_idx, folder / "pyg_botan")
    # pyg_botan's own node target against ours: the same particles in the same order
    details["pyg_botan_target_vs_ours_max_abs"] = float(
        np.max(np.abs(pyg["target"] - labels["propensity"]))
    )
    details["pyg_botan_torch_scatter_shim"] = pyg["shim"]
    details["pyg_botan_steps"] = pyg["steps"]
    rho = correlations(pyg["node"], labels)
    text = "propensity + edges (p = 0.4)"
    rows.append(row(split, test_idx, "pyg_botan", text, pyg["cpu_s"], pyg["epochs"], rho))
    for target, text in (("propensity", "propensity"), ("cb", "C_B")):
        tb = run_tbotan(args, target, train_files, test_file, folder / f"tbotan_{target}")
        details[f"tbotan_{target}_calibration_s"] = tb["calibration_s"]
        rho = correlations(tb["node"], labels)
        rows.append(row(split, test_idx, "tbotan", text, tb["cpu_s"], tb["epochs"], rho))
    for target, text in (("propensity", "propensity"), ("cb", "C_B")):
        ridge = run_ridge(target, train_files, test_file)
        rho = correlations(ridge["node"], labels)
        mine = rho["rho_propensity" if target == "propensity" else "rho_cb"]
        if abs(mine - ridge["reported"]) > 1e-6:  # rebuilt from its summary: the same model
            raise RuntimeError(f"ridge {target}: ρ {mine} differs from its own {ridge['reported']}")
        details[f"ridge_{target}_penalty"] = ridge["penalty"]
        rows.append(row(split, test_idx, "ridge", text, ridge["cpu_s"], None, rho))
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows, details


def summary_rows(rows: list[dict]) -> list[dict]:
    """Mean and worst (lowest ρ of the trained target's sign) over folds, per model."""
    out = []
    keys = list(dict.fromkeys((r["model"], r["target"]) for r in rows))
    for model, target in keys:
        rs = [r for r in rows if (r["model"], r["target"]) == (model, target)]
        main = "rho_cb" if target == "C_B" else "rho_propensity"
        worst = min(rs, key=lambda r: r[main])
        for name, pick in (("mean", None), ("worst", worst)):
            entry = {
                "split": f"{name} of {len(rs)} folds",
                "test": "–" if pick is None else pick["test"],
                "model": model,
                "target": target,
                "cpu_s": None,
                "epochs": None,
            }
            for k in ("rho_propensity", "rho_cb"):
                mean = round(float(np.mean([r[k] for r in rs])), 4)
                entry[k] = mean if pick is None else pick[k]
            out.append(entry)
    return out


def markdown(rows: list[dict]) -> str:
    def cell(column: str, v) -> str:
        if v is None:
            return "–"
        if column.startswith("rho_"):
            return f"{v:+.3f}"
        return f"{v:.0f}" if column == "cpu_s" else str(v)

    lines = [
        "| " + " | ".join(HEADER[c] for c in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(cell(c, r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), cpu
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyg-botan", required=True, help="a checkout of h3-Open-BDEC/pyg_botan")
    parser.add_argument("--data", required=True, help="folder of the BOTAN T = 0.44 .npz files")
    parser.add_argument("--out", required=True, help="output folder (tables, models, logs)")
    parser.add_argument(
        "--budget", type=float, default=300.0, help="CPU seconds of training per model"
    )
    parser.add_argument("--files", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--split", choices=["holdout", "loo"], default="holdout")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--datasets",
        default=None,
        help="folder of the imported dataset files botan_{i}.h5 (made when absent; default "
        "OUT/datasets)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--config", nargs="+", default=[str(ROOT / "config.yaml"), str(ROOT / "config/botan.yaml")]
    )
    args = parser.parse_args(argv)
    try:
        npz_files = check_inputs(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = machine()
    wall = time.time()
    npz = dict(zip(args.files, npz_files, strict=True))
    datasets = import_files(npz_files, args.files, Path(args.datasets or out / "datasets"))
    rows, details = [], {}
    for train_idx, test_idx in splits(args.files, args.split):
        fold, info = fold_rows(args, npz, datasets, train_idx, test_idx, out)
        rows += fold
        details[f"test{test_idx}"] = info
    if args.split == "loo":
        rows += summary_rows(rows)
    result = {
        "columns": list(COLUMNS),
        "rows": rows,
        "details": details,
        "budget_cpu_s": args.budget,
        "threads": args.threads,
        "split": args.split,
        "files": args.files,
        "pyg_botan": str(Path(args.pyg_botan).resolve()),
        "machine_at_start": started,
        "machine_at_end": machine(),
        "wall_s": round(time.time() - wall, 1),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    (out / "peer_botan.json").write_text(json.dumps(result, indent=1) + "\n")
    text = (
        "# Beside BOTAN's own code\n\n"
        f"{args.budget:g} CPU seconds of training per model on {args.threads} thread(s) of "
        f"{started['cpu']} (load average {started['load_average']} at the start); Pearson ρ "
        "over the type-A particles of the test configuration.\n\n"
    )
    (out / "peer_botan.md").write_text(text + markdown(rows))
    print(f"written {out / 'peer_botan.md'} and {out / 'peer_botan.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
