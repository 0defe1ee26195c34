"""Weight grids that integer backends store exactly: move 2DQuant's bounds so that ``l / s`` is an integer.

2DQuant's grid ``l + k s`` (k = 0..2^b-1, ``s = (u - l) / (2^b - 1)``) has a real offset ``l``; XNNPACK
(ExecuTorch) and TFLite store ``scale * (q - zero_point)`` with integer codes ``q`` in a container
``[qmin, qmax]`` (int4: [-8, 7], int8: [-128, 127]) and an integer zero point (XNNPACK: 0 only). The
two grids coincide exactly when ``l = z s`` for an integer ``z`` with ``qmin <= z`` and
``z + 2^b - 1 <= qmax``: then ``q = k + z`` and the zero point is 0.

:func:`snap_bounds` finds the nearest such grid: it keeps the step and shifts the grid by less
than half a step (``z = round(l / s)``) when that ``z`` fits the container; when it does not (a
b-bit grid in a b-bit container must have ``z = qmin``), it clamps ``z`` into the container and
picks the smallest step whose grid still covers the old range (wider than the old step when z was
clamped towards 0). ``benchmarks.zero_point_cost`` measures what this costs in PSNR.
"""

from __future__ import annotations

import dataclasses
import math

from calibration.bounds import Bounds
from calibration.primitives import check_bits
from calibration.quantizer import Role

__all__ = ["CONTAINERS", "snap_bounds", "snap_weight_bounds"]

# Integer containers of the backends: name -> (qmin, qmax).
CONTAINERS: dict[str, tuple[int, int]] = {"int2": (-2, 1), "int4": (-8, 7), "int8": (-128, 127)}


def snap_bounds(lower: float, upper: float, bits: int, qmin: int, qmax: int) -> tuple[float, float, int]:
    """The nearest grid with an integer offset that fits ``[qmin, qmax]``.

    Args:
        lower, upper: the calibrated bounds, ``lower < upper``.
        bits: the grid's bit width (2^bits points).
        qmin, qmax: the integer container of the codes.

    Returns:
        ``(lower', upper', z)`` with ``lower' = z * s'``, ``upper' = (z + 2^bits - 1) * s'`` and
        ``qmin <= z <= qmax - 2^bits + 1``; the stored codes are ``k + z``.

    Raises:
        ValueError: the container holds fewer than 2^bits codes, or the bounds are not ordered.
    """
    levels = 2 ** check_bits(bits) - 1
    if qmax - qmin < levels:
        raise ValueError(f"a {bits}-bit grid needs {levels + 1} codes; [{qmin}, {qmax}] holds {qmax - qmin + 1}")
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise ValueError(f"bounds must be finite with lower < upper, got [{lower}, {upper}]")
    step = (upper - lower) / levels
    z = round(lower / step)
    if qmin <= z <= qmax - levels:
        return z * step, (z + levels) * step, z
    z = qmin if z < qmin else qmax - levels
    # Fixed offset: the smallest step s > 0 whose grid [z s, (z + levels) s] still covers [lower, upper].
    # ``z s <= lower`` and ``(z + levels) s >= upper`` bound s from below or from above depending on the
    # sign of the integer (z s <= lower is s >= lower / z for z < 0 but s <= lower / z for z > 0), so
    # only the lower limits count; the clamp direction of z keeps the upper limits satisfied.
    lower_limits = [b / e for b, e, at_most in ((lower, z, True), (upper, z + levels, False))
                    if e != 0 and (e > 0) != at_most and b / e > 0]
    step = max(lower_limits, default=step)
    return z * step, (z + levels) * step, z


def snap_weight_bounds(bounds: Bounds, container: str) -> tuple[Bounds, dict]:
    """``bounds`` with every weight grid snapped into ``container`` (activation bounds unchanged).

    Returns:
        ``(snapped, report)``; the report counts the grids whose step had to widen (fixed offset)
        and gives the largest shift of a bound in units of its step.

    Raises:
        ValueError: unknown container, or a grid with more codes than the container holds.
    """
    if container not in CONTAINERS:
        raise ValueError(f"unknown integer container {container!r}; known: {', '.join(CONTAINERS)}")
    table, widened, shift = dict(bounds.quantizers), 0, 0.0
    for name, q in bounds.quantizers.items():
        if q.role is not Role.WEIGHT:
            continue
        lower, upper, _ = snap_bounds(q.lower, q.upper, q.bits, *CONTAINERS[container])
        step = (q.upper - q.lower) / (2**q.bits - 1)
        widened += not math.isclose(upper - lower, q.upper - q.lower, rel_tol=1e-9)
        shift = max(shift, abs(lower - q.lower) / step, abs(upper - q.upper) / step)
        table[name] = q._replace(lower=lower, upper=upper)
    report = {"container": container, "range": list(CONTAINERS[container]),
              "weight_grids": sum(q.role is Role.WEIGHT for q in table.values()),
              "widened": widened, "max_bound_shift_in_steps": shift}
    return dataclasses.replace(bounds, quantizers=table), report
