"""The global head refitted on the final trunk (``training.global_refit_epochs``).

After the last epoch, the trunk of the selected weights is frozen and the global head (MLP_g
and the global decoder) alone is fitted to T: the readout statistics are recomputed from every
training graph with the final trunk (``standardized``), the pooled vectors (M, G, H) of the
training and validation graphs (:meth:`tbotan.learning.model.TBotan.pooled_states`) are
computed once, and the head is fitted by full-batch Adam steps on the standardised L_global,
keeping the step with the lowest validation T-RMSE (training T-RMSE without validation files).
Node and edge outputs are untouched.  Deterministic: no sampling, fixed order.
"""

from __future__ import annotations

import logging

import torch

from tbotan.learning.feeder import GraphFeeder
from tbotan.learning.model import TBotan

log = logging.getLogger(__name__)


def pooled_vectors(model: TBotan, graphs: GraphFeeder) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled vectors of every graph of ``graphs`` and their temperatures.

    Returns:
        ((M, G, H) pooled node states of each message-passing step, (G,) T of each graph), on
        the model's device, in the order of the graphs.
    """
    pooled, t = [], []
    with torch.no_grad():
        for d in graphs.feed(range(len(graphs))):
            pooled.append(model.pooled_states(d.x, d.edge_index, d.edge_attr))
            t.append(float(d.temperature[0]))
    pooled = torch.cat(pooled, dim=1)  # (M, G, H)
    return pooled, torch.tensor(t, device=pooled.device, dtype=pooled.dtype)


def refit_global(
    model: TBotan,
    state_dict: dict,
    train_graphs: GraphFeeder,
    validation_graphs: GraphFeeder | None,
    steps: int,
    learning_rate: float,
) -> tuple[dict, dict]:
    """The global head of ``state_dict`` refitted on its frozen trunk (module documentation).

    Args:
        model: the trained model; with ``steps > 0`` it is left holding the refitted weights.
        state_dict: the weights to refit (the selected epoch's).
        train_graphs: the training graphs (the fit, and the readout statistics).
        validation_graphs: the graphs that select the step (None: the training graphs).
        steps: full-batch Adam steps (0: no refit; ``state_dict`` is returned as it is).
        learning_rate: Adam's rate.

    Returns:
        (the refitted state dict on the CPU, a record: ``steps``, ``best_step``,
        ``selected_on``, ``t_rmse_before``, ``t_rmse_after``, ``train_t_rmse_after``; ``{}``
        without a refit).
    """
    steps = int(steps)
    if steps <= 0:
        return state_dict, {}
    model.load_state_dict(state_dict)
    model.eval()
    p_train, t_train = pooled_vectors(model, train_graphs)
    # the trunk's raw pooled vectors do not depend on the readout statistics: set them
    # from the same vectors (what calibrate_global computes) instead of a second pass
    model.set_global_statistics(p_train)
    p_val, t_val = (
        pooled_vectors(model, validation_graphs) if validation_graphs else (p_train, t_train)
    )
    scale = model.target_scale[2].detach()

    def rmse(pooled, t) -> float:
        with torch.no_grad():
            return float((model.global_head(pooled) - t).square().mean().sqrt())

    params = [*model.global_mlp.parameters(), *model.global_decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    before = rmse(p_val, t_val)
    best = (before, 0, {k: v.detach().clone() for k, v in model.state_dict().items()})
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = ((model.global_head(p_train) - t_train) / scale).square().mean()
        loss.backward()
        optimizer.step()
        score = rmse(p_val, t_val)
        if score < best[0]:
            best = (score, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    record = {
        "steps": steps,
        "best_step": best[1],
        "selected_on": "validation" if validation_graphs else "training",
        "t_rmse_before": before,
        "t_rmse_after": best[0],
        "train_t_rmse_after": rmse(p_train, t_train),
    }
    log.info(
        "global head refitted on the final trunk: %s T-RMSE %.4f -> %.4f (step %d of %d)",
        record["selected_on"],
        before,
        best[0],
        best[1],
        steps,
    )
    return {k: v.detach().cpu().clone() for k, v in best[2].items()}, record
