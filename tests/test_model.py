"""T-BOTAN: the equations of docs/physics.md §7, symmetries, and no temperature input."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from tbotan import config as cfgmod
from tbotan.learning.model import MLP, TBotan, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


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
    """docs/physics.md §7 written literally, with concatenations and an explicit loop over nodes."""
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
        edge_features=3,
        node_features=2,
        hidden=24,
        mlp_layers=3,
        message_passing_steps=5,
        global_readout=config["model"]["global_readout"],
        global_momentum=config["model"]["global_momentum"],
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
    assert params == ["self", "x", "edge_index", "edge_attr", "batch", "num_graphs"]


def test_float32_forward_and_backward_work_on_a_larger_graph():
    model = small_model(dtype=torch.float32)
    x, edge_index, edge_attr = random_graph(n=300, degree=20, dtype=torch.float32)
    out = model(x, edge_index, edge_attr)
    (out.cb.sum() + out.edge.sum() + out.t_pred).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.all(torch.isfinite(g)) for g in grads)
    assert np.isfinite(out.t_pred.item())


# ---------------------------------------------------------------------------- standardisation


def test_standardisation_is_a_reparameterisation_of_the_papers_network():
    """Standardised inputs and outputs equal an unstandardised model whose encoder's first layer
    and decoders' last layers absorb the shifts and scales (to rounding)."""
    model = small_model(seed=11)
    edge_shift = torch.tensor([0.0, 0.0, 0.0, 1.2], dtype=torch.float64)
    edge_scale = torch.tensor([0.8, 0.8, 0.8, 0.3], dtype=torch.float64)
    target_shift, target_scale = [0.7, -0.02, 0.6], [0.15, 0.3, 0.12]
    model.set_standardization(edge_shift, edge_scale, target_shift, target_scale)
    plain = small_model(seed=11)
    plain.load_state_dict(model.state_dict())
    plain.set_standardization(torch.zeros(4), torch.ones(4), [0.0] * 3, [1.0] * 3)
    with torch.no_grad():
        first = plain.edge_encoder.hidden[0]
        first.bias -= (first.weight * (edge_shift / edge_scale)).sum(1)
        first.weight /= edge_scale
        for decoder, shift, scale in zip(
            (plain.node_decoder, plain.edge_decoder, plain.global_decoder),
            target_shift,
            target_scale,
            strict=True,
        ):
            decoder.output.weight *= scale
            decoder.output.bias.mul_(scale).add_(shift)
    x, edge_index, edge_attr = random_graph(seed=11)
    for got, expected in zip(
        model(x, edge_index, edge_attr), plain(x, edge_index, edge_attr), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # and the decoders start at the target means when their last layer is zero
    with torch.no_grad():
        for decoder in (model.node_decoder, model.edge_decoder, model.global_decoder):
            decoder.output.weight.zero_()
            decoder.output.bias.zero_()
    out = model(x, edge_index, edge_attr)
    assert torch.all(out.cb == 0.7) and torch.all(out.edge == -0.02) and out.t_pred == 0.6


def test_files_without_standardisation_buffers_load_as_the_papers_network():
    model = small_model(seed=12)
    state = {k: v for k, v in model.state_dict().items() if "shift" not in k and "scale" not in k}
    fresh = small_model(seed=13)
    fresh.load_state_dict(state)
    x, edge_index, edge_attr = random_graph(seed=12)
    torch.testing.assert_close(
        fresh(x, edge_index, edge_attr).cb, model(x, edge_index, edge_attr).cb
    )
    with pytest.raises(ValueError, match="positive"):
        fresh.set_standardization(torch.zeros(4), torch.zeros(4), [0.0] * 3, [1.0] * 3)


# ---------------------------------------------------------------------------- batches


def batch_of(graphs):
    """Concatenate (x, edge_index, edge_attr) graphs PyG-style; adds the (N,) batch vector."""
    xs, edges, attrs, batch, offset = [], [], [], [], 0
    for b, (x, edge_index, edge_attr) in enumerate(graphs):
        xs.append(x)
        edges.append(edge_index + offset)
        attrs.append(edge_attr)
        batch.append(torch.full((x.shape[0],), b, dtype=torch.long))
        offset += x.shape[0]
    return torch.cat(xs), torch.cat(edges, 1), torch.cat(attrs), torch.cat(batch)


@pytest.mark.parametrize("readout", ["paper", "standardized"])
def test_batched_graphs_are_pooled_separately(readout):
    """Each graph of a batch gets exactly its own outputs: pooling never mixes graphs."""
    model = small_model(seed=14, global_readout=readout).eval()
    graphs = [random_graph(n=n, seed=s) for n, s in ((40, 1), (25, 2), (33, 3))]
    if readout == "standardized":
        model.calibrate_global(graphs)
    x, edge_index, edge_attr, batch = batch_of(graphs)
    out = model(x, edge_index, edge_attr, batch, 3)
    assert out.t_pred.shape == (3,) and out.embedding.shape == (3, 16)
    n0 = e0 = 0
    for b, graph in enumerate(graphs):
        alone = model(*graph)
        n1, e1 = n0 + graph[0].shape[0], e0 + graph[1].shape[1]
        torch.testing.assert_close(out.cb[n0:n1], alone.cb, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.edge[e0:e1], alone.edge, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.t_pred[b], alone.t_pred, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out.embedding[b], alone.embedding, rtol=1e-10, atol=1e-12)
        n0, e0 = n1, e1
    # a graph whose nodes are pooled with another's would change: perturb graph 0 only
    x2 = x.clone()
    x2[:40] = x2[:40].flip(1)
    moved = model(x2, edge_index, edge_attr, batch, 3)
    assert not torch.allclose(moved.t_pred[0], out.t_pred[0])
    torch.testing.assert_close(moved.t_pred[1:], out.t_pred[1:], rtol=1e-12, atol=1e-12)


def test_a_batch_of_one_graph_equals_the_graph_alone():
    model = small_model(seed=15)
    graph = random_graph(seed=15)
    alone = model(*graph)
    x, edge_index, edge_attr, batch = batch_of([graph])
    batched = model(x, edge_index, edge_attr, batch)
    torch.testing.assert_close(batched.cb, alone.cb, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(batched.t_pred[0], alone.t_pred, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- global readout


def probe_data(n_graphs=24, seed=0):
    """Graphs whose temperature is linearly readable from the pooled node states, but only as a
    small part of them: one structure whose edge distances shift by ±0.5 % with T (plus noise
    of a tenth of that), as the temperature-dependent part of real pooled states is small."""
    g = torch.Generator().manual_seed(seed)
    x, edge_index, base = random_graph(n=30, degree=5, seed=100)
    base = base * 0.05 + 1.0
    graphs, temperatures = [], []
    for i in range(n_graphs):
        T = 0.5 + 0.4 * i / (n_graphs - 1)
        edge_attr = base.clone()
        noise = torch.randn(base.shape[0], generator=g, dtype=torch.float64)
        edge_attr[:, 3] += 0.005 * (T - 0.7) / 0.2 + 0.0005 * noise
        graphs.append((x, edge_index, edge_attr))
        temperatures.append(T)
    return graphs, torch.tensor(temperatures, dtype=torch.float64)


def train_global_head(model, graphs, temperatures, steps=300, lr=3e-3):
    """Train only MLP_g and the global decoder (trunk frozen); return the final T RMSE."""
    for p in model.parameters():
        p.requires_grad_(False)
    head = [*model.global_mlp.parameters(), *model.global_decoder.parameters()]
    for p in head:
        p.requires_grad_(True)
    model.set_standardization(
        torch.zeros(4), torch.ones(4), [0.0, 0.0, float(temperatures.mean())], [1.0, 1.0, 0.1]
    )
    model.calibrate_global(graphs)
    optimizer = torch.optim.Adam(head, lr=lr)
    x, edge_index, edge_attr, batch = batch_of(graphs)
    model.train()
    for _ in range(steps):
        out = model(x, edge_index, edge_attr, batch, len(graphs))
        loss = ((out.t_pred - temperatures) / 0.1).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        t_pred = model(x, edge_index, edge_attr, batch, len(graphs)).t_pred
    return float((t_pred - temperatures).square().mean().sqrt())


def test_standardized_global_head_learns_T_where_a_linear_probe_can():
    """On a frozen random trunk, a ridge probe of the pooled node states reads T; the
    standardised global head alone learns it too (RMSE < 30 % of the spread of T)."""
    torch.manual_seed(0)
    graphs, temperatures = probe_data()
    trunk = small_model(seed=16, global_readout="standardized")
    with torch.no_grad():
        pooled = trunk.eval().pooled_states(*batch_of(graphs)[:3], batch_of(graphs)[3], len(graphs))
    std = pooled[-1].std(0)
    live = std > 0
    features = (pooled[-1][:, live] - pooled[-1][:, live].mean(0)) / std[live]
    design = torch.cat([features, torch.ones(len(graphs), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, temperatures[:, None]).solution[:, 0]
    centred = design
    probe_rmse = float((centred @ coef - temperatures).square().mean().sqrt())
    spread = float(temperatures.std(correction=0))
    assert probe_rmse < 0.1 * spread, probe_rmse
    rmse = train_global_head(trunk, graphs, temperatures)
    assert rmse < 0.3 * spread, (rmse, spread)


def test_decoders_stay_float32_under_bf16_autocast():
    """Under mixed precision the trunk may run in bf16, the decoders do not (bf16 would quantise
    C_B to ≈ 0.004); checked with CPU autocast, the same code path as CUDA's."""
    model = small_model(seed=17, dtype=torch.float32)
    x, edge_index, edge_attr = random_graph(seed=17, dtype=torch.float32)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(x, edge_index, edge_attr)
    assert out.cb.dtype == out.edge.dtype == out.t_pred.dtype == torch.float32
    plain = model(x, edge_index, edge_attr)
    assert len(torch.unique(out.cb)) > len(out.cb) // 2  # not quantised to a few levels
    torch.testing.assert_close(out.cb, plain.cb, rtol=0.1, atol=0.1)
