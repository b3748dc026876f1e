"""Cross-validation of a training recipe on the five public BOTAN configurations.

    python scripts/botan_folds.py --files f1.h5 ... f5.h5 --config config.yaml config/botan.yaml \
        --out DIR [--folds 1 2 3 4 5] [--curve]

Each fold trains on four files and tests on the fifth (``--folds``: which files to hold out);
``--curve`` instead trains on the first k = 1, 2, 3 of files 1-4 and tests on file 5 (the
learning curve).  Beside every network number: baseline (a), a ridge model on structural
descriptors (tbotan.learning.baselines) fitted on the same training files (penalty chosen on
them: there is no validation file to spare).  Prints one JSON line per training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def run(config, train_files, test_file, out: Path) -> dict:
    from tbotan.analysis.metrics import pearson
    from tbotan.formats.dataset import DatasetFile
    from tbotan.learning.baselines import structural_baselines
    from tbotan.learning.graphs import graph_from_dataset
    from tbotan.learning.inference import load_model
    from tbotan.learning.training import train

    start = time.time()
    train(config, train_files, [], out, seed=0, progress=False)
    seconds = time.time() - start
    trained = load_model(out / "model.pt", "cpu")
    data = graph_from_dataset(DatasetFile(test_file), 0, trained.variant)
    with torch.no_grad():
        pred = trained.model(data.x, data.edge_index, data.edge_attr)
    a = data.a_mask
    baseline = structural_baselines(train_files, train_files, {"test": test_file})
    return {
        "train": [Path(p).name for p in train_files],
        "test": Path(test_file).name,
        "pearson": round(float(pearson(pred.cb[a], data.y[a])), 4),
        "baseline_ridge": round(baseline["cb"]["per_temperature"]["test"]["mean"], 4),
        "t_pred": round(float(pred.t_pred), 4),
        "train_s": round(seconds, 1),
    }


def main() -> None:
    from tbotan import config as cfgmod

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs=5, required=True, help="BOTAN files 1-5 (imported)")
    parser.add_argument("--config", nargs="+", default=["config.yaml", "config/botan.yaml"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--folds", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--curve", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = cfgmod.load(args.config)
    files = [str(Path(f).resolve()) for f in args.files]
    out = Path(args.out)
    if args.curve:
        jobs = [(files[:k], files[4], out / f"curve{k}") for k in (1, 2, 3)]
    else:
        jobs = [
            ([f for i, f in enumerate(files, 1) if i != k], files[k - 1], out / f"fold{k}")
            for k in args.folds
        ]
    for train_files, test_file, folder in jobs:
        print(json.dumps(run(config, train_files, test_file, folder)), flush=True)


if __name__ == "__main__":
    main()
