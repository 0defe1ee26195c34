"""Integer-offset weight grids (for XNNPACK/TFLite): exact integer codes, minimal shift, covering when clamped."""

from __future__ import annotations

import pytest
import torch

from calibration.primitives import grid
from calibration.snapping import CONTAINERS, snap_bounds


def _grid64(lower, upper, bits):
    return grid(torch.tensor(lower, dtype=torch.float64), torch.tensor(upper, dtype=torch.float64), bits)


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("bounds", [(-0.3, 0.25), (-0.41, 0.07), (-0.02, 0.33)])
def test_small_grids_shift_by_at_most_half_a_step(bits, bounds):
    lower, upper = bounds
    new_lower, new_upper, z = snap_bounds(lower, upper, bits, *CONTAINERS["int4"])
    step = (upper - lower) / (2**bits - 1)
    assert new_upper - new_lower == pytest.approx(upper - lower, rel=1e-12)  # same step
    assert abs(new_lower - lower) <= step / 2 + 1e-15
    assert -8 <= z and z + 2**bits - 1 <= 7
    codes = torch.arange(2**bits, dtype=torch.float64) + z  # what the backend stores, zero point 0
    torch.testing.assert_close(_grid64(new_lower, new_upper, bits), codes * step, rtol=0, atol=1e-15)


def test_a_full_container_keeps_its_offset_and_covers_the_old_range():
    new_lower, new_upper, z = snap_bounds(-0.05, 0.10, 4, *CONTAINERS["int4"])  # round(l/s) = -5 cannot hold 16 codes
    assert z == -8
    assert new_lower <= -0.05 and new_upper == pytest.approx(0.10)
    step = (new_upper - new_lower) / 15
    assert new_lower == pytest.approx(-8 * step) and new_upper == pytest.approx(7 * step)


@pytest.mark.parametrize("lower, upper, bits, container, clamped_z", [
    (-0.05, 0.10, 4, "int4", -8),  # the usual case: a 4-bit grid fills int4
    (1.0, 1.1, 4, "int8", 112),  # all positive, far from 0: z > 0, clamped down
    (-10.0, -9.7, 2, "int4", -8),  # all negative: z + 3 < 0, the upper end bounds the step from above
    (0.5, 0.6, 3, "int4", 0),  # all positive: z = 0, the lower end is free
])
def test_a_clamped_offset_takes_the_smallest_step_that_covers(lower, upper, bits, container, clamped_z):
    """Issue 21: "covers the old range" must hold for any sign of z and z + 2^b - 1, with the least widening."""
    levels = 2**bits - 1
    new_lower, new_upper, z = snap_bounds(lower, upper, bits, *CONTAINERS[container])
    assert z == clamped_z
    step = (new_upper - new_lower) / levels
    assert new_lower == pytest.approx(z * step, abs=1e-12) and new_lower <= lower + 1e-12 and new_upper >= upper - 1e-12
    smaller = step * (1 - 1e-9)  # any smaller step no longer covers [lower, upper]
    assert z * smaller > lower + 1e-15 or (z + levels) * smaller < upper - 1e-15


def test_int8_holds_any_four_bit_offset():
    lower, upper = -0.05, 0.10
    new_lower, new_upper, z = snap_bounds(lower, upper, 4, *CONTAINERS["int8"])
    assert z == -5 and new_lower == pytest.approx(-0.05) and new_upper == pytest.approx(0.10)


def test_bad_requests():
    with pytest.raises(ValueError, match="needs 256 codes"):
        snap_bounds(-1.0, 1.0, 8, *CONTAINERS["int4"])
    with pytest.raises(ValueError, match="lower < upper"):
        snap_bounds(1.0, -1.0, 4, *CONTAINERS["int8"])
