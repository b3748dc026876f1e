"""Loss terms of T-BOTAN against NumPy float64 references, with their gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tbotan import config as cfgmod
from tbotan.learning.losses import (
    TERMS,
    LossWeights,
    correlation_loss,
    edge_loss,
    gaussian_pair_products,
    global_loss,
    loss_weights,
    mse_loss,
    spatial_correlation,
    tbotan_losses,
    variance_loss,
)
from tbotan.learning.model import TBotanOutput

DISTANCES = (2.0, 4.0, 6.0)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- references


def ref_mse(pred, y):
    return np.mean((pred - y) ** 2) / np.var(y)


def ref_var(pred, y):
    return abs(np.var(pred) - np.var(y)) / np.var(y)


def ref_edge(pred_e, y_e, y):
    return np.mean((pred_e - y_e) ** 2) / np.var(y)


def ref_f(x, positions, box, d):
    """F(X, d) by brute force: an explicit double loop over all pairs (j, k), j = k included."""
    dx = x - x.mean()
    m = len(x)
    total = 0.0
    for j in range(m):
        for k in range(m):
            delta = positions[k] - positions[j]
            delta -= box * np.round(delta / box)
            r = np.sqrt(delta @ delta)
            total += dx[j] * dx[k] * np.exp(-((r - d) ** 2) / 2.0)
    return total / np.sum(dx**2)


def ref_corr(pred, y, positions, box, distances=DISTANCES):
    f_norm = abs(
        ref_f(y, positions, box, min(distances)) - ref_f(y, positions, box, max(distances))
    )
    return (
        sum(abs(ref_f(pred, positions, box, d) - ref_f(y, positions, box, d)) for d in distances)
        / f_norm
    )


def tiny_system(m=30, seed=0):
    """M particles in a periodic box of edge 9 (distances up to ≈ 7.8), smooth fields on them."""
    rng = np.random.default_rng(seed)
    box = np.full(3, 9.0)
    positions = rng.uniform(0, 9.0, (m, 3))
    y = 0.7 + 0.1 * np.sin(positions[:, 0]) + 0.05 * rng.normal(size=m)
    pred = y + 0.08 * rng.normal(size=m) + 0.03 * np.cos(positions[:, 1])
    return positions, box, y, pred


def t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def central_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up.flat[i] += eps
        down.flat[i] -= eps
        grad.flat[i] = (f(up) - f(down)) / (2 * eps)
    return grad


# ---------------------------------------------------------------------------- values


def test_node_terms_match_numpy_float64():
    _, _, y, pred = tiny_system()
    assert mse_loss(t64(pred), t64(y)).item() == pytest.approx(ref_mse(pred, y), rel=1e-12)
    assert variance_loss(t64(pred), t64(y)).item() == pytest.approx(ref_var(pred, y), rel=1e-12)


def test_mse_mean_weight_splits_the_error_of_the_configuration_mean():
    """w = 1 is the paper's L_MSE; w = 0 the error of the deviations from each field's mean,
    which a constant shift of the prediction does not change (as Pearson)."""
    _, _, y, pred = tiny_system()
    p, t = t64(pred), t64(y)
    assert mse_loss(p, t, 1.0).item() == pytest.approx(ref_mse(pred, y), rel=1e-12)
    centred = np.mean(((pred - pred.mean()) - (y - y.mean())) ** 2) / np.var(y)
    assert mse_loss(p, t, 0.0).item() == pytest.approx(centred, rel=1e-12)
    assert mse_loss(p + 0.3, t, 0.0).item() == pytest.approx(centred, rel=1e-10)
    offset = (pred.mean() - y.mean()) ** 2 / np.var(y)
    assert mse_loss(p, t, 0.25).item() == pytest.approx(centred + 0.25 * offset, rel=1e-12)
    assert mse_loss(p, t, 0.999999).item() == pytest.approx(ref_mse(pred, y), rel=1e-5)


def test_edge_and_global_terms_match_numpy_float64():
    rng = np.random.default_rng(3)
    y = rng.uniform(0.5, 0.9, 40)
    y_e, pred_e = rng.normal(0, 0.1, 300), rng.normal(0, 0.1, 300)
    value = edge_loss(t64(pred_e), t64(y_e), t64(y)).item()
    assert value == pytest.approx(ref_edge(pred_e, y_e, y), rel=1e-12)
    assert global_loss(t64(0.61), t64([0.5])[0]).item() == pytest.approx(0.11**2, rel=1e-12)


def test_spatial_correlation_matches_brute_force_pairs():
    positions, box, y, pred = tiny_system()
    f = spatial_correlation(t64(y), t64(positions), t64(box), DISTANCES).numpy()
    expected = [ref_f(y, positions, box, d) for d in DISTANCES]
    np.testing.assert_allclose(f, expected, rtol=1e-12)
    # several columns at once give the same numbers
    both = spatial_correlation(t64(np.stack([pred, y], 1)), t64(positions), t64(box), DISTANCES)
    np.testing.assert_allclose(both[1].numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(
        both[0].numpy(), [ref_f(pred, positions, box, d) for d in DISTANCES], rtol=1e-12
    )


def test_correlation_loss_matches_numpy_and_is_independent_of_blocking():
    positions, box, y, pred = tiny_system()
    expected = ref_corr(pred, y, positions, box)
    for rows in (0, 1, 7, 30, 1000):
        value = correlation_loss(t64(pred), t64(y), t64(positions), t64(box), DISTANCES, rows)
        assert value.item() == pytest.approx(expected, rel=1e-12), rows


def test_correlation_loss_in_float32_is_accurate():
    positions, box, y, pred = tiny_system(m=200, seed=4)
    f64 = correlation_loss(t64(pred), t64(y), t64(positions), t64(box), DISTANCES).item()
    t32 = [torch.tensor(a, dtype=torch.float32) for a in (pred, y, positions, box)]
    f32 = correlation_loss(*t32, DISTANCES, block_rows=64).item()
    assert f32 == pytest.approx(f64, rel=1e-4)


def test_pair_products_include_the_self_pair():
    positions = t64([[1.0, 1.0, 1.0], [5.0, 1.0, 1.0]])  # r = 4 between the two
    values = t64([[1.0], [0.0]])
    u = gaussian_pair_products(values, positions, t64([10.0, 10.0, 10.0]), (0.0, 4.0))
    # row 0: exp(0) (self) at d = 0, exp(-8) from the self pair at d = 4
    assert u[0, 0, 0].item() == pytest.approx(1.0)
    assert u[0, 0, 1].item() == pytest.approx(np.exp(-8.0))
    assert u[1, 0, 1].item() == pytest.approx(1.0)  # the partner at r = 4, d = 4


# ---------------------------------------------------------------------------- gradients


def test_node_term_gradients_match_finite_differences_of_the_reference():
    positions, box, y, pred = tiny_system(m=16, seed=1)
    cases = {
        "mse": (mse_loss, lambda p: ref_mse(p, y)),
        "var": (variance_loss, lambda p: ref_var(p, y)),
        "corr": (
            lambda p, t: correlation_loss(p, t, t64(positions), t64(box), DISTANCES, 5),
            lambda p: ref_corr(p, y, positions, box),
        ),
    }
    for name, (term, reference) in cases.items():
        p = t64(pred).requires_grad_(True)
        term(p, t64(y)).backward()
        expected = central_difference(reference, pred.copy())
        np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-6, atol=1e-8, err_msg=name)


def test_edge_and_global_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    y = rng.uniform(0.5, 0.9, 12)
    y_e, pred_e = rng.normal(0, 0.1, 20), rng.normal(0, 0.1, 20)
    p = t64(pred_e).requires_grad_(True)
    edge_loss(p, t64(y_e), t64(y)).backward()
    expected = central_difference(lambda q: ref_edge(q, y_e, y), pred_e.copy())
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-6)
    t = t64(0.7).requires_grad_(True)
    global_loss(t, t64(0.5)).backward()
    assert t.grad.item() == pytest.approx(2 * 0.2)


def test_total_loss_passes_gradcheck_on_a_tiny_graph():
    """L_all of a tiny graph against finite differences (torch.autograd.gradcheck)."""
    positions, box, y, pred = tiny_system(m=10, seed=2)
    rng = np.random.default_rng(2)
    n_edges = 25
    data = _tiny_data(positions, box, y, rng.normal(0, 0.1, n_edges), types=[0] * 8 + [1] * 2)
    weights = LossWeights(0.5, 0.5, 0.01, 1.0, 0.5)

    def total(cb, edge, t_pred):
        out = TBotanOutput(cb=cb, edge=edge, t_pred=t_pred, embedding=cb.new_zeros(4))
        return tbotan_losses(out, data, weights, DISTANCES, block_rows=3)["loss"]

    inputs = (
        t64(pred).requires_grad_(True),
        t64(rng.normal(0, 0.1, n_edges)).requires_grad_(True),
        t64(0.63).requires_grad_(True),
    )
    assert torch.autograd.gradcheck(total, inputs, eps=1e-6, atol=1e-7)


class _Data:
    """Stand-in for a graph's target attributes."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _tiny_data(positions, box, y, y_edge, types, temperature=0.5):
    types = np.asarray(types)
    a = types == 0
    return _Data(
        y=t64(y),
        y_edge=t64(y_edge),
        temperature=t64([temperature]),
        a_mask=torch.from_numpy(a),
        corr_positions=t64(positions[a]),
        box=t64(box),
    )


# ---------------------------------------------------------------------------- assembly


def test_all_terms_assemble_as_the_paper_says():
    positions, box, y, pred = tiny_system(m=20, seed=6)
    rng = np.random.default_rng(6)
    types = np.array([0] * 16 + [1] * 4)
    y_e, pred_e = rng.normal(0, 0.1, 50), rng.normal(0, 0.1, 50)
    data = _tiny_data(positions, box, y, y_e, types, temperature=0.47)
    out = TBotanOutput(t64(pred), t64(pred_e), t64(0.52), t64(np.zeros(4)))
    w = LossWeights(lambda_node=0.5, lambda_edge=0.25, lambda_global=0.1, w_var=1.0, w_corr=0.5)
    terms = {k: v.item() for k, v in tbotan_losses(out, data, w).items()}
    assert list(terms) == list(TERMS)
    a = types == 0
    mse, var = ref_mse(pred, y), ref_var(pred, y)  # over all N particles (paper's Eq. 8)
    corr = ref_corr(pred[a], y[a], positions[a], box)  # over A particles only
    edge, glob = ref_edge(pred_e, y_e, y), (0.52 - 0.47) ** 2
    node = mse + 1.0 * var + 0.5 * corr
    expected = dict(
        loss=0.5 * node + 0.25 * edge + 0.1 * glob,
        loss_node=node,
        loss_mse=mse,
        loss_var=var,
        loss_corr=corr,
        loss_edge=edge,
        loss_global=glob,
    )
    for key, value in expected.items():
        assert terms[key] == pytest.approx(value, rel=1e-10), key


def test_correlation_term_carries_no_gradient_during_the_warm_up():
    positions, box, y, pred = tiny_system(m=12, seed=7)
    data = _tiny_data(positions, box, y, np.zeros(5), types=[0] * 12)
    cb = t64(pred).requires_grad_(True)
    out = TBotanOutput(cb, t64(np.zeros(5)), t64(0.5), t64(np.zeros(2)))
    terms = tbotan_losses(out, data, LossWeights(0.5, 0.5, 0.01, 0.0, 0.0))
    assert terms["loss_corr"].grad_fn is None and terms["loss_corr"].item() > 0
    assert terms["loss"].grad_fn is not None


def test_warm_up_schedule_follows_the_configuration():
    cfg = cfgmod.validate({"training": {"epochs": 20, "warmup_epochs": 10}})["training"]
    first, last_warm, after = (loss_weights(cfg, e) for e in (1, 10, 11))
    assert first.w_var == first.w_corr == 0.0 and last_warm.w_corr == 0.0
    assert (after.w_var, after.w_corr) == (1.0, 0.5)
    assert first.lambda_global == 0.01 and (first.lambda_node, first.lambda_edge) == (0.5, 0.5)
    assert loss_weights(cfg, 1, lambda_global=0.1).lambda_global == 0.1
    paper_caption = dict(cfg, global_after_warmup=True)
    assert loss_weights(paper_caption, 10).lambda_global == 0.0
    assert loss_weights(paper_caption, 11).lambda_global == 0.01
