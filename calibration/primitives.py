"""Per-tensor asymmetric fake quantization with learnable bounds: the 2DQuant quantizer (paper Eq. 1-2).

2DQuant (Liu et al., NeurIPS 2024, https://arxiv.org/abs/2406.06649) quantizes every tensor with two
free per-tensor bounds ``lower`` (l) and ``upper`` (u) and ``bits`` (b):

    s   = (u - l) / (2^b - 1)              step
    v_c = clip(v, l, u)
    v_r = round((v_c - l) / s)  in {0, ..., 2^b - 1}   (half to even, like ``torch.round``)
    v_q = s * v_r + l

There is no zero point, so 0 is generally not on the grid. Training the bounds (DQC) needs the
gradients of paper Eq. 2, the composition of

- a clip with custom bound gradients (``d v_c/d l = 1`` where ``x <= l``, ``d v_c/d u = 1`` where ``x >= u``),
- a straight-through round,
- and a differentiable ``s = (u - l) / (2^b - 1)``, which contributes the LSQ-like terms
  ``d v_q/d u = d v_c/d u + v_r/(2^b-1) - (v_c-l)/(u-l)`` and
  ``d v_q/d l = d v_c/d l - v_r/(2^b-1) + (v_c-l)/(u-l)``;

:class:`FakeQuantize` computes that composition in closed form in one autograd node.

The functions here are pure and stateless; :mod:`calibration.quantizer` holds the bounds.
``lower`` and ``upper`` are 0-d or shape-(1,) tensors (per-tensor quantization).
"""

from __future__ import annotations

import torch

__all__ = [
    "ALLOWED_BITS",
    "FakeQuantize",
    "check_bits",
    "dequantize",
    "fake_quantize",
    "fake_quantize_per_token_int8",
    "grid",
    "quantize",
    "step_size",
]

# 2/3/4 bits are the paper's settings; 8 bits is the usual sanity baseline.
ALLOWED_BITS = (2, 3, 4, 8)


def check_bits(bits: object) -> int:
    """Return ``bits`` if it is one of :data:`ALLOWED_BITS`, else raise ``ValueError``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in ALLOWED_BITS:
        raise ValueError(f"bits must be one of {ALLOWED_BITS}, got {bits!r}")
    return bits


def step_size(lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    """The grid step ``s = (upper - lower) / (2^bits - 1)``, differentiable in both bounds."""
    return (upper - lower) / (2**bits - 1)


def grid(lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    """The ``2^bits`` representable values ``lower + k * (upper - lower) / (2^bits - 1)``.

    Example: ``grid(-1, 2, bits=2)`` has step 3/3 = 1 and is ``[-1., 0., 1., 2.]``;
    ``grid(0.1, 0.4, bits=2)`` is ``[0.1, 0.2, 0.3, 0.4]`` (0 is not representable).

    Args:
        lower, upper: 0-d or (1,) float tensors (or Python floats) with ``lower < upper``.
        bits: one of :data:`ALLOWED_BITS`.

    Returns:
        (2^bits,) tensor in the dtype of the bounds, increasing, first ``lower``, last ``upper``
        (up to rounding).
    """
    lower, upper = torch.as_tensor(lower), torch.as_tensor(upper)
    codes = torch.arange(2 ** check_bits(bits), dtype=lower.dtype, device=lower.device)
    return lower.reshape(()) + codes * step_size(lower, upper, bits).reshape(())


def quantize(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes ``round((clip(x, l, u) - l) / s)`` (half to even).

    Args:
        x: float tensor of any shape.
        lower, upper: 0-d or (1,) tensors, ``lower < upper``.
        bits: one of :data:`ALLOWED_BITS`.

    Returns:
        uint8 tensor of ``x``'s shape with values in ``[0, 2^bits - 1]``.
    """
    check_bits(bits)
    lower, upper = _scalar(lower, x), _scalar(upper, x)
    codes = torch.round((torch.clamp(x, lower, upper) - lower) / step_size(lower, upper, bits))
    return codes.clamp_(0, 2**bits - 1).to(torch.uint8)


def dequantize(codes: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    """Grid values ``l + codes * s`` of integer ``codes`` (the inverse of :func:`quantize` on the grid).

    Returns:
        float tensor of ``codes``' shape in the dtype of ``lower``.
    """
    check_bits(bits)
    lower = torch.as_tensor(lower)
    lower, upper = lower.reshape(()), torch.as_tensor(upper, dtype=lower.dtype, device=lower.device).reshape(())
    return codes.to(lower.dtype) * step_size(lower, upper, bits) + lower


def fake_quantize(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
    """``s * round((clip(x, l, u) - l) / s) + l`` with the paper's gradients (Eq. 2).

    Equal in value to ``dequantize(quantize(x, ...), ...)``. Gradients: to ``x`` where
    ``l <= x <= u``; to ``lower`` and ``upper`` the sums of the per-element Eq. 2 terms (see the
    module docstring and :class:`FakeQuantize` for the convention at ``x == l`` and ``x == u``).

    Args:
        x: float tensor of any shape.
        lower, upper: 0-d or (1,) tensors with ``lower < upper`` (typically learnable Parameters).
        bits: one of :data:`ALLOWED_BITS`.

    Returns:
        Tensor of ``x``'s shape and dtype whose values lie on :func:`grid`.
    """
    if x.dtype in (torch.float16, torch.bfloat16):  # autocast: round on the fp32 grid, hand back x's dtype
        return FakeQuantize.apply(x.float(), lower, upper, check_bits(bits)).to(x.dtype)
    return FakeQuantize.apply(x, lower, upper, check_bits(bits))


class FakeQuantize(torch.autograd.Function):
    """The whole quantizer as one autograd node: clip with bound gradients, STE round, LSQ-like step terms.

    Backward, for upstream gradient ``g``, ``n = 2^b - 1``, ``t = (v_c - l) / s`` and
    ``e = (round(t) - t) / n`` (which equals ``v_r/n - (v_c-l)/(u-l)``):

    - ``dx = g`` where ``lower <= x <= upper``, else 0;
    - ``d lower = sum(g where x <= lower) - sum(g * e)``;
    - ``d upper = sum(g where x >= upper) + sum(g * e)``.

    This is exactly what autograd gives for a clip with bound gradients, a straight-through round
    and a differentiable ``s`` (the 2DQuant code), but computed in one pass over the saved input
    instead of a graph of ~10 full-size intermediates: DQC on a CPU is dominated by these
    element-wise ops. Convention at equality: an element exactly on a bound sends its gradient to
    both ``x`` and that bound, as the released code does (its masks keep ``l <= x <= u`` for ``x``
    and zero the lower-bound gradient only where ``x > l``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int) -> torch.Tensor:
        lo, hi = lower.reshape(()).to(x.dtype), upper.reshape(()).to(x.dtype)
        s = (hi - lo) / (2**bits - 1)
        ctx.save_for_backward(x, lo, hi)
        ctx.bits = bits
        ctx.bound_shapes = (lower.shape, upper.shape)
        # In place on one buffer: each fresh full-size tensor costs page faults on the CPU.
        return torch.clamp(x, lo, hi).sub_(lo).div_(s).round_().mul_(s).add_(lo)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, lo, hi = ctx.saved_tensors
        grad_x = grad_lower = grad_upper = None
        below, above = x <= lo, x >= hi
        if ctx.needs_input_grad[0]:
            grad_x = grad.masked_fill((x < lo) | (x > hi), 0.0)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            n = 2**ctx.bits - 1
            t = torch.clamp(x, lo, hi).sub_(lo).div_((hi - lo) / n)
            e = torch.round(t).sub_(t).div_(n)  # v_r/n - (v_c-l)/(u-l)
            step_term = torch.dot(grad.reshape(-1), e.reshape(-1))
            # Masked sums without boolean indexing, which would wait for the GPU on every quantizer.
            if ctx.needs_input_grad[1]:
                grad_lower = (torch.where(below, grad, 0.0).sum() - step_term).reshape(ctx.bound_shapes[0])
            if ctx.needs_input_grad[2]:
                grad_upper = (torch.where(above, grad, 0.0).sum() + step_term).reshape(ctx.bound_shapes[1])
        return grad_x, grad_lower, grad_upper, None


def fake_quantize_per_token_int8(x: torch.Tensor) -> torch.Tensor:
    """Dynamic asymmetric int8 per token (last dim), in XNNPACK's own float arithmetic (its ``qd8`` input).

    Each row gets the multiplier ``m = 255 / (max(x, 0) - min(x, 0))`` and the zero point
    ``zp = rint(-128 - min(x, 0) m)``; the result is ``clamp(rint(x m) + zp) - zp`` times ``1 / m``.
    XNNPACK computes exactly these float32 products and quotients
    (``xnn_f32_qd8_asymmetric_quantization_params`` and ``f32-qs8-vcvt``); the textbook
    ``round(x / s)`` with ``s = range / 255`` rounds the other way where ``x m`` lands within an ulp of
    a half step (one of the 245,760 inputs of an x4 convolution on one 64 px tile, which moved its output
    by 0.01; ``tests/test_deploy_outlier.py`` feeds both runtimes such a tie). This is the deploy mode
    of the integer backends' Linears (ExecuTorch ``qd8``), not a 2DQuant quantizer.
    """
    lo = x.amin(-1, keepdim=True).clamp(max=0.0)
    hi = x.amax(-1, keepdim=True).clamp(min=0.0)
    span = hi - lo
    m = torch.where(span > 0, torch.full_like(span, 255.0) / span, torch.ones_like(span))  # a true quotient
    lo_m, hi_m = lo * m, hi * m
    zp = torch.where((-128.0 + lo_m) + (127.0 + hi_m) > 0, -128.0 - lo_m, 127.0 - hi_m).clamp(-128.0, 127.0).round()
    return torch.round(x * m).clamp_(-128.0 - zp, 127.0 - zp).mul_(torch.reciprocal(m))


def _scalar(bound: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A bound as a 0-d tensor in ``like``'s dtype and device."""
    return torch.as_tensor(bound, dtype=like.dtype, device=like.device).reshape(())
