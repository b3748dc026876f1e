"""T-BOTAN training on mixed temperatures (docs/physics.md §8), with checkpoints and exact resume.

Every epoch visits all training configurations of all training files (any mix of
temperatures) once, in an order shuffled by ``(seed, epoch)``, ``batch_size`` configurations
per optimiser step (1, the paper's setting, by default; the loss of a step is the mean of its
configurations' losses, pooling is per graph).  The octahedral augmentation of configuration k
of step s is drawn from ``(seed, epoch, s)`` (batch 1) or ``(seed, epoch, s, k)``.  Adam with
the learning rate of ``lr_schedule`` (constant, or warm-up then cosine decay, a pure function
of the step, so resuming needs no scheduler state), global gradient-norm clip (``grad_clip``),
loss weights from :func:`tbotan.learning.losses.loss_weights` (warm-up of L_Var and L_Corr).

Before the first step (``normalize_targets``), the targets and edge inputs are standardised
with training-set statistics (:func:`standardization_from_data`, stored in the model's
buffers), and the running statistics of a standardised global readout are initialised from
training graphs.  After each epoch the model is evaluated on the validation files (Pearson of
predicted vs true C_B over type-A particles, Var(predicted)/Var(true), mean T_pred and its
RMSE, per temperature, and every loss term) and one row is appended to ``metrics.live.csv``
(progress); ``select_model: val_objective`` keeps the weights of the epoch with the lowest
validation objective for ``model.pt``.

``training.fluctuation_phase`` (docs/physics.md §8.6) adds a second phase after
``training.epochs``: from the weights ``select_model`` keeps, a fresh Adam at a constant, lower
rate, L_Var and L_Corr in the loss; its epochs are numbered on (column ``phase`` = 2), its last
epoch is the model.

Output folder (docs/formats.md): ``checkpoint.pt`` every ``checkpoint_every`` epochs, at the
end, after ``checkpoint_interval_minutes`` of wall time and on SIGTERM/SIGUSR1 (model,
optimiser, epoch, RNG states, configuration, variant, λ_g, seed, the metrics so far and the best
epoch's weights; written atomically); at the end ``metrics.csv``, written atomically from the
checkpoint's history (so a retried job whose metrics.csv was deleted, as Snakemake does before
every attempt, still gets every epoch once), and ``model.pt`` (configuration, variant and
weights: all that ``tbotan predict`` needs).  ``resume=True`` continues from
``checkpoint.pt``; on the CPU the result is bit-identical to an uninterrupted run (tested).  On
CUDA, scatter sums use atomics, so runs
agree only to rounding.

A non-finite loss or gradient stops training with :class:`TrainingError` naming the epoch,
the step, the file and the configuration.

The parts of a training, by job: :class:`Trainer` (here: the set-up, one epoch, validation,
the run), :mod:`tbotan.learning.feeder` (the graphs, their caches on the host and the device),
:mod:`tbotan.learning.checkpoint` (``checkpoint.pt``: writing, compatibility, resuming),
:mod:`tbotan.learning.global_refit` (the global head refitted on the final trunk, a step of
the run after the last epoch) and :mod:`tbotan.resumable` (stop signals and the wall-clock
checkpoint interval, shared with the MD protocols).
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tbotan import config as cfgmod
from tbotan.analysis.metrics import pearson
from tbotan.devices import BF16_CPU_FLAGS, native_bf16, resolve_device
from tbotan.errors import InputError
from tbotan.formats.io_utils import remove_quietly
from tbotan.formats.model_file import (
    CHECKPOINT_NAME,
    FILE_VERSION,
    METRICS_NAME,
    MODEL_FORMAT,
    MODEL_NAME,
    ModelFileError,
    append_metrics,
    atomic_save,
    write_metrics,
)
from tbotan.learning.checkpoint import (
    TrainingCheckpoint,
    TrainingProgress,
    resumable_keys,
)
from tbotan.learning.feeder import GraphFeeder, resolve_cache_mode
from tbotan.learning.global_refit import refit_global
from tbotan.learning.graphs import (
    GraphDataset,
    check_variant,
    octahedral_augment,
    octahedral_operation,
)
from tbotan.learning.losses import (
    TERMS,
    TargetScales,
    check_box,
    loss_weights,
    tbotan_losses,
    variance,
)
from tbotan.learning.model import TBotan
from tbotan.names import validation_column
from tbotan.physics import kalj
from tbotan.progress import progress_message
from tbotan.resumable import ResumableLoop

log = logging.getLogger(__name__)

#: The rows so far while training runs (not an output: metrics.csv is written at the end).
METRICS_LIVE_NAME = "metrics.live.csv"


class TrainingError(InputError, RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint, ...)."""


class IncompatibleCheckpoint(TrainingError):
    """``checkpoint.pt`` was written by a training with other settings: it cannot be resumed."""


def tune_cpu_allocator() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the system.

    Every (E, H) activation of an N = 4096 graph is ≈ 43 MB, above glibc's mmap threshold, so
    by default each is a fresh ``mmap`` whose pages fault in one by one; this made elementwise
    operations 5× slower on the CPU.  ``mallopt(M_MMAP_MAX, 0)`` and a large
    ``M_TRIM_THRESHOLD`` make the process reuse its heap.  Returns whether it was applied
    (glibc only; a no-op elsewhere).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1
        ok &= libc.mallopt(m_trim_threshold, 2**30) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global generator, for user code)
    torch.manual_seed(seed)


def training_data_summary(dataset: GraphDataset) -> dict:
    """What the model was trained on, for ``tbotan predict``'s applicability check.

    Returns:
        ``n_particles`` (sorted distinct N), ``density`` (min, max of N/L³) and ``fraction_a``
        (min, max of the fraction of type-A particles) over the training files.
    """
    sizes, densities, fractions = set(), [], []
    for f in dataset.files:
        n = f.n_particles
        sizes.add(int(n))
        densities.append(n / f.box_length**3)
        types = f.configuration(0, graphs=())["types"]
        fractions.append(float(np.mean(types == kalj.TYPE_A)))
    return {
        "n_particles": sorted(sizes),
        "density": [float(min(densities)), float(max(densities))],
        "fraction_a": [float(min(fractions)), float(max(fractions))],
    }


def standardization_from_data(graphs: Sequence) -> dict:
    """Shifts and scales of the edge inputs and targets over a training set.

    Edge inputs: the relative vectors (features 0–2) get shift 0 and one common scale, their
    root-mean-square component, so that standardisation commutes with the octahedral
    augmentation; any further feature (the thermal distance of ``is+ts``) its mean and
    standard deviation.  Targets: mean and standard deviation of C_B over every particle, of
    E_jk over every edge, and of T over the configurations (scale 1 when all share one T).
    Accumulated in float64.

    Args:
        graphs: the training graphs, indexable (a :class:`~tbotan.learning.feeder.GraphFeeder`
            or a :class:`~tbotan.learning.graphs.GraphDataset`).

    Returns:
        Keyword arguments of :meth:`tbotan.learning.model.TBotan.set_standardization`.
    """
    n_features = None
    moments = {}

    def add(name, values):
        v = values.detach().double().reshape(values.shape[0], -1)
        s = moments.setdefault(name, [0, torch.zeros(v.shape[1], dtype=torch.float64), None])
        s[0] += v.shape[0]
        s[1] += v.sum(0)
        s[2] = v.square().sum(0) if s[2] is None else s[2] + v.square().sum(0)

    for i in range(len(graphs)):
        data = graphs[i]
        n_features = data.edge_attr.shape[1]
        add("edge_attr", data.edge_attr)
        add("cb", data.y[:, None])
        add("edge", data.y_edge[:, None])
        add("t", data.temperature[:1, None])

    def mean_std(name):
        n, s1, s2 = moments[name]
        mean = s1 / n
        return mean, (s2 / n - mean.square()).clamp(min=0).sqrt()

    f_mean, f_std = mean_std("edge_attr")
    _, s2 = moments["edge_attr"][1], moments["edge_attr"][2]
    vector_rms = float((s2[:3].sum() / (3 * moments["edge_attr"][0])).sqrt())
    edge_shift = torch.zeros(n_features, dtype=torch.float64)
    edge_scale = torch.full((n_features,), vector_rms, dtype=torch.float64)
    edge_shift[3:], edge_scale[3:] = f_mean[3:], f_std[3:]
    target_shift, target_scale = [], []
    for name in ("cb", "edge", "t"):
        mean, std = mean_std(name)
        target_shift.append(float(mean[0]))
        target_scale.append(float(std[0]) if float(std[0]) > 1e-6 else 1.0)
    edge_scale = torch.where(edge_scale > 1e-12, edge_scale, torch.ones_like(edge_scale))
    return dict(
        edge_shift=edge_shift,
        edge_scale=edge_scale,
        target_shift=target_shift,
        target_scale=target_scale,
    )


# ---------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model_id: str
    out_dir: Path
    epochs: int
    metrics: list[dict] = field(default_factory=list)
    model_path: Path | None = None


def metrics_columns(temperature_labels: Sequence[str]) -> list[str]:
    """Columns of metrics.csv: docs/formats.md's, then the extra ones of this implementation."""
    columns = ["epoch", "time_s", *TERMS, "w_var", "w_corr", "lr"]
    for label in temperature_labels:
        columns += [validation_column("pearson", label), validation_column("t_pred", label)]
    columns += ["elapsed_s", "lambda_global", "grad_norm"]
    columns += [validation_column(term) for term in TERMS]
    columns += [validation_column(q) for q in ("pearson", "t_rmse", "objective")]
    for label in temperature_labels:
        columns += [validation_column("pearson_edge", label)]
        columns += [validation_column(term, label) for term in TERMS]
    columns += ["phase", validation_column("var_ratio")]
    columns += [validation_column("var_ratio", label) for label in temperature_labels]
    return columns


class Trainer:
    """Training of one model (one variant, λ_g and seed); see :func:`train`."""

    def __init__(
        self,
        config: dict,
        train_files: Sequence[str | os.PathLike],
        validation_files: Sequence[str | os.PathLike],
        out_dir: str | os.PathLike,
        *,
        variant: str | None = None,
        lambda_global: float | None = None,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        config = cfgmod.validate(config, check_engine=False)  # training runs no MD
        self.variant = check_variant(variant or config["model"]["variant"])
        self.lambda_global = float(
            config["training"]["lambda_global"] if lambda_global is None else lambda_global
        )
        config["model"]["variant"] = self.variant
        config["training"]["lambda_global"] = self.lambda_global
        self.config = config
        self.training = config["training"]
        self.seed = int(seed)
        self.model_id = cfgmod.model_id(check_variant(self.variant), self.lambda_global, self.seed)
        self.out_dir = Path(out_dir)
        self.device = resolve_device(device or self.training["device"])
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self.train_files = [str(Path(p).resolve()) for p in train_files]
        self.validation_files = [str(Path(p).resolve()) for p in validation_files]
        target = config["model"]["node_target"]
        self.train_set = GraphDataset(self.train_files, self.variant, target)
        self.val_set = (
            GraphDataset(self.validation_files, self.variant, target)
            if self.validation_files
            else None
        )
        self.val_labels = (
            [cfgmod.temperature_label(t) for t in self.val_set.temperatures()]
            if self.val_set
            else []
        )
        self.columns = metrics_columns(self.val_labels)
        for ds in [self.train_set] + ([self.val_set] if self.val_set else []):
            for f in ds.files:
                try:
                    check_box(self.training["corr_distances"], f.box_length, str(f.path))
                except ValueError as exc:
                    raise TrainingError(str(exc)) from None
        cache = resolve_cache_mode(self.training["cache_graphs"], self.device)
        workers = self.training["num_workers"]
        self.train_graphs = GraphFeeder(self.train_set, self.device, cache, workers)
        self.val_graphs = (
            GraphFeeder(self.val_set, self.device, cache, workers) if self.val_set else None
        )

        seed_everything(self.seed)
        self.model = TBotan.from_config(config, self.variant).to(self.device)
        self.normalize = bool(self.training["normalize_targets"])
        if self.normalize:
            self.model.set_standardization(**standardization_from_data(self.train_graphs))
        if self.model.global_readout == "standardized":
            calibration = [self.train_graphs.sample(i) for i in range(min(len(self.train_set), 64))]
            self.model.calibrate_global((d.x, d.edge_index, d.edge_attr) for d in calibration)
        self.scales = self._target_scales()
        self.select = self.training["select_model"]
        if self.select != "last" and self.val_set is None:
            log.warning(
                "select_model %r needs validation files; keeping the last epoch", self.select
            )
            self.select = "last"
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.training["learning_rate"]
        )
        self.forward = self.model
        if self.training["compile"]:
            self.forward = torch.compile(self.model, dynamic=True)
        self.amp = bool(self.training["amp"]) and native_bf16(self.device)
        if self.training["amp"] and not self.amp:
            log.warning(
                "training.amp: %s has no native bf16 (CUDA with bf16, or a CPU with %s); "
                "training in float32",
                self.device,
                " or ".join(BF16_CPU_FLAGS),
            )
        self.progress = TrainingProgress()
        self.checkpoint = TrainingCheckpoint(
            self.out_dir / CHECKPOINT_NAME, self._identity(), resumable_keys(self.training)
        )

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return self.progress.epoch

    @property
    def metrics(self) -> list[dict]:
        """The metrics rows of the epochs done."""
        return self.progress.metrics

    @property
    def total_epochs(self) -> int:
        """Epochs of both phases: ``training.epochs`` + ``fluctuation_phase.epochs``."""
        return self.training["epochs"] + self.training["fluctuation_phase"]["epochs"]

    def _target_scales(self) -> TargetScales | None:
        """The loss scales of the standardised targets (None: the paper's losses)."""
        if not self.normalize:
            return None
        scale = self.model.target_scale.detach().cpu()
        return TargetScales(edge=float(scale[1]), temperature=float(scale[2]))

    # ------------------------------------------------------------ files
    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint.path

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / METRICS_NAME

    @property
    def live_metrics_path(self) -> Path:
        return self.out_dir / METRICS_LIVE_NAME

    def _identity(self) -> dict:
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "lambda_global": self.lambda_global,
            "seed": self.seed,
            "config": self.config,
            "hparams": dict(self.model.hparams),
            "train_files": self.train_files,
            "validation_files": self.validation_files,
        }

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` (:class:`~tbotan.learning.checkpoint.TrainingCheckpoint`)."""
        self.checkpoint.save(self.progress, self.model, self.optimizer)

    def resume(self) -> bool:
        """Continue from ``checkpoint.pt`` if there is one; returns whether it did.

        Raises:
            IncompatibleCheckpoint: the file is no checkpoint, or one of another training.
        """
        try:
            saved = self.checkpoint.read()
        except ModelFileError as exc:  # garbage or foreign file: not a resumable training
            raise IncompatibleCheckpoint(str(exc)) from None
        if saved is None:
            return False
        problem = self.checkpoint.problem(saved)
        if problem is not None:
            raise IncompatibleCheckpoint(problem)
        self.progress = self.checkpoint.restore(
            saved, self.model, self.optimizer, (self.live_metrics_path, self.metrics_path)
        )
        self.scales = self._target_scales()
        write_metrics(self.live_metrics_path, self.columns, self.metrics)
        log.info("resumed %s from epoch %d", self.model_id, self.epoch)
        return True

    def selected_weights(self) -> tuple[int, dict]:
        """(epoch, weights) of the model that ``select_model`` keeps: the epoch with the lowest
        validation objective (``val_objective``), or the last epoch; after a second phase, its
        last epoch."""
        best = self.progress.best
        if self.select != "last" and best and self.progress.phase == 1:
            return int(best["epoch"]), best["state_dict"]
        return self.epoch, self.model.state_dict()

    def save_model(self, state_dict: dict, epoch: int, global_refit: dict) -> Path:
        """Write ``model.pt``: ``state_dict``, the weights of ``epoch`` (with the record of
        their global refit, ``{}`` without one), and what inference needs to know of the
        training; returns its path."""
        from tbotan.formats.dataset import git_commit, package_versions

        path = self.out_dir / MODEL_NAME
        atomic_save(
            {
                "format": MODEL_FORMAT,
                "version": FILE_VERSION,
                **self._identity(),
                "epoch": epoch,
                "epochs_trained": self.epoch,
                "select_model": self.select,
                "fluctuation_phase": self._phase2_record(),
                "training_temperatures": self.train_set.temperatures(),
                "training_data": training_data_summary(self.train_set),
                "state_dict": state_dict,
                "global_refit": global_refit,
                "git_commit": git_commit() or "",
                "package_versions": package_versions(),
            },
            path,
        )
        return path

    def _phase2_record(self) -> dict:
        """What model.pt records of the second phase: ``{}`` without one, else its settings
        and ``from_epoch``, the first-phase epoch it started from."""
        if self.progress.phase != 2:
            return {}
        return {**self.training["fluctuation_phase"], "from_epoch": self.progress.phase1_epoch}

    def start_fluctuation_phase(self) -> None:
        """Begin the second phase (docs/physics.md §8.6): the weights that ``select_model``
        keeps of the first phase, a fresh Adam at the second phase's rate."""
        epoch, state_dict = self.selected_weights()
        self.model.load_state_dict(state_dict)
        phase2 = self.training["fluctuation_phase"]
        lr = float(self.training["learning_rate"]) * float(phase2["learning_rate_factor"])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.progress.phase, self.progress.phase1_epoch = 2, epoch
        progress_message(
            f"{self.model_id}: phase 2 (fluctuations) from epoch {epoch}: "
            f"{phase2['epochs']} epochs, lr {lr:.3g}, w_var {phase2['w_var']}, "
            f"w_corr {phase2['w_corr']}"
        )

    def learning_rate(self, epoch: int, step: int, steps: int) -> float:
        """Rate of optimiser step ``step`` (0-based) of ``steps`` in 1-based ``epoch``: the
        schedule of the first phase, or the second phase's constant rate."""
        base = float(self.training["learning_rate"])
        if epoch > self.training["epochs"]:
            return base * float(self.training["fluctuation_phase"]["learning_rate_factor"])
        if self.training["lr_schedule"] == "constant":
            return base
        t = (epoch - 1) + (step + 1) / steps  # epochs done after this step
        warm = float(self.training["lr_warmup_epochs"])
        if t <= warm:
            return base * t / warm
        final = float(self.training["lr_final_factor"])
        x = min(max((t - warm) / max(self.training["epochs"] - warm, 1e-12), 0.0), 1.0)
        return base * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * x)))

    # ------------------------------------------------------------ one epoch
    def _losses(self, data, weights):
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.forward(data.x, data.edge_index, data.edge_attr)
        return out, self.loss_terms(out, data, weights)

    def loss_terms(self, out, data, weights) -> dict[str, torch.Tensor]:
        """The loss terms of one graph's outputs, with this training's settings."""
        return tbotan_losses(
            out,
            data,
            weights,
            distances=self.training["corr_distances"],
            block_rows=self.training["corr_block_rows"],
            scales=self.scales,
            mse_mean_weight=self.training["mse_mean_weight"],
        )

    def batch_losses(self, graphs: Sequence, weights, batched: bool | None = None):
        """Loss terms of one optimiser step: the mean over ``graphs`` of each graph's terms.

        One graph goes through the model alone (the paper's step); several (or ``batched``)
        as one PyG batch, with per-graph pooling, and each graph's terms computed on its own
        slice of the outputs.  Returns ``(outputs per graph, terms)``.
        """
        if len(graphs) == 1 and not batched:
            out, terms = self._losses(graphs[0], weights)
            return [out], terms
        from torch_geometric.data import Batch

        from tbotan.learning.model import TBotanOutput

        batch = Batch.from_data_list(list(graphs))
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.forward(
                batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs
            )
        outputs, per_graph = [], []
        n0 = e0 = 0
        for k, data in enumerate(graphs):
            n1, e1 = n0 + data.num_nodes, e0 + data.edge_index.shape[1]
            o = TBotanOutput(out.cb[n0:n1], out.edge[e0:e1], out.t_pred[k], out.embedding[k])
            outputs.append(o)
            per_graph.append(self.loss_terms(o, data, weights))
            n0, e0 = n1, e1
        terms = {t: torch.stack([p[t] for p in per_graph]).mean() for t in TERMS}
        return outputs, terms

    def train_epoch(self, bar=None) -> dict:
        epoch = self.epoch + 1
        weights = loss_weights(self.training, epoch, self.lambda_global)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_set))
        self.model.train()
        size = int(self.training["batch_size"])
        steps = max(math.ceil(len(order) / size), 1)
        sums = torch.zeros(len(TERMS) + 1, dtype=torch.float64)
        graphs_in = self.train_graphs.feed(order)
        for step in range(steps):
            items = order[step * size : (step + 1) * size]
            graphs = [next(graphs_in) for _ in items]
            if self.training["augment"]:
                for k, data in enumerate(graphs):
                    key = [self.seed, epoch, step] if size == 1 else [self.seed, epoch, step, k]
                    op = octahedral_operation(np.random.default_rng(key))
                    graphs[k] = octahedral_augment(data, *op)
            lr = self.learning_rate(epoch, step, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            _, terms = self.batch_losses(graphs, weights)
            values = torch.stack([terms[t].detach().double() for t in TERMS]).cpu()
            if not torch.all(torch.isfinite(values)):
                self._fail(
                    epoch, step, items, "loss", dict(zip(TERMS, values.tolist(), strict=True))
                )
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.training["grad_clip"]
            )
            norm = float(norm)
            if not math.isfinite(norm):
                self._fail(epoch, step, items, "gradient norm", {"grad_norm": norm})
            self.optimizer.step()
            sums += torch.cat([values, torch.tensor([norm], dtype=torch.float64)])
            if bar is not None:
                bar.update(len(items))
                bar.set_postfix(
                    phase=self.progress.phase,
                    epoch=epoch,
                    loss=f"{values[0].item():.4g}",
                    refresh=False,
                )
        means = (sums / steps).tolist()
        row = dict(zip(TERMS, means[:-1], strict=True))
        row["grad_norm"] = means[-1]
        for p_name, p in self.model.named_parameters():
            if not torch.all(torch.isfinite(p)):
                raise TrainingError(
                    f"parameter {p_name} became non-finite at the end of epoch {epoch}"
                )
        row.update(
            w_var=weights.w_var,
            w_corr=weights.w_corr,
            lambda_global=weights.lambda_global,
            lr=self.optimizer.param_groups[0]["lr"],
        )
        return row

    def _fail(self, epoch: int, step: int, items, what: str, values: dict) -> None:
        where = "; ".join(
            "file {}, configuration {}".format(*self.train_set.locate(int(i))) for i in items
        )
        shown = ", ".join(f"{k} = {v:.6g}" for k, v in values.items())
        raise TrainingError(
            f"non-finite {what} at epoch {epoch}, step {step}: {where} ({shown}); training "
            "stopped (check the labels of that configuration, or lower "
            "training.learning_rate); the last checkpoint is intact"
        )

    @torch.no_grad()
    def validate(self) -> dict:
        """Validation metrics (empty without validation files)."""
        if self.val_set is None:
            return {}
        weights = loss_weights(self.training, self.epoch + 1, self.lambda_global)
        self.model.eval()
        per_t: dict[str, dict[str, list]] = {}
        for i, data in enumerate(self.val_graphs.feed(range(len(self.val_set)))):
            out, terms = self._losses(data, weights)
            label = cfgmod.temperature_label(self.val_set.temperature(i))
            rec = per_t.setdefault(
                label, {"pearson": [], "pearson_edge": [], "t_pred": [], "var_ratio": []}
            )
            a = data.a_mask
            rec["pearson"].append(float(pearson(out.cb[a], data.y[a])))
            rec["var_ratio"].append(float(variance(out.cb[a].float()) / variance(data.y[a])))
            rec["pearson_edge"].append(float(pearson(out.edge, data.y_edge)))
            rec["t_pred"].append(float(out.t_pred))
            rec.setdefault("t_true", []).append(float(data.temperature[0]))
            for t in TERMS:
                rec.setdefault(t, []).append(float(terms[t]))
        row: dict = {}
        for label, rec in per_t.items():
            for quantity in ("pearson", "t_pred", "pearson_edge", "var_ratio", *TERMS):
                row[validation_column(quantity, label)] = float(np.mean(rec[quantity]))
        for t in TERMS:
            row[validation_column(t)] = float(
                np.mean([v for rec in per_t.values() for v in rec[t]])
            )
        errors = [
            p - t
            for rec in per_t.values()
            for p, t in zip(rec["t_pred"], rec["t_true"], strict=True)
        ]
        row[validation_column("t_rmse")] = float(np.sqrt(np.mean(np.square(errors))))
        for quantity in ("pearson", "var_ratio"):
            row[validation_column(quantity)] = float(
                np.mean([row[validation_column(quantity, k)] for k in per_t])
            )
        tr = self.training
        row[validation_column("objective")] = (
            tr["lambda_node"] * row[validation_column("loss_mse")]
            + tr["lambda_edge"] * row[validation_column("loss_edge")]
            + self.lambda_global * row[validation_column("loss_global")]
        )
        return row

    # ------------------------------------------------------------ the run
    def run(
        self, stop_after: int | None = None, progress: bool = True, on_epoch: Callable | None = None
    ) -> TrainResult:
        """Train up to :attr:`total_epochs` (or stop after epoch ``stop_after``).

        The procedure: the epochs of the first phase (:meth:`train_epoch` then
        :meth:`validate`, checkpoints at epoch boundaries and at its end), then, with
        ``training.fluctuation_phase.epochs`` > 0, those of the second phase from the weights
        ``select_model`` keeps (:meth:`start_fluctuation_phase`); once every epoch is done,
        ``metrics.csv``, the weights that ``select_model`` keeps (:meth:`selected_weights`:
        after a second phase its last epoch), their global head refitted on the frozen trunk
        (:func:`~tbotan.learning.global_refit.refit_global`, ``training.global_refit_epochs``)
        and ``model.pt`` (:meth:`save_model`).

        SIGTERM or SIGUSR1 (a scheduler's time limit) makes it checkpoint at the end of the
        current epoch and raise :class:`~tbotan.resumable.Interrupted`."""
        total = self.total_epochs
        last = total if stop_after is None else min(total, stop_after)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.epoch == 0:
            write_metrics(self.live_metrics_path, self.columns, [])
        if self.epoch < total:  # the declared output appears only once training is complete
            remove_quietly(self.metrics_path)
        bar = None
        if progress:
            from tbotan.progress import progress_bar

            bar = progress_bar((last - self.epoch) * len(self.train_set), self.model_id)
        try:
            with ResumableLoop() as loop:
                self._epochs(last, total, bar, on_epoch, loop)
        finally:
            if bar is not None:
                bar.close()
        if loop.stop is not None and self.epoch < last:
            raise loop.interrupted(
                self.model_id,
                f" after epoch {self.epoch} of {total}; checkpoint written; rerun with --resume "
                "to continue",
            )
        result = TrainResult(self.model_id, self.out_dir, self.epoch, self.metrics)
        if self.epoch == total:
            write_metrics(self.metrics_path, self.columns, self.metrics)
            epoch, state_dict = self.selected_weights()
            state_dict, refit = refit_global(
                self.model,
                state_dict,
                self.train_graphs,
                self.val_graphs,
                self.training["global_refit_epochs"],
                self.training["global_refit_lr"],
            )
            result.model_path = self.save_model(state_dict, epoch, refit)
            remove_quietly(self.live_metrics_path)
        return result

    def _epochs(self, last: int, total: int, bar, on_epoch, loop: ResumableLoop) -> None:
        """Epochs up to ``last``; stops early, checkpointed, when a stop signal came."""
        progress = self.progress
        first_phase = self.training["epochs"]
        while progress.epoch < last:
            if progress.epoch >= first_phase and progress.phase == 1:
                self.start_fluctuation_phase()
            start = time.perf_counter()
            row = self.train_epoch(bar)
            row.update(self.validate())
            row["phase"] = progress.phase
            progress.epoch += 1
            seconds = time.perf_counter() - start
            progress.elapsed_s += seconds
            row.update(epoch=progress.epoch, time_s=seconds, elapsed_s=progress.elapsed_s)
            self._keep_if_best(row)
            progress.metrics.append(row)
            append_metrics(self.live_metrics_path, self.columns, row)
            every = self.training["checkpoint_every"]
            at_end = progress.epoch in (first_phase, total)  # a second phase may start here
            if loop.boundary(progress.epoch % every == 0 or at_end):
                self.save_checkpoint()
                loop.checkpointed()
            if on_epoch is not None:
                on_epoch(row)
            if loop.stop is not None:
                return

    def _keep_if_best(self, row: dict) -> None:
        """Keep the weights of the epoch just done if its validation objective is the lowest
        so far (``select_model: val_objective``)."""
        best = self.progress.best
        if self.progress.phase != 1:
            return
        if self.select != "last" and (not best or row["val_objective"] < best["score"]):
            self.progress.best = {
                "epoch": self.progress.epoch,
                "score": float(row["val_objective"]),
                "state_dict": {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                },
            }


def train(
    config: dict,
    train_files: Sequence[str | os.PathLike],
    validation_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    variant: str | None = None,
    lambda_global: float | None = None,
    seed: int = 0,
    device: str | None = None,
    resume: bool | str = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train one T-BOTAN model (see the module documentation).

    Args:
        config: the configuration (validated here; sections ``model``, ``training``).
        train_files: dataset files to train on (any temperatures).
        validation_files: dataset files evaluated after every epoch (may be empty).
        out_dir: the model folder (``models/{model_id}``).
        variant: input variant (default ``model.variant``).
        lambda_global: λ_g (default ``training.lambda_global``).
        seed: seed of initialisation, shuffling and augmentation.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'`` (default ``training.device``).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists; a checkpoint written
            with other settings raises :class:`IncompatibleCheckpoint`, or with
            ``resume="compatible"`` is moved to ``checkpoint.stale.pt`` and training starts
            afresh.
        stop_after: stop after this epoch (as if interrupted; for tests and time limits).
        progress: show a progress bar.
    """
    trainer = Trainer(
        config,
        train_files,
        validation_files,
        out_dir,
        variant=variant,
        lambda_global=lambda_global,
        seed=seed,
        device=device,
    )
    if resume:
        try:
            if trainer.resume():
                # on stderr whatever the log level: what a user of a retried job looks for
                print(
                    f"{trainer.model_id}: resuming from checkpoint after epoch {trainer.epoch} "
                    f"of {trainer.total_epochs} (phase {trainer.progress.phase})",
                    file=sys.stderr,
                )
        except IncompatibleCheckpoint as exc:
            if resume != "compatible":
                raise
            # the workflow reruns a training whose settings changed: the old checkpoint is
            # stale, not an interrupted run of this one
            stale = trainer.checkpoint_path.with_name("checkpoint.stale.pt")
            os.replace(trainer.checkpoint_path, stale)
            print(f"{exc}; starting afresh (old checkpoint moved to {stale})", file=sys.stderr)
    return trainer.run(stop_after=stop_after, progress=progress)
