"""Tile plan, blending weights and streamed tiled upscaling (tiled == untiled for small receptive fields)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srcore import tiling
from srcore.model import mirror_pad
from srcore.tiling import (
    TILE_ALIGN,
    Tile,
    edge_weights_1d,
    iter_tiled_bands,
    tile_plan,
    upscale_tiled,
)

# ---------------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------------

PLAN_CASES = [
    (37, 53, 32, 8),
    (75, 101, 32, 8),
    (75, 101, 32, 16),
    (64, 64, 32, 0),
    (65, 64, 32, 0),
    (100, 7, 16, 15),
    (5, 5, 1, 0),
    (32, 32, 32, 8),
    (20, 27, 32, 8),
    (1, 1, 8, 4),
    (500, 333, 64, 16),
]


def _axis_starts(tiles: list[Tile], axis: str) -> list[int]:
    return sorted({getattr(t, axis) for t in tiles})


@pytest.mark.parametrize("align", [TILE_ALIGN, 1])
@pytest.mark.parametrize(("h", "w", "tile", "overlap"), PLAN_CASES)
def test_plan_covers_and_stays_in_bounds(h: int, w: int, tile: int, overlap: int, align: int) -> None:
    plan = tile_plan(h, w, tile, overlap, align)
    a = align if tile - overlap >= align else 1
    cover = np.zeros((h, w), np.int32)
    th, tw = min(tile, h), min(tile, w)
    for t in plan:
        assert 0 <= t.y0 < t.y1 <= h and 0 <= t.x0 < t.x1 <= w
        assert t.y0 % a == 0 and t.x0 % a == 0  # every start on the window grid
        # full size, except the last row / column, which ends on the border and is < a px shorter
        assert (t.height == th or t.y1 == h and t.height > th - a) and (t.width == tw or t.x1 == w and t.width > tw - a)
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert cover.min() >= 1
    # Grid structure, row-major order, last tile on the border.
    ys, xs = _axis_starts(plan, "y0"), _axis_starts(plan, "x0")
    assert plan == [Tile(y, x, min(y + th, h), min(x + tw, w)) for y in ys for x in xs]
    assert ys[-1] + th >= h and xs[-1] + tw >= w and ys[0] == 0 and xs[0] == 0
    # Neighbours overlap by at least `overlap`, and the stride is at most tile - overlap.
    for starts, size in ((ys, th), (xs, tw)):
        for a0, b in zip(starts, starts[1:]):
            assert a0 + size - b >= overlap
            assert 0 < b - a0 <= tile - overlap


def test_plan_odd_size_exact() -> None:
    # Stride 24, starts on the 8 px window grid; the last tile ends on the border, up to 7 px short.
    assert tile_plan(37, 53, 32, 8) == [
        Tile(0, 0, 32, 32),
        Tile(0, 24, 32, 53),
        Tile(8, 0, 37, 32),
        Tile(8, 24, 37, 53),
    ]
    assert _axis_starts(tile_plan(10, 101, 32, 8), "x0") == [0, 24, 48, 72]
    # align=1 is the plan before: the last tile shifted back to full size, off the window grid.
    assert _axis_starts(tile_plan(10, 101, 32, 8, align=1), "x0") == [0, 24, 48, 69]
    # A stride off the grid (128 - 12) is rounded down to 112: the overlap is a minimum.
    assert _axis_starts(tile_plan(8, 500, 128, 12), "x0") == [0, 112, 224, 336, 376]
    # Too small a stride for the grid: no alignment.
    assert _axis_starts(tile_plan(8, 20, 8, 2), "x0") == [0, 6, 12]


def window_means_fn(scale: int):
    """Each 8x8 window's mean, nearest-upscaled, after SwinIR's padding: depends on where the windows lie."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        means = F.avg_pool2d(mirror_pad(x, TILE_ALIGN), TILE_ALIGN)
        up = means.repeat_interleave(TILE_ALIGN * scale, -2).repeat_interleave(TILE_ALIGN * scale, -1)
        return up[..., : h * scale, : w * scale]

    return fn


@pytest.mark.parametrize(("h", "w", "tile"), [(75, 101, 32), (37, 53, 32), (150, 113, 64)])
def test_tiles_keep_the_images_windows(h: int, w: int, tile: int) -> None:
    """A window-local model gives exactly the untiled output: every tile, the last one too, on the image's windows.

    The plan before (``align=1``) shifted the last tile back off the window grid and differed.
    """
    fn, lr = window_means_fn(2), torch.rand(1, 3, h, w)
    ref = fn(lr)
    assert (upscale_tiled(fn, lr, 2, tile, 8) - ref).abs().max().item() <= 1e-6
    assert (upscale_tiled(fn, lr, 2, tile, 8, align=1) - ref).abs().max().item() > 1e-2


@pytest.mark.parametrize(("h", "w"), [(32, 32), (20, 27), (1, 32), (32, 5)])
def test_single_tile_when_image_fits(h: int, w: int) -> None:
    assert tile_plan(h, w, 32, 8) == [Tile(0, 0, h, w)]


def test_one_dimension_fits() -> None:
    plan = tile_plan(20, 80, 32, 8)
    assert all((t.y0, t.y1) == (0, 20) for t in plan) and len(plan) == 3


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 10, 0, 0), "tile must be >= 1, got 0"),
        ((10, 10, -4, 0), "tile must be >= 1, got -4"),
        ((10, 10, 8, -1), "overlap must be >= 0, got -1"),
        ((10, 10, 8, 8), r"overlap must be in \[0, tile - 1\] = \[0, 7\], got overlap=8"),
        ((10, 10, 8, 12), r"got overlap=12 for tile=8"),
        ((0, 10, 8, 2), "h must be >= 1, got 0"),
        ((10, -1, 8, 2), "w must be >= 1, got -1"),
        ((10, 10, 8.0, 2), "tile must be an int"),
        ((10, 10, True, 0), "tile must be an int"),
    ],
)
def test_plan_validation(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tile_plan(*args)


def test_plan_accepts_numpy_ints() -> None:
    assert tile_plan(np.int64(37), 53, np.int32(32), 8) == tile_plan(37, 53, 32, 8)


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def test_edge_weights_profile() -> None:
    o = 16  # SR px: 0 up to 4, linear over 4..12, 1 beyond 12
    w = edge_weights_1d(40, True, False, o)
    assert w.dtype == torch.float32 and w.shape == (40,)
    d = np.arange(40) + 0.5
    np.testing.assert_allclose(w.numpy(), np.clip((d - 4) / 8, 0, 1), rtol=0, atol=1e-7)
    assert torch.all(w[:4] == 0) and torch.all(w[12:] == 1) and w[4] > 0
    assert torch.equal(edge_weights_1d(40, False, True, o), w.flip(0))
    both = edge_weights_1d(40, True, True, o)
    assert torch.allclose(both, w * w.flip(0))
    assert torch.equal(edge_weights_1d(40, False, False, o), torch.ones(40))
    assert torch.equal(edge_weights_1d(40, True, True, 0), torch.ones(40))


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "scale"), [(75, 101, 32, 8, 2), (37, 53, 16, 4, 3), (64, 65, 32, 0, 1)]
)
def test_total_weight_positive_everywhere(h: int, w: int, tile: int, overlap: int, scale: int) -> None:
    total = torch.zeros(h * scale, w * scale)
    for t in tile_plan(h, w, tile, overlap):
        wy = edge_weights_1d(t.height * scale, t.y0 > 0, t.y1 < h, overlap * scale)
        wx = edge_weights_1d(t.width * scale, t.x0 > 0, t.x1 < w, overlap * scale)
        total[t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] += wy[:, None] * wx[None, :]
    assert total.min() > 0


# ---------------------------------------------------------------------------------------------
# Tiled == untiled when the receptive field radius is <= overlap / 4
# ---------------------------------------------------------------------------------------------


def bicubic_fn(scale: int):
    def fn(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)

    return fn


class TinyNet(torch.nn.Module):
    """conv3x3 -> ReLU -> conv3x3 -> pixel_shuffle: receptive-field radius 2 LR px."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.c2(torch.relu(self.c1(x))))


def convnet_fn(scale: int):
    net = TinyNet(scale).eval()

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    return fn


FNS = {"bicubic": bicubic_fn, "convnet": convnet_fn}


@pytest.mark.parametrize("kind", sorted(FNS))
@pytest.mark.parametrize("overlap", [8, 16])
@pytest.mark.parametrize(("h", "w"), [(75, 101), (20, 27)])
@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_equals_untiled(kind: str, overlap: int, h: int, w: int, scale: int) -> None:
    fn = FNS[kind](scale)
    lr = torch.rand(1, 3, h, w)
    ref = fn(lr)
    out = upscale_tiled(fn, lr, scale, tile=32, overlap=overlap)
    assert out.shape == (1, 3, h * scale, w * scale) and out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-5


def test_small_overlap_shows_seams() -> None:
    """Sanity check of the test above: with overlap/4 < receptive field, tiling is not exact."""
    fn = convnet_fn(2)
    lr = torch.rand(1, 3, 75, 101)
    out = upscale_tiled(fn, lr, 2, tile=32, overlap=4)
    assert (out - fn(lr)).abs().max().item() > 1e-3


def test_output_is_float32_for_float64_input() -> None:
    lr = torch.rand(1, 3, 40, 50, dtype=torch.float64)
    out = upscale_tiled(bicubic_fn(2), lr, 2, 16, 8)
    assert out.dtype == torch.float32
    assert torch.allclose(out, bicubic_fn(2)(lr).float(), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Streaming bands, progress, memory bound
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"), [(75, 101, 32, 8), (20, 27, 32, 8), (64, 40, 16, 0), (130, 33, 24, 10)]
)
def test_bands_concatenate_to_full_result(h: int, w: int, tile: int, overlap: int) -> None:
    fn = bicubic_fn(2)
    lr = torch.rand(1, 3, h, w)
    bands = list(iter_tiled_bands(fn, lr, 2, tile, overlap))
    y = 0
    for y0, band in bands:  # consecutive, each row exactly once, in order
        assert y0 == y
        assert band.dtype == torch.float32 and band.shape[:2] == (1, 3) and band.shape[3] == w * 2
        assert 0 < band.shape[2] <= min(tile, h) * 2
        y += band.shape[2]
    assert y == h * 2
    assert len(bands) == len({t.y0 for t in tile_plan(h, w, tile, overlap)})
    full = torch.cat([b for _, b in bands], dim=2)
    assert torch.equal(full, upscale_tiled(fn, lr, 2, tile, overlap))


def test_progress_called_once_per_tile() -> None:
    calls: list[int] = []
    lr = torch.rand(1, 3, 75, 101)
    upscale_tiled(bicubic_fn(2), lr, 2, 32, 8, progress=calls.append)
    assert calls == [1] * len(tile_plan(75, 101, 32, 8))


def test_tall_image_streams_with_bounded_accumulator(monkeypatch: pytest.MonkeyPatch) -> None:
    h, w, tile, overlap, scale = 300, 40, 32, 8, 2
    accumulators: list[tiling._BandAccumulator] = []

    class Recording(tiling._BandAccumulator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            accumulators.append(self)

    monkeypatch.setattr(tiling, "_BandAccumulator", Recording)
    n_calls = 0
    base = bicubic_fn(scale)

    def fn(x: torch.Tensor) -> torch.Tensor:
        nonlocal n_calls
        n_calls += 1
        return base(x)

    plan = tile_plan(h, w, tile, overlap)
    n_cols = len({t.x0 for t in plan})
    n_rows = len(plan) // n_cols
    assert n_rows >= 10
    seen = 0
    for k, (_, band) in enumerate(iter_tiled_bands(fn, torch.rand(1, 3, h, w), scale, tile, overlap)):
        # Band k is yielded right after tile row k, before any later tile is computed.
        assert n_calls == (k + 1) * n_cols
        assert band.shape[2] <= tile * scale
        seen += 1
        assert accumulators[0].height <= tile * scale
    assert seen == n_rows
    assert len(accumulators) == 1
    assert accumulators[0].num.shape[1] == tile * scale


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_bad_inputs_raise_at_call_time() -> None:
    fn = bicubic_fn(2)
    with pytest.raises(ValueError, match=r"shape \(1, C, H, W\), got \(3, 10, 10\)"):
        iter_tiled_bands(fn, torch.rand(3, 10, 10), 2, 8, 2)
    with pytest.raises(ValueError, match=r"got \(2, 3, 10, 10\)"):
        upscale_tiled(fn, torch.rand(2, 3, 10, 10), 2, 8, 2)
    with pytest.raises(ValueError, match="floating-point.*uint8"):
        iter_tiled_bands(fn, torch.zeros(1, 3, 10, 10, dtype=torch.uint8), 2, 8, 2)
    with pytest.raises(ValueError, match="torch.Tensor.*ndarray"):
        iter_tiled_bands(fn, np.zeros((1, 3, 10, 10), np.float32), 2, 8, 2)
    with pytest.raises(ValueError, match="scale must be >= 1, got 0"):
        iter_tiled_bands(fn, torch.rand(1, 3, 10, 10), 0, 8, 2)
    with pytest.raises(ValueError, match="overlap=8 for tile=8"):
        iter_tiled_bands(fn, torch.rand(1, 3, 10, 10), 2, 8, 8)


def test_fn_with_wrong_output_shape() -> None:
    lr = torch.rand(1, 3, 40, 40)
    expected = r"fn must map a \(1, 3, 32, 32\) tile to \(1, 3, 96, 96\).*got \(1, 3, 64, 64\)"
    with pytest.raises(ValueError, match=expected):
        upscale_tiled(bicubic_fn(2), lr, 3, 32, 8)
    with pytest.raises(ValueError, match="got list"):
        upscale_tiled(lambda x: [x], lr, 1, 32, 8)
