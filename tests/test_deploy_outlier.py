"""The int8-token simulation against the real runtimes on an outlier: one Linear, one token 100x the rest.

Per-token activation quantization gives the outlier token its own scale, so the other tokens keep
their precision; a per-tensor simulation would not. ExecuTorch (XNNPACK ``qd8``) and LiteRT (hybrid
FULLY_CONNECTED) must both match :func:`calibration.deploy.simulate` in ``int8-token`` mode within the
tolerance of the full-model check in ``tests/test_build_integer_targets.py`` (error below 1e-4 of
each token's output scale, and at most a third of the float-activation model's error).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from calibration.deploy import simulate
from calibration.primitives import fake_quantize_per_token_int8
from targets.base import PalettizedWeight

TOKENS, IN, OUT, OUTLIER = 8, 32, 16, 3


class _OneLinear(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.fc = nn.Linear(IN, OUT, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture(scope="module")
def case():
    """A Linear with int4 codes (zero point 0) and an input whose token ``OUTLIER`` is 100x the others."""
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-8, 8, (OUT, IN), generator=g).to(torch.int8)
    scales = torch.rand(OUT, generator=g) * 0.02 + 0.01
    weight = codes.float() * scales[:, None]
    x = torch.randn(1, TOKENS, IN, generator=g)
    x[0, OUTLIER] *= 100
    w = PalettizedWeight(path="fc", weight=weight, lowers=torch.tensor([-8 * scales.min().item()]),
                         uppers=torch.tensor([7 * scales.max().item()]), bits=4, quantizers=("fc.weight",),
                         codes=codes, scales=scales)
    model = _OneLinear(weight).eval()
    with torch.no_grad():
        simulated, float_acts = simulate(model, "int8-token")(x), model(x)
    return model, w, x, simulated, float_acts


def _executorch(model, w, x, tmp: Path) -> torch.Tensor:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.runtime import Runtime
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from targets.base import quiet_tools
    from targets.executorch import _lower, _with_our_codes

    with quiet_tools():
        quantizer = XNNPACKQuantizer()
        quantizer.set_module_type(nn.Linear, get_symmetric_quantization_config(
            is_per_channel=True, is_dynamic=True, weight_qmin=-8, weight_qmax=7))
        prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
        prepared(x)
        described = _lower({"forward": (_with_our_codes(convert_pt2e(prepared), [w]), x)}, tmp / "fc.pte")
        assert described["xnnpack_partitions"] == 1
        method = Runtime.get().load_program(tmp / "fc.pte").load_method("forward")
        return method.execute([x])[0]


def _litert(model, w, x, tmp: Path) -> torch.Tensor:
    from unittest import mock

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    from targets.base import quiet_tools
    from targets.tflite import _QUIET_CONVERSION, _with_packed_weights

    with quiet_tools(), mock.patch.dict(os.environ, _QUIET_CONVERSION):  # as the target converts (a first import
        import litert_torch  # fixes the converter's log level for the process: tests/test_build_quiet.py)

        litert_torch.convert(model, (x,)).export(str(tmp / "float.tflite"))
        flatbuffer = flatbuffer_utils.read_model(str(tmp / "float.tflite"))
        assert _with_packed_weights(flatbuffer, [w], "int4") == 1
        flatbuffer_utils.write_model(flatbuffer, str(tmp / "fc.tflite"))
    interpreter = Interpreter(model_path=str(tmp / "fc.tflite"))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], x.numpy().astype(np.float32))
    interpreter.invoke()
    return torch.from_numpy(interpreter.get_tensor(out["index"]).copy()).reshape(1, TOKENS, OUT)


@pytest.mark.parametrize("runtime", [_executorch, _litert], ids=["executorch", "litert"])
def test_outlier_token_runs_like_the_per_token_simulation(case, runtime, tmp_path):
    model, w, x, simulated, float_acts = case
    out = runtime(model, w, x, tmp_path)
    scale = simulated.abs().amax(-1)  # (1, TOKENS): each token's output magnitude
    sim_err = ((out - simulated).abs().amax(-1) / scale)[0]
    float_err = ((out - float_acts).abs().amax(-1) / scale)[0]
    assert sim_err.max() < 1e-4
    assert torch.all(sim_err <= float_err / 3)  # int8 per token, not float activations, is what runs
    # A per-tensor int8 simulation would give the small tokens the outlier's step: far from the runtime.
    with torch.no_grad():
        per_tensor = model(fake_quantize_per_token_int8(x.reshape(1, -1)).reshape(x.shape))
    per_tensor_err = ((out - per_tensor).abs().amax(-1) / scale)[0]
    small = torch.arange(TOKENS) != OUTLIER
    assert per_tensor_err[small].min() > 10 * sim_err.max()


def _textbook_per_token_int8(x: torch.Tensor) -> torch.Tensor:
    """``round(x / s)`` with ``s = range / 255``: the usual formula, which XNNPACK does not compute."""
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    s = (hi - lo) / 255
    zp = torch.round(-128 - lo / s).clamp(-128, 127)
    return (torch.clamp(torch.round(x / s) + zp, -128, 127) - zp) * s


@pytest.mark.parametrize("runtime", [_executorch, _litert], ids=["executorch", "litert"])
def test_a_half_step_tie_rounds_as_xnnpack_does(case, runtime, tmp_path):
    """A token whose value lies within an ulp of a half step: ``x m`` (m = 255 / range, in float32) is just below
    11.5 while ``x / s`` is exactly 11.5, so the textbook formula rounds up and XNNPACK down. The simulation must
    round as the runtimes do."""
    model, w, _, _, _ = case
    x = torch.zeros(1, TOKENS, IN)
    x[0, :, :3] = torch.tensor([-12.550505638122559, 24.632831573486328, 1.6768956184387207])
    ours, textbook = fake_quantize_per_token_int8(x), _textbook_per_token_int8(x)
    assert (ours - textbook).abs().max() > 0.1  # the two formulas disagree on this input
    out = runtime(model, w, x, tmp_path)
    with torch.no_grad():
        simulated, other = simulate(model, "int8-token")(x), model(textbook)
    assert (out - simulated).abs().max() < 1e-5 < (out - other).abs().max()
