"""Why a trained model's T_pred is off: its T head against structural and energy thermometers.

The measurements of docs/results.md §2.1 ("Why T_pred is high"), on a run's dataset files and
one trained model (``model.pt``, with its ``checkpoint.pt`` when present: the last epoch's
weights before the global refit).  Everything is decided on the training and validation
splits; the test split is read only with ``--test``.

* thermometers per (T, split, system): T read from U/N (quadratic fit on the training split,
  the summary's baseline) and from the mean squared thermal–inherent displacement (linear fit);
* the head's reading per (T, split) and the slope of reading against T over the training graphs
  (1 = unbiased; below 1 = pulled toward the middle of the trained range);
* leave-one-system-out (LOSO) T-RMSE over the training and validation graphs: the head refitted
  (``--refit-steps``) without the held-out system on the frozen trunk's pooled vectors, ridge
  probes of the pooled node states, and the U/N fit, all with the held-out system unseen.

    python scripts/t_head_diagnosis.py results/demo results/demo/models/is+ts_lg0.01_s0
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tbotan.formats.dataset import DatasetFile
from tbotan.learning.baselines import fit_temperature, particle_descriptors, predict_temperature
from tbotan.learning.graphs import graph_from_dataset
from tbotan.learning.inference import load_model

#: A fit: (features (C, ...), temperatures (C,)) -> a predictor of T from features.
Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def mean_squared_displacement(thermal: np.ndarray, inherent: np.ndarray, box: float) -> float:
    """Mean over particles of |r_thermal − r_inherent|² (σ²), minimum image in a cubic box."""
    d = np.asarray(thermal, float) - np.asarray(inherent, float)
    d -= box * np.round(d / box)
    return float((d * d).sum(axis=1).mean())


def reading_slope(readings: np.ndarray, temperature: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares line reading = a + b T: b = 1 for an unbiased thermometer."""
    b, a = np.polyfit(np.asarray(temperature, float), np.asarray(readings, float), 1)
    return float(a), float(b)


def leave_one_system_out(
    features: np.ndarray, temperature: np.ndarray, system: np.ndarray, fit: Fit
) -> tuple[float, dict[float, list[float]]]:
    """T-RMSE over all graphs, each predicted by ``fit`` on the other systems' graphs, and
    {T: [mean prediction / T of each held-out system]}."""
    errors, ratios = [], {}
    for s in np.unique(system):
        held = system == s
        predict = fit(features[~held], temperature[~held])
        t_pred = np.asarray(predict(features[held]), float)
        errors.append((t_pred - temperature[held]) ** 2)
        for t in np.unique(temperature[held]):
            at = temperature[held] == t
            ratios.setdefault(float(t), []).append(float(t_pred[at].mean() / t))
    return float(np.sqrt(np.concatenate(errors).mean())), ratios


def ridge_fit(penalty: float) -> Fit:
    """Ridge regression of T on standardised flattened features, intercept unpenalised."""

    def fit(x: np.ndarray, t: np.ndarray):
        x = x.reshape(len(x), -1)
        mu, sd = x.mean(0), x.std(0) + 1e-8

        def design(q):
            return np.c_[(q.reshape(len(q), -1) - mu) / sd, np.ones(len(q))]

        a = design(x)
        reg = penalty * np.eye(a.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(a.T @ a + reg, a.T @ t)
        return lambda q: design(q) @ w

    return fit


def last_step(fit: Fit) -> Fit:
    """``fit`` on the last message-passing step's pooled vectors of (G, M, H) features."""

    def fit_last(x: np.ndarray, t: np.ndarray):
        predict = fit(x[:, -1], t)
        return lambda q: predict(q[:, -1])

    return fit_last


def polynomial_fit(degree: int) -> Fit:
    """T as a polynomial of one scalar per graph (the summary's energy baseline)."""

    def fit(x: np.ndarray, t: np.ndarray):
        c = fit_temperature(x.ravel(), t, degree=degree)
        return lambda q: predict_temperature(c, q.ravel())

    return fit


def head_refit(model, state: dict, steps: int, lr: float = 1e-3) -> Fit:
    """The global head of ``state`` refitted for ``steps`` full-batch Adam steps on pooled
    vectors (M, G, H) stacked as (G, M, H), as ``tbotan.learning.global_refit`` does, without a
    validation selection."""

    def fit(x: np.ndarray, t: np.ndarray):
        dtype = model.target_scale.dtype
        pooled = torch.as_tensor(x, dtype=dtype).permute(1, 0, 2)
        target = torch.as_tensor(t, dtype=pooled.dtype)
        model.load_state_dict(state)
        model.set_global_statistics(pooled)
        params = [*model.global_mlp.parameters(), *model.global_decoder.parameters()]
        optimizer = torch.optim.Adam(params, lr=lr)
        scale = model.target_scale[2].detach()
        for _ in range(steps):
            optimizer.zero_grad()
            ((model.global_head(pooled) - target) / scale).square().mean().backward()
            optimizer.step()
        fitted = copy.deepcopy(model.state_dict())

        def predict(q):
            model.load_state_dict(fitted)
            with torch.no_grad():
                pooled_q = torch.as_tensor(q, dtype=dtype).permute(1, 0, 2)
                return model.global_head(pooled_q).double().numpy()

        return predict

    return fit


def read_run(run: Path, model_dir: Path, splits: tuple[str, ...]) -> dict:
    """Per graph: T, split, system, U/N, MSD(TS−IS), pooled vectors (M, H) and the saved head's
    T_pred, over the dataset files of ``splits``."""
    tm = load_model(model_dir / "model.pt", "cpu")
    rows = {k: [] for k in ("T", "split", "system", "u", "msd", "pooled", "t_pred")}
    for split in splits:
        for path in sorted((run / "datasets").glob(f"T*_{split}.h5")):
            ds = DatasetFile(path)
            for c in range(ds.n_configurations):
                conf = ds.configuration(c, graphs=(), extras=True)
                th, ih = conf["thermal_positions"], conf["inherent_positions"]
                u = particle_descriptors(th, ih, conf["types"], ds.box_length, (1.0,))
                d = graph_from_dataset(ds, c, tm.variant)
                with torch.no_grad():
                    pooled = tm.model.pooled_states(d.x, d.edge_index, d.edge_attr)
                    t_pred = float(tm.model.global_head(pooled)[0])
                rows["T"].append(ds.temperature)
                rows["split"].append(split)
                rows["system"].append(int(conf["origin"][0]))
                rows["u"].append(u.thermal_energy)
                rows["msd"].append(mean_squared_displacement(th, ih, ds.box_length))
                rows["pooled"].append(pooled[:, 0].double().numpy())
                rows["t_pred"].append(t_pred)
    return {k: np.asarray(v) for k, v in rows.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run's directory (with datasets/)")
    parser.add_argument("model", type=Path, help="the model's directory (model.pt)")
    parser.add_argument("--test", action="store_true", help="also read the test split")
    parser.add_argument("--refit-steps", type=int, default=500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    splits = ("train", "validation") + (("test",) if args.test else ())
    r = read_run(args.run, args.model, splits)
    train = r["split"] == "train"
    fits = {  # column: T read from it, fitted on the training split
        "u": fit_temperature(r["u"][train], r["T"][train], degree=2),
        "msd": fit_temperature(r["msd"][train], r["T"][train], degree=1),
    }
    print("| T | split | system | n | T(U/N)/T | T(MSD)/T | T_pred/T |")
    print("|---|---|---|---|---|---|---|")
    for t, split, s in sorted(set(zip(r["T"], r["split"], r["system"], strict=True))):
        g = (r["T"] == t) & (r["split"] == split) & (r["system"] == s)
        u, msd = (predict_temperature(fits[k], r[k][g]).mean() / t for k in ("u", "msd"))
        print(
            f"| {t:.2f} | {split} | {s} | {g.sum()} | {u:.3f} | {msd:.3f} "
            f"| {r['t_pred'][g].mean() / t:.3f} |"
        )
    a, b = reading_slope(r["t_pred"][train], r["T"][train])
    print(f"\nhead reading = {a:.4f} + {b:.4f} T on the training graphs (1 = unbiased)")
    seen = np.isin(r["split"], ("train", "validation"))
    x, t, s = r["pooled"][seen], r["T"][seen], r["system"][seen]
    tm = load_model(args.model / "model.pt", "cpu")
    state = copy.deepcopy(tm.model.state_dict())
    checkpoint = args.model / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)["model"]
    probes = {
        "joint head (readout statistics refreshed)": head_refit(tm.model, state, 0),
        f"head refitted {args.refit_steps} steps": head_refit(tm.model, state, args.refit_steps),
        "ridge, last step's pooled vector (penalty 100)": last_step(ridge_fit(100.0)),
        "ridge, all steps' pooled vectors (penalty 100)": ridge_fit(100.0),
    }
    print("\nleave-one-system-out over the training and validation graphs:")
    for name, fit in probes.items():
        rmse, ratios = leave_one_system_out(x, t, s, fit)
        print(f"  {name}: T-RMSE {rmse:.4f}, T_pred/T per held-out system {_fmt(ratios)}")
    rmse, ratios = leave_one_system_out(r["u"][seen], t, s, polynomial_fit(2))
    print(f"  T from U/N (quadratic): T-RMSE {rmse:.4f}, per held-out system {_fmt(ratios)}")
    return 0


def _fmt(ratios: dict[float, list[float]]) -> str:
    return "; ".join(f"{t:.2f}: " + ", ".join(f"{v:.3f}" for v in vs) for t, vs in ratios.items())


if __name__ == "__main__":
    raise SystemExit(main())
