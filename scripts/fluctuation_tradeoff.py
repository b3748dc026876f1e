"""Node ρ against the amplitude of the predicted fluctuations, for trained models on one file.

    python scripts/fluctuation_tradeoff.py --dataset f5.h5 --models m/p1/model.pt m/w1/model.pt \
        [--config config.yaml] [--low-q 3]

For every model: its second phase (``training.fluctuation_phase`` as recorded in model.pt,
"-" for a point-loss model), the node Pearson ρ over type-A particles (mean over the file's
configurations), Var(ŷ)/Var(y) over type-A particles, and the ratio of the predicted to MD
S_B(q) (paper Eq. 10, tbotan.analysis.structure_factor; both fields on the same positions,
mean-subtracted and not rescaled, as the run analysis does) summed over the ``--low-q``
smallest |q| bins (the bins of ``analysis.sb_q_max`` and ``analysis.sb_bin_width``), after
averaging over configurations.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def evaluate(model_path: Path, dataset: Path, analysis: dict, low_q: int) -> dict:
    """ρ, variance ratio and low-q S_B ratio of one model on ``dataset`` (see the module)."""
    import torch

    from tbotan.analysis.metrics import node_pearson
    from tbotan.analysis.structure_factor import four_point_structure_factor
    from tbotan.formats.dataset import DatasetFile
    from tbotan.formats.predictions import read_predictions
    from tbotan.learning.inference import load_model, predict_dataset

    content = DatasetFile(dataset).load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.h5"
        predict_dataset(load_model(model_path, "cpu"), dataset, out)
        predicted = np.asarray(read_predictions(out, DatasetFile(dataset)).cb, dtype=np.float64)
    md = np.asarray(content.cb, dtype=np.float64)
    a = content.types == 0
    var_ratio = [np.var(predicted[c][a[c]]) / np.var(md[c][a[c]]) for c in range(len(md))]
    sb = four_point_structure_factor(
        content.thermal_positions,
        np.stack([md, predicted]),
        content.types,
        float(content.attrs["box_length"]),
        analysis["sb_q_max"],
        analysis["sb_bin_width"],
    )
    md_sb, pred_sb = sb.mean[0][:low_q], sb.mean[1][:low_q]
    meta = torch.load(model_path, weights_only=True, map_location="cpu")
    return {
        "model": str(model_path),
        "phase2": meta.get("fluctuation_phase", {}),
        "rho": float(np.mean(node_pearson(predicted, md, content.types))),
        "var_ratio": float(np.mean(var_ratio)),
        "sb_ratio": float(pred_sb.sum() / md_sb.sum()),
        "q": sb.q[:low_q].tolist(),
    }


def main(argv=None) -> int:
    from tbotan import config as cfgmod

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, type=Path, help="dataset file to score on")
    parser.add_argument("--models", nargs="+", required=True, type=Path, help="model.pt files")
    parser.add_argument("--config", nargs="*", default=[], help="configuration (analysis.*)")
    parser.add_argument("--low-q", type=int, default=3, help="smallest |q| bins summed")
    args = parser.parse_args(argv)
    if args.config:
        config = cfgmod.load(args.config, check_engine=False)
    else:
        config = cfgmod.validate({}, check_engine=False)
    rows = [evaluate(m, args.dataset, config["analysis"], args.low_q) for m in args.models]
    q = ", ".join(f"{v:.2f}" for v in rows[0]["q"])
    print(
        f"| model | phase 2 (epochs, lr factor, w_var, w_corr) | node ρ (A) | Var ratio | "
        f"S_B ratio, q = {q} |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        p = r["phase2"]
        phase2 = (
            f"{p['epochs']}, {p['learning_rate_factor']}, {p['w_var']}, {p['w_corr']}" if p else "-"
        )
        print(
            f"| {r['model']} | {phase2} | {r['rho']:.3f} | {r['var_ratio']:.2f} | "
            f"{r['sb_ratio']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
