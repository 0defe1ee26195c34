"""Quantizer placement on SwinIR, no weight copies, the FP teacher switch, calibration, configs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from calibration.config import MinMaxConfig, PercentileConfig, QuantConfig
from calibration.minmax import minmax_bounds
from calibration.observe import calibrate_
from calibration.percentile import percentile_bounds
from calibration.qmodel import (
    QuantLinear,
    QuantQKV,
    dequantize_,
    quant_config,
    quantization_disabled,
    quantize_,
    quantizers,
)
from calibration.quantizer import Distribution, Quantizer, Role
from srcore.checkpoint import weights_sha256
from srcore.model import build_model

BLOCK = "layers.0.residual_group.blocks.0"
BLOCK_NAMES = [
    "attn.q.act", "attn.q.weight", "attn.k.act", "attn.k.weight", "attn.v.act", "attn.v.weight",
    "attn.bmm1_q", "attn.bmm1_k", "attn.bmm2_attn", "attn.bmm2_v",
    "attn.proj.act", "attn.proj.weight", "mlp.fc1.act", "mlp.fc1.weight", "mlp.fc2.act", "mlp.fc2.weight",
]  # fmt: skip
EXPONENTIAL = {"attn.bmm2_attn", "mlp.fc2.act"}

pytestmark = pytest.mark.usefixtures("one_thread")



def _tiny(seed: int = 0) -> nn.Module:
    """Tiny SwinIR with perturbed parameters, so the quantized body visibly matters."""
    torch.manual_seed(seed)
    model = build_model("tiny", 4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def calib_batch() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_placement_names_and_distributions():
    model = quantize_(_tiny(), QuantConfig())
    table = quantizers(model)
    assert len(table) == 16 * 4  # tiny: 2 RSTB x 2 blocks
    assert list(table)[:16] == [f"{BLOCK}.{n}" for n in BLOCK_NAMES]
    for name, q in table.items():
        local = name.split("blocks.", 1)[1].split(".", 1)[1]
        assert q.name == name and q.bits == 4
        assert q.role is (Role.WEIGHT if local.endswith(".weight") else Role.ACTIVATION)
        assert q.distribution is (Distribution.EXPONENTIAL if local in EXPONENTIAL else Distribution.BELL)
    attn = model.layers[0].residual_group.blocks[0].attn
    assert isinstance(attn.qkv, QuantQKV) and isinstance(attn.proj, QuantLinear)
    assert attn.bmm2_attn is table[f"{BLOCK}.attn.bmm2_attn"]
    assert quant_config(model) == QuantConfig()


def test_swinir_light_has_384_quantizers():
    table = quantizers(quantize_(build_model("light", 4), QuantConfig(weight_bits=2, act_bits=2)))
    roles = [q.role for q in table.values()]
    assert len(table) == 384
    assert roles.count(Role.WEIGHT) == 144 and roles.count(Role.ACTIVATION) == 240
    assert sum(q.distribution is Distribution.EXPONENTIAL for q in table.values()) == 48
    assert {q.bits for q in table.values()} == {2}


def test_weights_are_not_copied():
    model = _tiny()
    block = model.layers[0].residual_group.blocks[0]
    qkv, proj, fc2 = block.attn.qkv, block.attn.proj, block.mlp.fc2
    fp_keys = set(model.state_dict())
    fp_params = {id(p) for p in model.parameters()}
    quantize_(model, QuantConfig())
    new = model.layers[0].residual_group.blocks[0]
    assert new.attn.qkv.weight is qkv.weight and new.attn.qkv.bias is qkv.bias
    assert new.attn.proj.weight is proj.weight and new.mlp.fc2.bias is fc2.bias
    c = qkv.in_features
    for i, part in enumerate((new.attn.qkv.q, new.attn.qkv.k, new.attn.qkv.v)):
        w = part.linear_weight()
        assert w.data_ptr() == qkv.weight.data_ptr() + i * c * c * w.element_size()
        assert part.linear_bias().data_ptr() == qkv.bias.data_ptr() + i * c * w.element_size()
    # The only new Parameters are the bounds; FP state-dict keys are kept, each once.
    extra = {id(p) for p in model.parameters()} - fp_params
    assert len(extra) == 2 * len(quantizers(model))
    keys = set(model.state_dict())
    assert fp_keys <= keys and all(k.endswith((".lower", ".upper")) for k in keys - fp_keys)


def test_quantization_disabled_is_exactly_fp_and_dequantize_restores(calib_batch):
    model = _tiny()
    x = torch.rand(1, 3, 24, 40)
    sha = weights_sha256(model)
    with torch.no_grad():
        ref = model(x)
    originals = [m for m in model.modules() if isinstance(m, nn.Linear)]
    calibrate_(quantize_(model, QuantConfig(2, 2)), "minmax", calib_batch)
    with torch.no_grad():
        quantized = model(x)
        with quantization_disabled(model):
            assert torch.equal(model(x), ref)
            assert weights_sha256(model) == sha
            assert len(quantizers(model)) == 64  # still reachable for DQC
        assert torch.equal(model(x), quantized)
        with pytest.raises(RuntimeError), quantization_disabled(model):
            raise RuntimeError("boom")
        assert torch.equal(model(x), quantized)  # restored after the exception
    dequantize_(model)
    assert [m for m in model.modules() if isinstance(m, nn.Linear)] == originals
    assert not quantizers(model) and weights_sha256(model) == sha


def test_8bit_minmax_is_close_to_fp_and_2bit_is_not(calib_batch):
    model = _tiny()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
    psnr = {}
    for bits in (8, 2):
        calibrate_(quantize_(model, QuantConfig(bits, bits)), MinMaxConfig(), calib_batch)
        with torch.no_grad():
            psnr[bits] = _psnr(model(x), ref)
        dequantize_(model)
    assert psnr[8] > 35 and psnr[2] < psnr[8] - 10


def test_weights_only_config(calib_batch):
    model = _tiny()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    calibrate_(quantize_(model, QuantConfig(weight_bits=4, act_bits=None)), "minmax", calib_batch)
    table = quantizers(model)
    assert len(table) == 24 and all(q.role is Role.WEIGHT for q in table.values())
    attn = model.layers[0].residual_group.blocks[0].attn
    assert isinstance(attn.bmm2_attn, torch.nn.Identity) and attn.qkv.q.act_quant is None
    with torch.no_grad():
        assert 20 < _psnr(model(x), ref) < 100


def test_mixed_bits_calibration_and_gradients(calib_batch):
    model = quantize_(_tiny(), QuantConfig(weight_bits=4, act_bits=8))
    calibrate_(model, PercentileConfig(percentile=0.5), calib_batch)
    table = quantizers(model)
    assert {q.bits for q in table.values() if q.role is Role.WEIGHT} == {4}
    assert {q.bits for q in table.values() if q.role is Role.ACTIVATION} == {8}
    for q in table.values():
        assert q.calibrator is None and math.isfinite(q.lower.item()) and q.lower.item() < q.upper.item()
    same = [table[f"{BLOCK}.attn.{n}.act"] for n in "qkv"]  # identical LN1 input
    assert len({(q.lower.item(), q.upper.item()) for q in same}) == 1
    # DQC trains only the bounds: every one gets a gradient through Eq. 2.
    model(calib_batch[:1]).abs().mean().backward()
    assert all(q.lower.grad is not None and q.upper.grad is not None for q in table.values())


def test_minmax_and_percentile_bounds():
    x = (torch.randperm(10_000) + 1).float().view(100, 100)  # the values 1..10000
    assert minmax_bounds(x) == (1.0, 10_000.0)
    assert percentile_bounds(x, 1.0) == (100.0, 9901.0)  # nearest rank: k = 100th smallest / largest
    assert percentile_bounds(x, 0.01) == (1.0, 10_000.0)  # k = 1: MinMax
    from calibration.percentile import _kth

    flat = torch.randn(100_003, generator=torch.Generator().manual_seed(0))
    ordered = flat.sort().values
    for k in (1, 11, 5000):  # the CUDA selection (topk) and the CPU one (kthvalue) agree exactly
        assert _kth(flat, k, False, use_topk=True) == _kth(flat, k, False, use_topk=False) == ordered[k - 1]
        assert _kth(flat, k, True, use_topk=True) == _kth(flat, k, True, use_topk=False) == ordered[-k]
    with pytest.raises(ValueError, match="NaN"):
        minmax_bounds(torch.tensor([1.0, float("nan")]))


def test_quantizer_modes():
    q = Quantizer("x", 4, Role.ACTIVATION, Distribution.BELL)
    x = torch.linspace(-2, 2, 9)
    with pytest.raises(RuntimeError, match="no bounds"):
        q(x)
    seen = []
    q.calibrator = lambda quantizer, t: (seen.append(t), quantizer.set_bounds_(-1.0, 1.0))
    assert q(x) is x and seen[0] is x  # observer: bounds set, input passed through
    q.calibrator = None
    assert q(x).abs().max() == 1.0
    q.enabled = False
    assert q(x) is x
    with pytest.raises(ValueError, match="finite"):
        q.set_bounds_(0.0, float("inf"))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 8\)"):
        Quantizer("y", 16, Role.WEIGHT, Distribution.BELL)


def test_invalid_configs_and_calls(calib_batch):
    bad = ({"weight_bits": 5}, {"act_bits": 1}, {"weight_bits": "4"}, {"act_bits": True}, {"weight_bits": None})
    for kwargs in bad:
        with pytest.raises(ValueError, match="bits"):
            QuantConfig(**kwargs)
    assert QuantConfig(4, 8).label == "W4A8" and QuantConfig(4, None).label == "W4A16"
    for config in (QuantConfig(), QuantConfig(2, None)):
        assert QuantConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown QuantConfig keys"):
        QuantConfig.from_dict({**QuantConfig().to_dict(), "granularity": "channel"})
    with pytest.raises(ValueError, match="_type"):
        QuantConfig.from_dict({**QuantConfig().to_dict(), "_type": "DobiConfig"})
    with pytest.raises(ValueError, match="percentile"):
        PercentileConfig(percentile=60)
    model = _tiny()
    with pytest.raises(ValueError, match="QuantConfig"):
        quantize_(model, {"weight_bits": 4})
    with pytest.raises(ValueError, match="no quantizers"):
        calibrate_(model, "minmax", calib_batch)
    quantize_(model, QuantConfig())
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(model, QuantConfig())
    with pytest.raises(ValueError, match="allowed"):
        calibrate_(model, "kmeans", calib_batch)
    with pytest.raises(ValueError, match="lr_batch"):
        calibrate_(model, "minmax", calib_batch[0])
