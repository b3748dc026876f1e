"""The paper's findings, read from a run's summary.json, as a Markdown table.

    python scripts/findings.py results/demo/analysis/summary.json [--low-q 3]

Per test temperature (* never trained on): node Pearson ρ(C_B) over A particles of the main
model and of the ridge baseline (margin = the difference), mean T_pred and T_pred/T_MD beside
the fit of T on U/N, the low-q amplitude of S_B(q) predicted / MD (mean over the `--low-q`
smallest wave numbers; the paper's Fig. 3 shows the prediction's amplitude below MD's), the
embedding distance D(T_i, T_j) to the neighbouring temperatures, and ρ of every other model.
Nothing is recomputed: every number is summary.json's (`tbotan figures` writes it).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def findings(summary: dict, low_q: int = 3) -> str:
    main = summary["main_group"]
    temps = summary["temperatures"]
    labels = [t["label"] for t in temps]
    group = summary["groups"][main]
    rows = []
    head = [
        "T",
        "node ρ",
        "ridge ρ",
        "margin",
        "T_pred (T_pred/T_MD)",
        "T from U/N",
        f"S_B low-q pred/MD ({low_q} q)",
        "D to next T",
    ]
    others = [g for g in summary["groups"] if g != main]
    head += [f"ρ `{g}`" for g in others]
    dist = np.array(summary["embedding_distance"][main]["D"])
    for i, t in enumerate(temps):
        lab = t["label"]
        g = group["per_temperature"][lab]
        rho, base = g["pearson_node"]["mean"], g["baseline_pearson_cb"]["mean"]
        tp, fit = g["t_pred"]["mean"], g["baseline_t_pred"]["mean"]
        sb = summary["sb"][lab]
        pred = np.array(sb["prediction"][main]["mean"][:low_q])
        md = np.array(sb["md"][:low_q])
        nxt = f"{dist[i, i + 1]:.2f}" if i + 1 < len(temps) else "–"
        row = [
            lab + ("" if t["trained"] else "*"),
            f"{rho:.3f}",
            f"{base:.3f}",
            f"{rho - base:+.3f}",
            f"{tp:.3f} ({tp / t['T']:.3f})",
            f"{fit:.3f}",
            f"{float(np.mean(pred / md)):.2f}",
            nxt,
        ]
        row += [
            f"{summary['groups'][o]['per_temperature'][lab]['pearson_node']['mean']:.3f}"
            for o in others
        ]
        rows.append(row)
    out = [
        f"main model `{main}`, {summary['split']} split, temperatures {', '.join(labels)}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("summary")
    ap.add_argument("--low-q", type=int, default=3)
    args = ap.parse_args(argv)
    with open(args.summary) as fh:
        print(findings(json.load(fh), args.low_q))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
