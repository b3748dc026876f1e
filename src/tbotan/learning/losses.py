"""Losses of T-BOTAN (docs/physics.md §8; paper Eq. 6–9), per configuration.

``L_all = λ_n L_node + λ_e L_edge + λ_g L_global`` with ``L_node = L_MSE + w_v L_Var + w_c
L_Corr`` and, for predicted ŷ and true y = C_B (MD) of one configuration,

* ``L_MSE = (1/N) Σ_j (ŷ_j − y_j)² / Var(y)``, over all N particles (as the paper's Eq. 8);
* ``L_Var = |Var(ŷ) − Var(y)| / Var(y)``, over all N particles;
* ``L_Corr = Σ_d |F(ŷ, d) − F(y, d)| / F_N``, ``F_N = |F(y, d_min) − F(y, d_max)|``, with
  ``F(X, d) = Σ_{j,k} δX_j δX_k exp(−(r_jk − d)²/2) / Σ_j δX_j²``, ``δX = X − mean(X)``, sums
  (and the mean) over type-A particles only (ours), r_jk minimum-image distances in the
  thermal configuration, d = 2, 4, 6 (``training.corr_distances``).  The j = k terms
  (r = 0) are included, as the formula is written;
* ``L_edge = mean_{jk} (Ê_jk − E_jk)² / Var(y)`` (normalised by the node-label variance);
* ``L_global = (T_pred − T)²``.

With standardised targets (``training.normalize_targets``, :class:`TargetScales`), L_edge is
divided by the training-set variance of E_jk instead of Var(y), and L_global by the variance
of T over the training configurations: each term is then ≈ 1 for the constant predictor, so the
weights λ compare like with like (the paper's L_edge outweighs L_MSE by Var(E)/Var(C_B) ≈ 10).
L_MSE, L_Var and L_Corr are invariant under an affine change of units and stay as they are.
L_Corr refuses distances beyond half the box edge (:func:`check_box`).

Var is the population variance (1/N Σ (x − x̄)²).  F needs all N_A² pairs (N_A = 3277: 10.7 M):
they are computed on the device in blocks of rows, never stored, and the gradient is exact
without recomputing them: for a symmetric W, ``∂(δXᵀ W δX)/∂δX = 2 W δX`` and ``W δX`` is a
by-product of the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tbotan.errors import ConfigError

#: Names of the loss terms, in the order of docs/formats.md (metrics.csv).
TERMS = ("loss", "loss_node", "loss_mse", "loss_var", "loss_corr", "loss_edge", "loss_global")


def variance(x: torch.Tensor) -> torch.Tensor:
    """Population variance of a 1-D tensor."""
    return x.var(correction=0)


def mse_loss(pred: torch.Tensor, target: torch.Tensor, mean_weight: float = 1.0) -> torch.Tensor:
    """``L_MSE = mean (pred − target)² / Var(target)`` for (N,) tensors.

    The squared error splits into the error of the configuration's mean and that of the
    deviations from it, ``mean (δpred − δtarget)² + (mean pred − mean target)²``; with
    ``mean_weight`` w ≠ 1 the second part is weighted by w (``training.mse_mean_weight``; the
    Pearson ρ of a configuration sees only the first).  w = 1 is the paper's L_MSE.
    """
    if mean_weight == 1.0:
        return (pred - target).square().mean() / variance(target)
    offset = pred.mean() - target.mean()
    deviation = (pred - target) - offset
    return (deviation.square().mean() + mean_weight * offset.square()) / variance(target)


def variance_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_Var = |Var(pred) − Var(target)| / Var(target)`` for (N,) tensors."""
    var_target = variance(target)
    return (variance(pred) - var_target).abs() / var_target


def edge_loss(
    pred_edge: torch.Tensor, target_edge: torch.Tensor, target_node: torch.Tensor
) -> torch.Tensor:
    """``L_edge = mean (Ê − E)² / Var(y_node)``: (E,), (E,) and (N,) tensors."""
    return (pred_edge - target_edge).square().mean() / variance(target_node)


def global_loss(t_pred: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``L_global = (T_pred − T)²`` (scalars)."""
    return (t_pred - temperature).square().reshape(())


# ---------------------------------------------------------------------------- F(X, d)


@torch.no_grad()
def gaussian_pair_products(
    values: torch.Tensor,
    positions: torch.Tensor,
    box: torch.Tensor,
    distances: Sequence[float],
    block_rows: int = 1024,
) -> torch.Tensor:
    """``U[j, c, d] = Σ_k exp(−(r_jk − d)²/2) values[k, c]`` over all pairs, j = k included.

    Args:
        values: (M, C) columns to contract.
        positions: (M, 3) positions (σ_AA); distances are minimum-image in ``box``.
        box: (3,) box edges.
        distances: the D distances d.
        block_rows: rows j per block (bounds memory to a few ``block_rows × M`` arrays);
            0 or ≥ M computes all rows at once.

    Returns:
        (M, C, D) tensor in the dtype of ``values``.
    """
    m = positions.shape[0]
    dtype = values.dtype
    positions = positions.to(dtype)
    box = box.to(device=positions.device, dtype=dtype)
    rows = m if block_rows <= 0 else min(block_rows, m)
    out = values.new_empty(m, values.shape[1], len(distances))
    for lo in range(0, m, rows):
        hi = min(lo + rows, m)
        r2 = None
        for axis in range(3):
            delta = positions[lo:hi, None, axis] - positions[None, :, axis]
            delta = delta - box[axis] * torch.round(delta / box[axis])
            r2 = delta.square() if r2 is None else r2.add_(delta.square())
        r = r2.sqrt_()
        for i, d in enumerate(distances):
            weight = torch.exp(-0.5 * (r - d).square())
            out[lo:hi, :, i] = weight @ values
    return out


class _GaussianQuadraticForm(torch.autograd.Function):
    """``q[c, d] = Σ_{j,k} v_jc v_kc exp(−(r_jk − d)²/2)`` with the exact gradient ``2 W v``."""

    @staticmethod
    def forward(ctx, values, positions, box, distances, block_rows):
        products = gaussian_pair_products(values, positions, box, distances, block_rows)
        ctx.save_for_backward(products)
        return torch.einsum("jc,jcd->cd", values, products)

    @staticmethod
    def backward(ctx, grad_q):
        (products,) = ctx.saved_tensors
        grad_values = 2.0 * torch.einsum("cd,jcd->jc", grad_q, products)
        return grad_values, None, None, None, None


def spatial_correlation(
    x: torch.Tensor,
    positions: torch.Tensor,
    box: torch.Tensor,
    distances: Sequence[float],
    block_rows: int = 1024,
) -> torch.Tensor:
    """``F(X, d) = Σ_{j,k} δX_j δX_k exp(−(r_jk − d)²/2) / Σ_j δX_j²`` (paper Eq. 9).

    Args:
        x: (M,) or (M, C) field(s) X on M particles (the type-A particles).
        positions: (M, 3) their positions in the thermal configuration (σ_AA).
        box: (3,) box edges.
        distances: the D distances d.
        block_rows: see :func:`gaussian_pair_products`.

    Returns:
        (D,) for a 1-D ``x``, else (C, D).  Differentiable with respect to ``x``.
    """
    single = x.ndim == 1
    columns = x[:, None] if single else x
    delta = columns - columns.mean(dim=0, keepdim=True)
    q = _GaussianQuadraticForm.apply(delta, positions, box, tuple(distances), block_rows)
    f = q / delta.square().sum(dim=0)[:, None]
    return f[0] if single else f


def correlation_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    positions: torch.Tensor,
    box: torch.Tensor,
    distances: Sequence[float],
    block_rows: int = 1024,
) -> torch.Tensor:
    """``L_Corr = Σ_d |F(pred, d) − F(target, d)| / |F(target, d_min) − F(target, d_max)|``.

    ``pred``, ``target``: (M,) values on the M particles of ``positions`` (type A).  Both
    fields share one pass over the pairs; the target side carries no gradient.
    """
    f = spatial_correlation(
        torch.stack([pred, target.detach()], dim=1), positions, box, distances, block_rows
    )
    f_pred, f_true = f[0], f[1].detach()
    d = torch.as_tensor(list(distances))
    f_norm = (f_true[int(d.argmin())] - f_true[int(d.argmax())]).abs()
    return (f_pred - f_true).abs().sum() / f_norm


# ---------------------------------------------------------------------------- all terms


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision outputs (autocast) are promoted to float32; others stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@dataclass(frozen=True)
class TargetScales:
    """Training-set scales of the standardised loss terms (``training.normalize_targets``).

    Attributes:
        edge: standard deviation of the edge labels E_jk over the training set (σ_AA).
        temperature: standard deviation of T over the training configurations (1.0 when they
            share one temperature: L_global is then the paper's).
    """

    edge: float
    temperature: float


def check_box(distances: Sequence[float], box_length: float, where: str = "") -> None:
    """ConfigError if a distance of L_Corr exceeds half the (cubic) box edge ``box_length``."""
    half = 0.5 * float(box_length)
    beyond = [float(d) for d in distances if float(d) > half]
    if beyond:
        place = f"{where}: " if where else ""
        raise ConfigError(
            f"{place}L_Corr distances {beyond} exceed half the box edge (L/2 = {half:.3f} σ_AA); "
            "set training.corr_distances to values ≤ L/2"
        )


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms at one epoch."""

    lambda_node: float
    lambda_edge: float
    lambda_global: float
    w_var: float
    w_corr: float


def loss_weights(training: dict, epoch: int, lambda_global: float | None = None) -> LossWeights:
    """The weights of 1-based ``epoch`` from the configuration's ``training`` section.

    ``w_v = w_c = 0`` during the first ``warmup_epochs`` epochs, then ``w_var`` and ``w_corr``.
    ``λ_g`` (``lambda_global`` unless overridden) applies from the first epoch
    (docs/physics.md §8.2); with ``global_after_warmup: true`` it is also 0 during the warm-up
    (the paper's Fig. 6 caption).  Epochs after ``epochs`` belong to the second phase
    (``fluctuation_phase``, docs/physics.md §8.6): its ``w_var`` and ``w_corr``.
    """
    lg = training["lambda_global"] if lambda_global is None else lambda_global
    if epoch > training["epochs"]:
        phase2 = training.get("fluctuation_phase", {})
        w_var, w_corr = phase2.get("w_var", 0.0), phase2.get("w_corr", 0.0)
    else:
        warm = epoch <= training["warmup_epochs"]
        if warm and training.get("global_after_warmup", False):
            lg = 0.0
        w_var = 0.0 if warm else training["w_var"]
        w_corr = 0.0 if warm else training["w_corr"]
    return LossWeights(
        lambda_node=training["lambda_node"],
        lambda_edge=training["lambda_edge"],
        lambda_global=float(lg),
        w_var=float(w_var),
        w_corr=float(w_corr),
    )


def tbotan_losses(
    output,
    data,
    weights: LossWeights,
    distances: Sequence[float] = (2.0, 4.0, 6.0),
    block_rows: int = 1024,
    scales: TargetScales | None = None,
    mse_mean_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Every loss term of one configuration.

    Args:
        output: a :class:`tbotan.learning.model.TBotanOutput` (cb (N,), edge (E,), t_pred ()).
        data: the configuration's graph (:mod:`tbotan.learning.graphs`: ``y``, ``y_edge``,
            ``temperature``, ``a_mask``, ``corr_positions``, ``box``).
        weights: the epoch's :class:`LossWeights`.
        distances, block_rows: of L_Corr (check them with :func:`check_box` once per dataset).
        scales: standardised L_edge and L_global (:class:`TargetScales`), or None for the
            paper's.
        mse_mean_weight: weight of the configuration-mean part of L_MSE (:func:`mse_loss`).

    Returns:
        ``{name: scalar tensor}`` for every name of :data:`TERMS`; ``loss`` is L_all.  L_Corr is
        computed (for the record) also when ``w_corr = 0``, then without a gradient.
    """
    cb, edge, t_pred = (_at_least_float32(t) for t in (output.cb, output.edge, output.t_pred))
    y = data.y
    terms = {
        "loss_mse": mse_loss(cb, y, mse_mean_weight),
        "loss_var": variance_loss(cb, y),
        "loss_edge": edge_loss(edge, data.y_edge, y),
        "loss_global": global_loss(t_pred, data.temperature[0]),
    }
    if scales is not None:
        terms["loss_edge"] = (edge - data.y_edge).square().mean() / scales.edge**2
        terms["loss_global"] = terms["loss_global"] / scales.temperature**2
    with torch.set_grad_enabled(torch.is_grad_enabled() and weights.w_corr > 0):
        a = data.a_mask
        terms["loss_corr"] = correlation_loss(
            cb[a], y[a], data.corr_positions, data.box, distances, block_rows
        )
    terms["loss_node"] = (
        terms["loss_mse"] + weights.w_var * terms["loss_var"] + weights.w_corr * terms["loss_corr"]
    )
    terms["loss"] = (
        weights.lambda_node * terms["loss_node"]
        + weights.lambda_edge * terms["loss_edge"]
        + weights.lambda_global * terms["loss_global"]
    )
    return {name: terms[name] for name in TERMS}
