"""Deploy-mode calibration (issue 21): the student runs like the runtime, the bounds file says so."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from calibration.bounds import bounds_from_model, load_bounds, save_bounds
from calibration.config import DeployMode, QuantConfig
from calibration.deploy import deploy_mode_mismatch, deploy_simulation, round_fp16, simulate
from calibration.dqc import DqcConfig, distill_bounds_, distillation_loss
from calibration.observe import calibrate_
from calibration.qmodel import dequantize_, quantization_disabled, quantize_, quantizers
from calibration.quantizer import Role
from srcore.model import build_model

TILE = 16


def _per_token_int8_reference(x: torch.Tensor) -> torch.Tensor:
    """XNNPACK's qd8 in float64: asymmetric int8 per row over [min(x, 0), max(x, 0)]."""
    x = x.double()
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    s = (hi - lo) / 255
    zp = torch.round(-128 - lo / s).clamp(-128, 127)
    return (torch.clamp(torch.round(x / s) + zp, -128, 127) - zp) * s


def _student(mode="int8-token", bits=3):
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    quantize_(model, QuantConfig(bits, None if mode != "paper" else bits, deploy=mode))
    calibrate_(model, "dobi", torch.rand(4, 3, TILE, TILE))
    return model


def test_config_validates_and_old_files_read_as_paper_mode():
    q = QuantConfig(4, None, deploy="int8-token")
    assert q.deploy is DeployMode.INT8_TOKEN and q.label == "W4-int8-token"
    assert QuantConfig.from_dict(q.to_dict()) == q
    with pytest.raises(ValueError, match="act_bits must be None"):
        QuantConfig(4, 4, deploy="fp16")
    with pytest.raises(ValueError, match="deploy must be one of"):
        QuantConfig(4, None, deploy="int4")
    old = {"_type": "QuantConfig", "version": 1, "weight_bits": 3, "act_bits": 3}  # written before issue 21
    assert QuantConfig.from_dict(old) == QuantConfig(3, 3, deploy="paper", zero_softmax_lower=False)


def test_int8_token_simulation_matches_a_float64_reference_and_the_targets():
    from targets.base import dynamic_int8_linears

    linear = torch.nn.Linear(20, 6)
    x = torch.randn(2, 9, 20) * torch.linspace(0.1, 5, 9)[:, None]
    expected = torch.nn.functional.linear(_per_token_int8_reference(x), linear.weight.double(), linear.bias.double())
    with torch.no_grad():
        got = simulate(linear, "int8-token")(x)
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)
        assert torch.equal(dynamic_int8_linears(linear)(x), got)  # the targets use this very simulation
        assert (got - linear(x)).abs().max() > 1e-3  # and it is not the float Linear


def test_fp16_simulation_rounds_linear_inputs_and_outputs():
    x = torch.randn(100) * 10
    np.testing.assert_array_equal(round_fp16(x).numpy(), x.numpy().astype(np.float16).astype(np.float32))
    linear = torch.nn.Linear(8, 8)
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = round_fp16(torch.nn.functional.linear(round_fp16(x), linear.weight, linear.bias))
        assert torch.equal(simulate(linear, DeployMode.FP16)(x), expected)


def test_student_in_deploy_mode_equals_the_targets_simulation():
    """The quantized student under deploy_simulation computes what the target simulation of its deploy model does."""
    from targets.base import deploy_model, dynamic_int8_linears

    student = _student()
    assert all(q.role is Role.WEIGHT for q in quantizers(student).values())  # no activation quantizers
    bounds = bounds_from_model(student, method="dobi", settings={}, weights_name="tiny")
    deploy, _ = deploy_model(dequantize_(copy.deepcopy(student)), bounds)
    x = torch.rand(1, 3, TILE, TILE)
    with torch.no_grad(), deploy_simulation(student, "int8-token"):
        ours = student(x)
    with torch.no_grad():
        theirs = dynamic_int8_linears(deploy)(x)
        plain = student(x)  # hooks removed on exit
    assert torch.equal(ours, theirs)  # the same arithmetic, op for op
    assert (plain - ours).abs().max() > 1e-6  # and int8 activations do change the output


def test_dqc_trains_weight_bounds_through_the_simulation():
    student = _student()
    x = torch.rand(2, 3, TILE, TILE)
    config = DqcConfig(iterations=1, batch_size=2, lr_patch=TILE, loss_scaling="paper", learning_rate=1e-9)

    def loss_of(simulated: bool) -> float:
        feats = []
        handles = [layer.residual_group.register_forward_hook(lambda m, i, o: feats.append(o))
                   for layer in student.layers]
        with torch.no_grad():
            with quantization_disabled(student):
                out_fp = student(x)
            fp_feats, feats[:] = list(feats), []
            with deploy_simulation(student, "int8-token" if simulated else "paper"):
                out_q = student(x)
        for h in handles:
            h.remove()
        return distillation_loss(out_q, out_fp, feats, fp_feats, config).item()

    expected, unsimulated = loss_of(True), loss_of(False)
    result = distill_bounds_(student, lambda n: x, config, progress=False)
    # DQC's first loss is the simulated student's: 10x closer to it than the unsimulated loss is.
    assert abs(result.losses[0] - expected) < 0.1 * abs(unsimulated - expected)
    # Gradients reach every weight bound through the straight-through rounding.
    student.zero_grad()
    with deploy_simulation(student, "int8-token"):
        student(x).abs().mean().backward()
    grads = [q.upper.grad for q in quantizers(student).values()]
    assert all(g is not None and g.abs() > 0 for g in grads)


def test_deploy_mode_is_recorded_and_mismatch_is_reported(tmp_path):
    student = _student("fp16", bits=4)
    bounds = bounds_from_model(student, method="dobi", settings={}, weights_name="tiny")
    loaded = load_bounds(save_bounds(bounds, tmp_path / "b.safetensors"))
    assert loaded.quant_config.deploy is DeployMode.FP16
    assert deploy_mode_mismatch(loaded, "fp16") is None
    warning = deploy_mode_mismatch(loaded, DeployMode.INT8_TOKEN)
    assert "'fp16'" in warning and "--deploy int8-token" in warning
    paper = bounds_from_model(_student("paper", bits=4), method="dobi", settings={}, weights_name="tiny")
    assert "'paper'" in deploy_mode_mismatch(paper, "int8-token")
