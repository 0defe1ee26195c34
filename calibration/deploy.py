"""Deploy-mode simulation: run a model's Linears the way a runtime does, for calibration and for the targets.

2DQuant (https://arxiv.org/abs/2406.06649) tunes its weight bounds against b-bit fake-quantized
activations, but no runtime we ship runs that: ExecuTorch/XNNPACK and TFLite/LiteRT quantize each
Linear input to int8 per token at run time, Core ML computes in fp16. Issue 21: calibrate the
student in the mode that ships (:class:`calibration.config.DeployMode`, recorded in the bounds
file's ``QuantConfig``), with the very simulation the targets use (:func:`simulate`).

- ``INT8_TOKEN``: every Linear input goes through :func:`calibration.primitives.fake_quantize_per_token_int8`.
- ``FP16``: every Linear input and output is rounded to fp16. Core ML runs every op in fp16; this
  rounds only the tensors that meet the quantized weights (LayerNorm, softmax and the attention
  matmuls stay fp32 here), so it is a lower bound on Core ML's fp16 error.
- ``PAPER``: nothing; the activation quantizers are part of the quantized model.

The simulation hooks every ``nn.Linear`` and every :class:`calibration.qmodel.QuantLinear`, so it
works on an FP deploy model (targets) and on a quantized student (DQC: the FP teacher, swapped in by
``quantization_disabled``, has plain Linears of the original tree, which are not hooked). Rounding
passes gradients straight through (the STE) when the input needs them, so DQC can train the
weight bounds behind it; without autograd the value is exactly the runtime's.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator

import torch
from torch import nn

from calibration.config import DeployMode
from calibration.primitives import fake_quantize_per_token_int8
from calibration.qmodel import QuantLinear

__all__ = ["DeployMode", "deploy_mode_mismatch", "deploy_simulation", "round_fp16", "simulate"]


def round_fp16(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the nearest fp16 value (round to nearest even; beyond 65504 becomes inf), in ``x``'s dtype."""
    return x.to(torch.float16).to(x.dtype)


def _straight_through(round_fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return round_fn(x)
        with torch.no_grad():
            rounded = round_fn(x)
        return x + (rounded - x).detach()  # value of rounded (to an ulp), gradient of x

    return apply


_PER_TOKEN_INT8 = _straight_through(fake_quantize_per_token_int8)
_FP16 = _straight_through(round_fp16)


def _attach(model: nn.Module, mode: DeployMode) -> list[torch.utils.hooks.RemovableHandle]:
    """Register the mode's hooks on every Linear of ``model``; return the handles."""
    mode = DeployMode(mode)
    if mode is DeployMode.PAPER:
        return []
    handles = []
    for module in model.modules():
        if not isinstance(module, (nn.Linear, QuantLinear)):
            continue
        if mode is DeployMode.INT8_TOKEN:
            handles.append(module.register_forward_pre_hook(lambda _, args: (_PER_TOKEN_INT8(args[0]),)))
        else:
            handles.append(module.register_forward_pre_hook(lambda _, args: (_FP16(args[0]),)))
            handles.append(module.register_forward_hook(lambda _, args, out: _FP16(out)))
    return handles


def simulate(model: nn.Module, mode: DeployMode | str) -> nn.Module:
    """A copy of ``model`` (FP deploy model or quantized student) whose Linears run as in ``mode``.

    Example: ``simulate(deploy, "int8-token")(lr)`` is what ExecuTorch's and LiteRT's dynamic int8
    kernels compute, up to float rounding (``tests/test_deploy_outlier.py`` checks both runtimes).

    Raises:
        ValueError: ``mode`` is not a :class:`DeployMode` value.
    """
    sim = copy.deepcopy(model)
    _attach(sim, DeployMode(mode))
    return sim


@contextlib.contextmanager
def deploy_simulation(model: nn.Module, mode: DeployMode | str) -> Iterator[nn.Module]:
    """Run ``model`` itself in ``mode`` inside the block (no copy: DQC trains its bounds); hooks removed on exit."""
    handles = _attach(model, DeployMode(mode))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def deploy_mode_mismatch(bounds, target_mode: DeployMode | str) -> str | None:
    """A warning if ``bounds`` (a :class:`calibration.bounds.Bounds`) were calibrated for another deploy mode.

    Args:
        bounds: the bounds file's content; files without a deploy mode were made in ``PAPER`` mode.
        target_mode: how the target runs activations (ExecuTorch, TFLite: ``INT8_TOKEN``; Core ML: ``FP16``).

    Returns:
        None when they agree, else one sentence saying which mode the bounds were tuned for, which
        the target runs, and how to calibrate for it.
    """
    target_mode = DeployMode(target_mode)
    calibrated = bounds.quant_config.deploy
    if calibrated is target_mode:
        return None
    return (f"the bounds were calibrated in deploy mode {calibrated.value!r} ({bounds.quant_config.label}) but this "
            f"target runs {target_mode.value!r}: the weight bounds were tuned for another model than the one that "
            f"ships; calibrate with `pipeline calibrate --deploy {target_mode.value}` for bounds tuned to it")
