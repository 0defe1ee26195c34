"""MinMax bound initialisation: ``lower = min(x)``, ``upper = max(x)``.

The paper's weakest baseline (2DQuant, https://arxiv.org/abs/2406.06649, Table 3 "MinMax"): no
clipping at all, so a few outliers stretch the grid and the bulk of the values share few levels.
"""

from __future__ import annotations

import math

import torch

from calibration.config import MinMaxConfig
from calibration.quantizer import Quantizer

__all__ = ["minmax_bounds", "minmax_init_"]


def minmax_bounds(x: torch.Tensor) -> tuple[float, float]:
    """(min, max) of ``x`` over all elements.

    Raises:
        ValueError: ``x`` is empty or holds NaN/inf.
    """
    if x.numel() == 0:
        raise ValueError("cannot take bounds of an empty tensor")
    lo, hi = torch.aminmax(x.detach().reshape(-1))
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tensor of shape {tuple(x.shape)} holds NaN or inf (min {lo}, max {hi})")
    return lo, hi


def minmax_init_(quantizer: Quantizer, x: torch.Tensor, config: MinMaxConfig | None = None) -> None:
    """Set ``quantizer``'s bounds to the min and max of ``x`` (any shape); ``lower`` stays at its ``fixed_lower``."""
    lo, hi = minmax_bounds(x)
    quantizer.set_bounds_(lo if quantizer.fixed_lower is None else quantizer.fixed_lower, hi)
