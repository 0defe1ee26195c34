"""Put 2DQuant's 384 fake quantizers into a SwinIR in place, without copying a weight.

2DQuant (https://arxiv.org/abs/2406.06649, §3.1; released ``build_quantized_network``) quantizes,
in every Swin block, the input and the weight of the q, k, v (three 60-row slices of ``attn.qkv``),
``attn.proj``, ``mlp.fc1`` and ``mlp.fc2`` linears, and the four attention-matmul operands
(q after the ``head_dim**-0.5`` scaling, k, v, and the post-softmax map): 16 quantizers per block,
384 for SwinIR-light's 24 blocks, 144 of them on weights. Convs, LayerNorms, softmax, GELU, biases
and residuals stay FP32.

:func:`quantize_` swaps modules: ``attn.qkv`` -> :class:`QuantQKV` (three :class:`QuantLinear` on
row slices of the same Parameter), ``attn.proj``/``mlp.fc1``/``mlp.fc2`` -> :class:`QuantLinear`
(holding the original Parameters), and the identity hooks ``attn.bmm1_q``/``bmm1_k``/``bmm2_v``/
``bmm2_attn`` -> activation :class:`Quantizer`. The original modules are kept aside, so :func:`dequantize_` and
:func:`quantization_disabled` (the FP teacher of DQC, bit-identical to the unquantized model) just
swap them back.

Quantizer names (the bounds-file keys) name the FP model's op, not the wrapper layout:
``<block>.attn.{q,k,v,proj}.{act,weight}``, ``<block>.attn.{bmm1_q,bmm1_k,bmm2_attn,bmm2_v}``,
``<block>.mlp.{fc1,fc2}.{act,weight}``, with ``<block>`` like
``layers.0.residual_group.blocks.0``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from calibration.config import QuantConfig
from calibration.quantizer import Distribution, Quantizer, Role
from srcore.model import SwinTransformerBlock

__all__ = [
    "QuantLinear",
    "QuantQKV",
    "dequantize_",
    "is_quantized",
    "quant_config",
    "quantization_disabled",
    "quantize_",
    "quantizers",
]

_STATE_ATTR = "_sr2bit_quantization"


class QuantLinear(nn.Module):
    """``F.linear(act_quant(x), weight_quant(W), b)`` on an existing Linear's Parameters (bias FP).

    Args:
        weight: the original (out, in) Parameter (not copied).
        bias: the original (out,) Parameter or None.
        act_quant: input quantizer, or None to keep the input FP (weights-only configs).
        weight_quant: weight quantizer.
        rows: use only these output rows of ``weight``/``bias`` (a view taken in ``forward``).
            Then the Parameters belong to the parent (:class:`QuantQKV`, which registers them) and
            are only referenced here, so the state dict holds them once under their FP keys.
    """

    def __init__(
        self,
        weight: nn.Parameter,
        bias: nn.Parameter | None,
        act_quant: Quantizer | None,
        weight_quant: Quantizer,
        rows: slice | None = None,
    ):
        super().__init__()
        if rows is None:
            self.weight, self.bias = weight, bias  # registered: same objects, same state-dict keys
        else:
            self.__dict__["_shared"] = (weight, bias)  # plain reference, owned by the parent
        self.rows = rows
        self.act_quant = act_quant
        self.weight_quant = weight_quant

    def linear_weight(self) -> torch.Tensor:
        """The FP (out, in) weight this layer multiplies by: a view, never a copy."""
        if self.rows is None:
            return self.weight
        return self.__dict__["_shared"][0][self.rows]

    def linear_bias(self) -> torch.Tensor | None:
        if self.rows is None:
            return self.bias
        bias = self.__dict__["_shared"][1]
        return None if bias is None else bias[self.rows]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_quant is not None:
            x = self.act_quant(x)
        return F.linear(x, self.weight_quant(self.linear_weight()), self.linear_bias())

    def extra_repr(self) -> str:
        out, inp = self.linear_weight().shape
        return f"in_features={inp}, out_features={out}, rows={self.rows}"


class QuantQKV(nn.Module):
    """``attn.qkv`` as three :class:`QuantLinear` (q, k, v) on 60-row slices of its weight and bias.

    Output ``cat([q, k, v], -1)``, the layout ``WindowAttention`` reshapes. The three input
    quantizers see the identical LN1 output (2DQuant's ``QuantLinearQKV``).
    """

    def __init__(self, qkv: nn.Linear, q: QuantLinear, k: QuantLinear, v: QuantLinear):
        super().__init__()
        self.weight, self.bias = qkv.weight, qkv.bias  # registered once, under the FP keys
        self.q, self.k, self.v = q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B*nW, N, C) -> (B*nW, N, 3C)."""
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


@dataclass
class _Swap:
    parent: nn.Module
    attr: str
    original: nn.Module
    quantized: nn.Module


@dataclass
class _QuantizationState:
    """Kept on the model (a plain attribute, not a submodule): the config and how to undo the swaps."""

    config: QuantConfig
    swaps: list[_Swap] = field(default_factory=list)
    active: bool = True


def quantize_(model: nn.Module, config: QuantConfig) -> nn.Module:
    """Insert the 2DQuant quantizers into every Swin block of ``model`` in place; return ``model``.

    Bounds start uncalibrated: run :func:`calibration.observe.calibrate_` or apply a bounds file.

    Args:
        model: a :class:`srcore.model.SwinIR` (any module containing ``SwinTransformerBlock``s).
        config: :class:`QuantConfig`; ``act_bits=None`` inserts only the weight quantizers.

    Raises:
        ValueError: ``config`` is not a QuantConfig, the model is already quantized, or it has no
            Swin blocks.
    """
    if not isinstance(config, QuantConfig):
        raise ValueError(f"quantize_ expects a QuantConfig, got {type(config).__name__}")
    if is_quantized(model):
        raise ValueError("model is already quantized; call dequantize_ first")
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, SwinTransformerBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no SwinTransformerBlock to quantize")
    state = _QuantizationState(config)
    for prefix, block in blocks:
        _quantize_block(block, prefix, config, state.swaps)
    setattr(model, _STATE_ATTR, state)
    return model


def _quantize_block(block: nn.Module, prefix: str, config: QuantConfig, swaps: list[_Swap]) -> None:
    """Swap one block's linears and attention hooks, in data-flow order (which fixes :func:`quantizers`' order)."""
    attn, mlp = block.attn, block.mlp
    bell, expo = Distribution.BELL, Distribution.EXPONENTIAL

    device = attn.qkv.weight.device  # bounds live with the weights (CPU or GPU)

    def act(name: str, distribution: Distribution) -> Quantizer | None:
        bits = config.bits_for(f"{prefix}.{name}", Role.ACTIVATION.value)
        return None if bits is None else Quantizer(f"{prefix}.{name}", bits, Role.ACTIVATION, distribution).to(device)

    def linear(name: str, layer: nn.Linear, act_distribution: Distribution, rows: slice | None = None) -> QuantLinear:
        weight_name = f"{prefix}.{name}.weight"
        weight_quant = Quantizer(weight_name, config.bits_for(weight_name, Role.WEIGHT.value), Role.WEIGHT, bell).to(device)
        return QuantLinear(layer.weight, layer.bias, act(f"{name}.act", act_distribution), weight_quant, rows)

    def swap(parent: nn.Module, attr: str, quantized: nn.Module | None) -> None:
        if quantized is None:
            return
        original = getattr(parent, attr)
        swaps.append(_Swap(parent, attr, original, quantized))
        setattr(parent, attr, quantized)

    qkv = attn.qkv
    if type(qkv) is not nn.Linear or qkv.out_features != 3 * qkv.in_features:
        raise ValueError(f"{prefix}.attn.qkv is {type(qkv).__name__}, expected an nn.Linear(C, 3C)")
    c = qkv.in_features
    q, k, v = (linear(f"attn.{n}", qkv, bell, slice(i * c, (i + 1) * c)) for i, n in enumerate("qkv"))
    if len({part.weight_quant.bits for part in (q, k, v)}) > 1:  # one stored tensor, one bit width
        raise ValueError(f"{prefix}.attn.q/k/v weights share the tensor attn.qkv; give them the same bits")
    swap(attn, "qkv", QuantQKV(qkv, q, k, v))
    for hook, distribution in (("bmm1_q", bell), ("bmm1_k", bell), ("bmm2_attn", expo), ("bmm2_v", bell)):
        swap(attn, hook, act(f"attn.{hook}", distribution))
    swap(attn, "proj", linear("attn.proj", attn.proj, bell))
    swap(mlp, "fc1", linear("mlp.fc1", mlp.fc1, bell))
    swap(mlp, "fc2", linear("mlp.fc2", mlp.fc2, expo))  # input is post-GELU: one-sided


def _state(model: nn.Module) -> _QuantizationState | None:
    return model.__dict__.get(_STATE_ATTR)


def is_quantized(model: nn.Module) -> bool:
    """True if :func:`quantize_` has been applied to ``model`` (and not undone)."""
    return _state(model) is not None


def quant_config(model: nn.Module) -> QuantConfig:
    """The :class:`QuantConfig` ``model`` was quantized with.

    Raises:
        ValueError: ``model`` is not quantized.
    """
    state = _state(model)
    if state is None:
        raise ValueError("model is not quantized (call quantize_ first)")
    return state.config


def quantizers(model: nn.Module) -> dict[str, Quantizer]:
    """All quantizers of ``model`` by name, in a stable order.

    The order is block by block (module order), and within a block data-flow order: q, k, v (act,
    weight each), bmm1_q, bmm1_k, bmm2_attn, bmm2_v, proj, fc1, fc2 (act, weight each). Works inside
    :func:`quantization_disabled` too, and on any module containing :class:`Quantizer` s.
    """
    state = _state(model)
    roots = [swap.quantized for swap in state.swaps] if state is not None else [model]
    found: dict[str, Quantizer] = {}
    for root in roots:
        for module in root.modules():
            if isinstance(module, Quantizer):
                if module.name in found and found[module.name] is not module:
                    raise ValueError(f"two quantizers are named {module.name!r}")
                found[module.name] = module
    return found


def _swap_back(state: _QuantizationState, to_quantized: bool) -> None:
    for swap in state.swaps:
        setattr(swap.parent, swap.attr, swap.quantized if to_quantized else swap.original)
    state.active = to_quantized


def dequantize_(model: nn.Module) -> nn.Module:
    """Undo :func:`quantize_` in place (the original modules come back; the quantizers are dropped)."""
    state = _state(model)
    if state is None:
        raise ValueError("model is not quantized (call quantize_ first)")
    _swap_back(state, to_quantized=False)
    del model.__dict__[_STATE_ATTR]
    return model


@contextlib.contextmanager
def quantization_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` as the original FP model inside the block (the DQC teacher, no second copy).

    The original modules are swapped back in for the duration, so the output is bit-identical to
    the unquantized model, and the quantized modules return on exit,
    also after an exception.
    """
    state = _state(model)
    if state is None:
        raise ValueError("model is not quantized (call quantize_ first)")
    if not state.active:  # nested use: already FP
        yield model
        return
    _swap_back(state, to_quantized=False)
    try:
        yield model
    finally:
        _swap_back(state, to_quantized=True)
