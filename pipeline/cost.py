"""Theoretical cost of a quantized SwinIR: the 2DQuant paper's compression and FLOP-speedup ratios.

Computed from the model exactly as the 2DQuant code does (2dquant.md §6): a b-bit linear/BMM op
costs b/32 of an FP32 op while convs and the rest stay FP32; the compression counts all FP32
parameters except the relative-position bias tables, with the quantized linear weights at b bits.
At x4 this gives 3.99/4.47/5.08x speed-up and 3.07/3.31/3.60x compression for b = 4/3/2.
"""

from __future__ import annotations

from srcore.model import SwinIR

__all__ = ["compression_ratio", "flop_speedup", "quantized_weight_count"]

_QUANTIZED_LINEARS = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")


def quantized_weight_count(model: SwinIR) -> int:
    """Elements of the weights 2DQuant quantizes: q/k/v, proj, fc1, fc2 of every Swin block (no biases)."""
    return sum(p.numel() for name, p in model.named_parameters() if name.endswith(_QUANTIZED_LINEARS))


def compression_ratio(model: SwinIR, bits: int) -> float:
    """``P / (P - Q + Q*b/32)`` with P = FP32 params without bias tables, Q = quantized weights."""
    total = sum(p.numel() for name, p in model.named_parameters() if "relative_position_bias_table" not in name)
    quantized = quantized_weight_count(model)
    return total / (total - quantized + quantized * bits / 32)


def flop_speedup(model: SwinIR, bits: int, size: tuple[int, int] = (128, 128)) -> float:
    """``total / (linear*b/32 + conv + other)`` over SwinIR's own FLOP count at an LR ``size``."""
    flops = model.flops(*size)
    return sum(flops.values()) / (flops["linear"] * bits / 32 + flops["conv"] + flops["other"])
