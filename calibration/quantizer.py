"""The fake quantizer module: learnable per-tensor bounds, bit width, role and distribution class.

One :class:`Quantizer` sits in front of every quantized tensor of SwinIR-light (2DQuant,
https://arxiv.org/abs/2406.06649, §3.1): the input and weight of each linear and the four
attention-matmul operands. Its ``lower``/``upper`` Parameters are the only things DQC trains.

Two switches change what ``forward`` does:

- **observer mode**: while a ``calibrator`` callable is attached, ``forward`` calls
  ``calibrator(self, x)`` (which sets the bounds from ``x``) and returns ``x`` unchanged. That is
  how the 2DQuant code gathers statistics: every quantizer sees the tensor of one fully-FP forward.
- ``enabled = False`` makes it the identity (for ablations, e.g. weights-only runs).
"""

from __future__ import annotations

import enum
import math
from typing import Callable

import torch
from torch import nn

from calibration.primitives import check_bits, fake_quantize

__all__ = ["Calibrator", "Distribution", "Quantizer", "Role", "is_post_softmax"]


class Role(enum.Enum):
    """What a quantizer quantizes: a weight (static) or an activation (computed per input)."""

    WEIGHT = "weight"
    ACTIVATION = "activation"


class Distribution(enum.Enum):
    """The paper's hand-assigned distribution class (§3.2), which selects DOBI's search direction.

    BELL: roughly symmetric (weights, q/k/v, the qkv/proj/fc1 inputs): both bounds move inward.
    EXPONENTIAL: one-sided with a long upper tail (post-softmax attention, post-GELU fc2 input):
    the paper keeps ``lower = min`` and moves only ``upper``.
    """

    BELL = "bell"
    EXPONENTIAL = "exponential"


Calibrator = Callable[["Quantizer", torch.Tensor], None]


class Quantizer(nn.Module):
    """Per-tensor asymmetric fake quantizer ``s * round((clip(x, l, u) - l) / s) + l``.

    Args:
        name: stable identifier (the key in the bounds file), e.g.
            ``layers.0.residual_group.blocks.0.attn.q.act``.
        bits: one of 2, 3, 4, 8.
        role: :class:`Role`.
        distribution: :class:`Distribution`.

    Attributes:
        lower, upper: 0-d float32 Parameters (learnable in DQC).
        enabled: when False, ``forward`` is the identity.
        calibrator: when not None, ``forward`` is an observer (see module docstring).
        calibrated: False until the bounds have been set once (by a calibrator, ``set_bounds_``
            or a bounds file); a quantizing forward before that raises.
        fixed_lower: when not None, the initialisers put ``lower`` exactly there and search or
            train only ``upper``. :func:`calibration.observe.calibrate_` sets 0 on the post-softmax
            quantizers (:func:`is_post_softmax`): masked probabilities of shifted windows then stay
            exactly 0 instead of being clipped up to a positive ``lower``.
    """

    def __init__(self, name: str, bits: int, role: Role, distribution: Distribution):
        super().__init__()
        if not isinstance(role, Role):
            raise ValueError(f"role must be a Role ({[r.name for r in Role]}), got {role!r}")
        if not isinstance(distribution, Distribution):
            allowed = [d.name for d in Distribution]
            raise ValueError(f"distribution must be a Distribution ({allowed}), got {distribution!r}")
        self.name = name
        self.bits = check_bits(bits)
        self.role = role
        self.distribution = distribution
        self.lower = nn.Parameter(torch.tensor(0.0))
        self.upper = nn.Parameter(torch.tensor(1.0))
        self.enabled = True
        self.calibrated = False
        self.calibrator: Calibrator | None = None
        self.fixed_lower: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrator is not None:
            with torch.no_grad():
                self.calibrator(self, x)
            return x
        if not self.enabled:
            return x
        if not self.calibrated:
            raise RuntimeError(
                f"quantizer {self.name} has no bounds yet: calibrate the model or apply a bounds file first"
            )
        return fake_quantize(x, self.lower, self.upper, self.bits)

    @torch.no_grad()
    def set_bounds_(self, lower: float | torch.Tensor, upper: float | torch.Tensor) -> None:
        """Set the bounds (in float32), widening a degenerate range ``lower == upper``.

        A constant tensor (or a percentile range that collapses to one value) gives
        ``lower == upper``; the bounds are then moved apart by ``max(1e-6 * |value|, 1e-8)`` each
        way, a few float32 ulps, so that the step is non-zero and the value stays on the grid's
        midpoint.

        Raises:
            ValueError: a bound is NaN/inf, or ``lower > upper``.
        """
        lo, hi = float(lower), float(upper)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"quantizer {self.name}: bounds must be finite, got lower={lo}, upper={hi}")
        if lo > hi:
            raise ValueError(f"quantizer {self.name}: lower {lo} > upper {hi}")
        lo32, hi32 = _to_float32(lo), _to_float32(hi)
        if not lo32 < hi32:
            mid = (lo + hi) / 2
            eps = max(1e-6 * abs(mid), 1e-8)
            lo32, hi32 = _to_float32(mid - eps), _to_float32(mid + eps)
        self.lower.fill_(lo32)
        self.upper.fill_(hi32)
        self.calibrated = True

    def extra_repr(self) -> str:
        bounds = f"lower={self.lower.item():.6g}, upper={self.upper.item():.6g}" if self.calibrated else "uncalibrated"
        kind = f"role={self.role.name}, distribution={self.distribution.name}"
        return f"name={self.name!r}, bits={self.bits}, {kind}, {bounds}"


def _to_float32(value: float) -> float:
    return torch.tensor(value, dtype=torch.float32).item()


def is_post_softmax(quantizer: Quantizer) -> bool:
    """True for the quantizer of the softmax output (BMM2's ``attn`` operand), whose values lie in [0, 1]."""
    return quantizer.name.endswith("attn.bmm2_attn")
