"""The exact int4 form (``IntGrid.EXACT``): codes plus one offset row per grid reproduce the calibrated grid.

Fast checks without any backend: the decoded weights against the fake-quantized ones, and the
export-side :class:`targets.base.OffsetLinear` against the plain Linear it replaces. The lowered
artifacts are checked in ``tests/test_build_integer_targets.py``.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from conftest import tiny_bounds

from calibration.snapping import snap_weight_bounds
from srcore.model import build_model
from targets.base import OffsetLinear, deploy_model, on_integer_grid, with_offset_rows


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny", 2).eval()


@pytest.fixture(scope="module")
def calibrated(tiny):
    return deploy_model(tiny, tiny_bounds(tiny, 4, 16))


def test_exact_codes_decode_to_the_calibrated_grid_and_snapped_ones_do_not(tiny, calibrated):
    deploy, weights = calibrated
    _, exact, report = on_integer_grid(deploy, weights, -8, 7, exact=True)
    assert report["offset_rows"] == sum(w.groups for w in weights) and report["zero_point"] == 0
    for before, after in zip(weights, exact):
        step = ((before.uppers - before.lowers) / 15).max().item()
        assert (after.weight - before.weight).abs().max().item() < 1e-5 * step, before.path
        assert after.codes.min() >= -8 and after.codes.max() <= 7
        # Independent decode of what the artifact stores: the rows, then each group's offset row.
        codes, scales = after.stored()
        rows = before.weight.shape[0]
        assert codes.shape == (rows + before.groups, before.weight.shape[1])
        offsets = codes[rows:].double() * scales[rows:, None].double()
        assert torch.equal(offsets, offsets[:, :1].expand_as(offsets))
        decoded = codes[:rows].double() * scales[:rows, None].double() + offsets[:, :1].repeat_interleave(
            rows // before.groups, 0)
        assert (decoded - before.weight.double()).abs().max().item() < 1e-5 * step, before.path
    snapped_bounds, _ = snap_weight_bounds(tiny_bounds(tiny, 4, 16), "int4")
    _, snapped = deploy_model(tiny, snapped_bounds)
    moved = [(a.weight - b.weight).abs().max().item() for a, b in zip(weights, snapped)]
    assert max(moved) > 1e-3  # snapping moves these grids, so the exact check above is not vacuous


def test_offset_rows_cover_negative_and_zero_offsets(calibrated):
    deploy, weights = calibrated
    _, exact, _ = on_integer_grid(deploy, weights, -8, 7, exact=True)
    offsets = torch.cat([w.offsets for w in exact])
    assert (offsets < 0).any() and (offsets > 0).any()  # both signs occur on these bounds
    w = exact[0]
    zero = dataclasses.replace(w, offsets=torch.zeros_like(w.offsets))
    codes, scales = zero.stored()
    rows = w.weight.shape[0]
    assert (codes[rows:] == 0).all() and (scales[rows:] == 1).all()  # no zero scale (invalid in XNNPACK/TFLite)


def test_offset_linear_computes_the_linear_it_replaces(calibrated):
    deploy, weights = calibrated
    deploy, exact, _ = on_integer_grid(deploy, weights, -8, 7, exact=True)
    replaced = with_offset_rows(copy.deepcopy(deploy), exact)
    assert sum(isinstance(m, OffsetLinear) for m in replaced.modules()) == len(exact)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference, out = deploy.double()(x.double()), replaced.double()(x.double())
    assert (out - reference).abs().max().item() < 1e-9  # float64: equal up to rounding
