"""T-BOTAN: the equations of PHYSICS.md §7, symmetries, and no temperature input."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from tbotan import config as cfgmod
from tbotan.model import MLP, TBotan, count_parameters


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_graph(n=40, degree=6, n_features=4, seed=0, dtype=torch.float64):
    """A random directed graph without self-loops, one-hot species and random edge inputs."""
    g = torch.Generator().manual_seed(seed)
    src = torch.arange(n).repeat_interleave(degree)
    dst = (src + torch.randint(1, n, (n * degree,), generator=g)) % n
    types = torch.randint(0, 2, (n,), generator=g)
    x = torch.nn.functional.one_hot(types, 2).to(dtype)
    edge_attr = torch.randn(n * degree, n_features, generator=g, dtype=dtype)
    return x, torch.stack([src, dst]), edge_attr


def small_model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    kw = {"edge_features": 4, "hidden": 16, "message_passing_steps": 3, **kw}
    return TBotan(**kw).to(dtype)


def plain_mlp(mlp: MLP, x: torch.Tensor) -> torch.Tensor:
    """The MLP written out on the concatenated input."""
    h = x
    for layer in mlp.hidden:
        h = torch.relu(h @ layer.weight.T + layer.bias)
    return h if mlp.output is None else h @ mlp.output.weight.T + mlp.output.bias


def equations(model: TBotan, x, edge_index, edge_attr):
    """PHYSICS.md §7 written literally, with concatenations and an explicit loop over nodes."""
    src, dst = edge_index
    h = h_enc = plain_mlp(model.node_encoder, x)
    e = e_enc = plain_mlp(model.edge_encoder, edge_attr)
    g = torch.zeros(1, h.shape[1], dtype=h.dtype)
    for _ in range(model.steps):
        e = plain_mlp(model.edge_mlp, torch.cat([h[src], h[dst], e, e_enc], dim=1))
        incoming = torch.stack([e[dst == v].sum(0) for v in range(h.shape[0])])
        h = plain_mlp(model.node_mlp, torch.cat([h, h_enc, incoming], dim=1))
        g = plain_mlp(model.global_mlp, torch.cat([g, h.mean(0, keepdim=True)], dim=1))
    return (
        plain_mlp(model.node_decoder, h)[:, 0],
        plain_mlp(model.edge_decoder, e)[:, 0],
        plain_mlp(model.global_decoder, g)[0, 0],
        g[0],
    )


def test_mlp_on_parts_equals_mlp_on_the_concatenation():
    torch.manual_seed(1)
    mlp = MLP((3, 5, 2), hidden=8, layers=2, out=1).double()
    parts = [torch.randn(7, k, dtype=torch.float64) for k in (3, 5, 2)]
    expected = plain_mlp(mlp, torch.cat(parts, dim=1))
    torch.testing.assert_close(mlp(*parts), expected, rtol=1e-12, atol=1e-12)
    assert len(mlp.hidden) == 2 and mlp.hidden[0].in_features == 10


def test_forward_is_the_papers_equations():
    model = small_model()
    x, edge_index, edge_attr = random_graph()
    out = model(x, edge_index, edge_attr)
    for got, expected in zip(out, equations(model, x, edge_index, edge_attr), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_output_shapes_and_sizes_come_from_the_configuration():
    config = cfgmod.validate({"model": {"hidden": 24, "mlp_layers": 3, "message_passing_steps": 5}})
    model = TBotan.from_config(config, "is").double()
    assert model.hparams == dict(
        edge_features=3, node_features=2, hidden=24, mlp_layers=3, message_passing_steps=5
    )
    x, edge_index, edge_attr = random_graph(n_features=3)
    out = model(x, edge_index, edge_attr)
    assert out.cb.shape == (40,) and out.edge.shape == (240,)
    assert out.t_pred.shape == () and out.embedding.shape == (24,)
    assert all(len(m.hidden) == 3 for m in model.modules() if isinstance(m, MLP))


def test_default_model_matches_the_paper_sizes():
    model = TBotan.from_config(cfgmod.validate({}))
    assert model.hparams["hidden"] == 64 and model.steps == 7
    H = 64

    def mlp_params(n_in, out=None):
        p = n_in * H + H + H * H + H
        return p + (H * out + out if out else 0)

    expected = (
        mlp_params(2)  # node encoder
        + mlp_params(4)  # edge encoder (is+ts: 3 + 1 features)
        + mlp_params(4 * H)  # shared edge update
        + mlp_params(3 * H)  # shared node update
        + mlp_params(2 * H)  # shared global update
        + 3 * mlp_params(H, out=1)  # three separate decoders
    )
    assert count_parameters(model) == expected


def test_decoders_are_separate():
    model = small_model()
    ids = [
        {id(p) for p in m.parameters()}
        for m in (model.node_decoder, model.edge_decoder, model.global_decoder)
    ]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_relabelling_particles_permutes_outputs_and_keeps_globals():
    model = small_model(seed=3)
    x, edge_index, edge_attr = random_graph(seed=3)
    n, n_edges = x.shape[0], edge_attr.shape[0]
    g = torch.Generator().manual_seed(4)
    perm = torch.randperm(n, generator=g)  # new label of particle i is inverse[i]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    edge_perm = torch.randperm(n_edges, generator=g)  # the edges are listed in another order too
    out = model(x, edge_index, edge_attr)
    out_p = model(x[perm], inverse[edge_index[:, edge_perm]], edge_attr[edge_perm])
    torch.testing.assert_close(out_p.cb, out.cb[perm], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out_p.edge, out.edge[edge_perm], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out_p.t_pred, out.t_pred, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out_p.embedding, out.embedding, rtol=1e-10, atol=1e-12)


def test_global_branch_is_never_fed_back():
    model = small_model(seed=5)
    x, edge_index, edge_attr = random_graph(seed=5)
    before = model(x, edge_index, edge_attr)
    with torch.no_grad():
        for p in model.global_mlp.parameters():
            p.add_(torch.randn_like(p))
    after = model(x, edge_index, edge_attr)
    torch.testing.assert_close(after.cb, before.cb, rtol=0, atol=0)
    torch.testing.assert_close(after.edge, before.edge, rtol=0, atol=0)
    assert not torch.allclose(after.embedding, before.embedding)


def test_global_embedding_starts_from_zero():
    """g¹ = MLP_g([0, mean h¹]): with one step the embedding is that expression."""
    model = small_model(seed=6, message_passing_steps=1)
    x, edge_index, edge_attr = random_graph(seed=6)
    out = model(x, edge_index, edge_attr)
    _, _, _, g = equations(model, x, edge_index, edge_attr)
    torch.testing.assert_close(out.embedding, g, rtol=1e-12, atol=1e-12)


def test_the_model_takes_no_temperature_input():
    params = list(inspect.signature(TBotan.forward).parameters)
    assert params == ["self", "x", "edge_index", "edge_attr"]


def test_float32_forward_and_backward_work_on_a_larger_graph():
    model = small_model(dtype=torch.float32)
    x, edge_index, edge_attr = random_graph(n=300, degree=20, dtype=torch.float32)
    out = model(x, edge_index, edge_attr)
    (out.cb.sum() + out.edge.sum() + out.t_pred).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.all(torch.isfinite(g)) for g in grads)
    assert np.isfinite(out.t_pred.item())
