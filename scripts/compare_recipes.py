"""Train T-BOTAN with one training recipe on a run's datasets and score it on the test split.

The measurements of docs/results.md ("Learning recipe") were made with this script:

    python scripts/compare_recipes.py NAME 'JSON overlay' [--run results/demo] [--out DIR]
    python scripts/compare_recipes.py --plot DIR/*/metrics.csv --output figure.png

The overlay (``{"training": {...}, "model": {...}}``) is applied on top of ``config.yaml`` and
``<run>/config.yaml``-equivalent overlays given by ``--config``; the model is trained on every
``*_train.h5`` with every ``*_validation.h5`` as validation (model selection only when the
overlay asks for it), then evaluated on every ``*_test.h5``: mean node Pearson over type-A
particles per configuration and mean T_pred, per temperature, printed as one JSON line.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np
import torch


def train_and_score(args) -> dict:
    from tbotan import config as cfgmod
    from tbotan.analysis.metrics import pearson
    from tbotan.formats.dataset import DatasetFile
    from tbotan.learning.graphs import graph_from_dataset
    from tbotan.learning.inference import load_model
    from tbotan.learning.training import train

    overlay = json.loads(args.overlay)
    config = cfgmod.load(args.config)
    config["training"].update(overlay.get("training", {}))
    config["model"].update(overlay.get("model", {}))
    config = cfgmod.validate(config)
    datasets = Path(args.run) / "datasets"
    train_files = sorted(glob.glob(str(datasets / "*_train.h5")))
    validation_files = sorted(glob.glob(str(datasets / "*_validation.h5")))
    out = Path(args.out) / args.name
    start = time.time()
    result = train(config, train_files, validation_files, out, seed=args.seed, progress=False)
    summary = {"name": args.name, "overlay": overlay, "train_s": round(time.time() - start, 1)}
    trained = load_model(out / "model.pt", "cpu")
    summary["epoch_kept"] = trained.meta["epoch"]
    for path in sorted(glob.glob(str(datasets / "*_test.h5"))):
        dataset = DatasetFile(path)
        rhos, t_preds = [], []
        for c in range(dataset.n_configurations):
            data = graph_from_dataset(dataset, c, trained.variant)
            with torch.no_grad():
                out_c = trained.model(data.x, data.edge_index, data.edge_attr)
            a = data.a_mask
            rhos.append(float(pearson(out_c.cb[a], data.y[a])))
            t_preds.append(float(out_c.t_pred))
        summary[f"T{dataset.temperature:.2f}"] = {
            "pearson": round(float(np.mean(rhos)), 3),
            "t_pred": round(float(np.mean(t_preds)), 3),
        }
    summary["validation_curve"] = [
        [
            row["epoch"],
            round(row.get("val_pearson", float("nan")), 3),
            round(row.get("val_t_rmse", float("nan")), 3),
        ]
        for row in result.metrics
    ]
    return summary


def plot(paths: list[str], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tbotan.formats.model_file import read_metrics_rows as read_metrics

    fig, (ax_r, ax_t) = plt.subplots(1, 2, figsize=(9, 3.4))
    for path in paths:
        rows = read_metrics(path)
        label = Path(path).parent.name
        epochs = [r["epoch"] for r in rows]
        ax_r.plot(epochs, [r["val_pearson"] for r in rows], marker="o", ms=3, label=label)
        ax_t.plot(epochs, [r["val_t_rmse"] for r in rows], marker="o", ms=3, label=label)
    ax_r.set(xlabel="epoch", ylabel="validation Pearson ρ(C_B), A")
    ax_t.set(xlabel="epoch", ylabel="validation RMSE of T_pred", yscale="log")
    ax_r.axhline(0, color="grey", lw=0.5)
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(output, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?")
    parser.add_argument("overlay", nargs="?", default="{}")
    parser.add_argument("--run", default="results/demo")
    parser.add_argument("--config", nargs="+", default=["config.yaml", "config/demo.yaml"])
    parser.add_argument("--out", default="/tmp/tbotan-recipes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", nargs="+", help="metrics.csv files to draw instead")
    parser.add_argument("--output", default="recipes.png")
    args = parser.parse_args()
    if args.plot:
        plot(args.plot, args.output)
        return
    torch.set_num_threads(args.threads)
    print(json.dumps(train_and_score(args)))


if __name__ == "__main__":
    main()
