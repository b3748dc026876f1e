"""bf16 autocast of training (``training.amp``) where bf16 is native, on the CPU too.

``native_bf16`` reads the CPU's flags; the Trainer turns autocast on only where it is native
and otherwise warns and trains in float32.  Under autocast the decoders, the sums over edges,
the losses and the running statistics of the standardised readout stay float32, and one
training step agrees with the float32 step to bf16 accuracy (a matrix product in bf16 has
about 3 significant digits: the losses agree to 2 %).
"""

from __future__ import annotations

import logging

import pytest
import torch

from learning_helpers import small_config, write_synthetic
from tbotan import devices
from tbotan.learning.losses import loss_weights
from tbotan.learning.model import TBotan
from tbotan.learning.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

BF16_SUPPORTED = torch.backends.mkldnn.is_available() and bool(
    torch.ops.mkldnn._is_mkldnn_bf16_supported()
)


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "fma"})
    assert devices.native_bf16(cpu) is False
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert devices.native_bf16(cpu) is BF16_SUPPORTED
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"amx_bf16"})
    assert devices.native_bf16(cpu) is BF16_SUPPORTED


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("amp")
    train, val = d / "train.h5", d / "val.h5"
    write_synthetic(train, seeds=(0, 1), split="train")
    write_synthetic(val, seeds=(2,), split="validation")
    return train, val


def trainer(files, tmp_path, amp: bool) -> Trainer:
    config = small_config(amp=amp, warmup_epochs=0, augment=False)
    config["model"]["global_readout"] = "standardized"
    return Trainer(config, [files[0]], [files[1]], tmp_path, seed=0, device="cpu")


def test_without_native_bf16_amp_warns_and_trains_in_float32(files, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr("tbotan.learning.training.native_bf16", devices.native_bf16)
    with caplog.at_level(logging.WARNING):
        t = trainer(files, tmp_path, amp=True)
    assert t.amp is False
    assert "no native bf16" in caplog.text and "float32" in caplog.text


@pytest.mark.skipif(not BF16_SUPPORTED, reason="this PyTorch build has no oneDNN bf16 kernels")
def test_bf16_step_matches_the_float32_step(files, tmp_path, monkeypatch):
    monkeypatch.setattr("tbotan.learning.training.native_bf16", lambda device: True)
    ref, low = trainer(files, tmp_path / "f32", False), trainer(files, tmp_path / "bf16", True)
    assert low.amp is True and ref.amp is False
    low.model.load_state_dict(ref.model.state_dict())
    weights = loss_weights(ref.training, 1, ref.lambda_global)
    data = ref.train_graphs.sample(0)
    (out_ref,), terms_ref = ref.batch_losses([data], weights)
    (out_low,), terms_low = low.batch_losses([data], weights)
    # what leaves the model in float32 under autocast: decoders (C_B, edges, T)
    for name in ("cb", "edge", "t_pred"):
        assert getattr(out_low, name).dtype == torch.float32, name
    assert low.model.pool_mean.dtype == torch.float32  # running statistics stay float32
    assert torch.isfinite(low.model.pool_mean).all() and torch.isfinite(low.model.pool_var).all()
    for term in ("loss", "loss_node", "loss_edge"):
        a, b = float(terms_ref[term].detach()), float(terms_low[term].detach())
        assert b == pytest.approx(a, rel=0.02), (term, a, b)
    rho = torch.corrcoef(torch.stack([out_ref.cb.detach(), out_low.cb.detach()]))[0, 1]
    assert rho > 0.999
    terms_low["loss"].backward()  # gradients flow through the bf16 products
    grads = [p.grad for p in low.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_standardized_readout_keeps_float32_statistics_under_autocast():
    """The running pooled-vector statistics are updated from bf16 pooled vectors in float32
    (the update failed on a dtype mismatch before)."""
    model = TBotan(
        edge_features=4, hidden=16, message_passing_steps=2, global_readout="standardized"
    )
    model.train()
    pooled = torch.randn(3, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model._readout_input(pooled, 0)
    assert model.pool_mean.dtype == torch.float32 and torch.isfinite(out).all()
    expected = 0.01 * pooled.float().mean(dim=0)
    torch.testing.assert_close(model.pool_mean[0], expected)
