"""Tiled super-resolution with seamless blending and memory bounded by one band of tiles.

Large images (evaluation with ``--tile``, ``pipeline upscale`` on photos, the mobile apps) do not
fit through the model in one piece: the LR image is cut into overlapping tiles, each tile is
upscaled on its own, and the SR tiles are blended back with weights that vanish near the cuts.
The Kotlin and Swift apps re-implement this file, so the whole algorithm is specified here.

**Plan** (:func:`tile_plan`, LR pixels, half-open boxes). Along an axis of length ``n``, with
``t = min(tile, n)``, alignment ``a = align`` (default :data:`TILE_ALIGN`, SwinIR's 8 px window)
if ``tile - overlap >= align`` else ``a = 1``, and stride ``s = tile - overlap`` rounded down to a
multiple of ``a``, tile starts are ``0, s, 2s, ...`` while ``start + t < n``, then ``n - t``
rounded up to a multiple of ``a``: the last tile ends on the border and is up to ``a - 1`` px
shorter than ``t``. If ``n <= tile`` there is a single start, 0. Tiles are the Cartesian product
of the row starts and the column starts, in row-major order; all tiles of a row share their rows.
Consecutive tiles overlap by at least ``overlap`` px.

Every start is a multiple of the window, so each tile's attention windows are the untiled image's
windows, and the last tile, padded by the model (or :func:`srcore.model.mirror_pad` for a fixed-size
artifact) to a multiple of 8, sees the same padding as the whole image. Shifted back to ``n - t``
instead (``align=1``, the plan before), its windows straddled the image's, and on a photo whose
sides are not multiples of 8 the tiled output strayed from the untiled one by several levels of 255
(``reports/upscale_photo.md`` measures both plans). A stride that is not a multiple of 8 does the
same to every tile, hence the rounding (the overlap is a minimum).

**Weights** (:func:`edge_weights_1d`, SR pixels). Let ``o = overlap * scale`` and
``ramp(d) = clamp((d - o/4) / (o/2), 0, 1)`` (``ramp = 1`` when ``o = 0``). For a tile of SR
length ``L`` along an axis, pixel ``i`` (``0 <= i < L``) gets
``ramp(i + 0.5)`` if the tile's start edge is inner (not on the image border), times
``ramp(L - i - 0.5)`` if its end edge is inner; a border edge contributes 1. So the weight is 0
for the first ``o/4`` px from an inner edge, rises linearly over the next ``o/2`` px and is 1
beyond ``3o/4``. The 2-D weight of a tile is the outer product of its row and column weights.

**Blending.** ``out = sum_tiles(w * fn(tile)) / sum_tiles(w)``. Neighbouring tiles overlap by
``>= o`` SR px, so at every pixel of an overlap the two distances to the facing inner edges add
up to ``>= o``; one of them is ``> o/4`` (in fact ``>= o/2``), hence the total weight is
positive everywhere. A pixel within ``o/4`` SR px (``overlap/4`` LR px) of a tile's inner edge
takes nothing from that tile: when the model's receptive-field radius is ``<= overlap/4`` LR px,
every pixel only takes values that equal the untiled output, and tiled == untiled up to float
rounding. SwinIR's receptive field is larger (windows, shifts, attention), so there tiling is a
close approximation whose seams are hidden by the ramps; use ``overlap >= 16`` in practice.

**Streaming.** Tiles are processed row by row. The accumulators (``sum w*out`` and ``sum w``)
only cover SR rows from the first unfinished row down to the bottom of the current tile row:
at most ``min(tile, H) * scale`` rows of the full SR width, allocated once. After a tile row, the
rows above the next tile row's top are final; they are normalised in place, handed to the caller as a
band (:func:`iter_tiled_bands`, whose ``finish`` may convert them before a copy is made) and dropped,
the rows below moving up.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = ["SEAM_OVERLAP", "TILE_ALIGN", "Tile", "default_overlap", "tile_plan", "edge_weights_1d", "iter_tiled_bands", "upscale_tiled"]

SEAM_OVERLAP = 16
"""LR overlap that keeps SwinIR-light's seams under 1/255 at every tile size measured (reports/upscale_photo.md)."""

TILE_ALIGN = 8
"""Tile starts are multiples of SwinIR's window, so that tiles keep the untiled image's windows."""

logger = logging.getLogger(__name__)

UpscaleFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps a (1, C, h, w) float tensor to its (1, C, h*scale, w*scale) upscaled version."""
ProgressFn = Callable[[int], object]
"""Called with 1 after each tile (``tqdm.update`` fits)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Tile:
    """One tile of the plan, in LR pixel coordinates, half-open: rows ``[y0, y1)``, cols ``[x0, x1)``."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_tile_overlap(tile: object, overlap: object) -> tuple[int, int]:
    tile = _check_int(tile, "tile", 1)
    overlap = _check_int(overlap, "overlap", 0)
    if overlap >= tile:
        raise ValueError(f"overlap must be in [0, tile - 1] = [0, {tile - 1}], got overlap={overlap} for tile={tile}")
    return tile, overlap


def default_overlap(tile: int) -> int:
    """The overlap when none is given: :data:`SEAM_OVERLAP`, or a quarter of a tile too small for it.

    Seams depend on the model's receptive field, not on the tile, so a bigger tile keeps the same
    overlap and recomputes a smaller share of its pixels.
    """
    return min(SEAM_OVERLAP, _check_int(tile, "tile", 1) // 4)


def _starts(n: int, tile: int, overlap: int, align: int) -> list[int]:
    """Tile starts along one axis of length ``n`` (see the module docstring)."""
    if n <= tile:
        return [0]
    a = align if tile - overlap >= align else 1
    stride = (tile - overlap) // a * a
    return list(range(0, n - tile, stride)) + [-(-(n - tile) // a) * a]


def tile_plan(h: int, w: int, tile: int, overlap: int, align: int = TILE_ALIGN) -> list[Tile]:
    """Row-major list of overlapping tiles covering an ``h x w`` LR image.

    Args:
        h: image height in LR pixels, >= 1.
        w: image width in LR pixels, >= 1.
        tile: tile side in LR pixels, >= 1 (clipped to the image side when the image is smaller).
        overlap: minimum overlap between neighbouring tiles in LR pixels, ``0 <= overlap < tile``.
        align: every start is a multiple of it when ``tile - overlap >= align`` (default: the window).

    Returns:
        Tiles of at most ``min(tile, h) x min(tile, w)``, stride ``tile - overlap`` rounded down to a
        multiple of ``align``, the last row and column ending on the border at an aligned start; all
        tiles of a row share ``y0``/``y1``.

    Raises:
        ValueError: on a non-integer or out-of-range argument.
    """
    h = _check_int(h, "h", 1)
    w = _check_int(w, "w", 1)
    tile, overlap = _check_tile_overlap(tile, overlap)
    align = _check_int(align, "align", 1)
    return [
        Tile(y, x, min(y + tile, h), min(x + tile, w))
        for y in _starts(h, tile, overlap, align) for x in _starts(w, tile, overlap, align)
    ]


def edge_weights_1d(length: int, inner_start: bool, inner_end: bool, overlap_sr: int) -> torch.Tensor:
    """Blending weights of a tile along one axis, in SR pixels.

    Args:
        length: tile length along the axis in SR pixels, >= 1.
        inner_start: the tile's start edge is inside the image (ramp there); else weight 1.
        inner_end: the tile's end edge is inside the image (ramp there); else weight 1.
        overlap_sr: ``overlap * scale``, >= 0; 0 disables the ramps (all ones).

    Returns:
        float32 tensor of shape (length,), values in [0, 1]:
        ``ramp(i + 0.5) [if inner_start] * ramp(length - i - 0.5) [if inner_end]`` with
        ``ramp(d) = clamp((d - overlap_sr/4) / (overlap_sr/2), 0, 1)``.
    """
    length = _check_int(length, "length", 1)
    overlap_sr = _check_int(overlap_sr, "overlap_sr", 0)
    w = torch.ones(length, dtype=torch.float64)
    if overlap_sr > 0:
        d = torch.arange(length, dtype=torch.float64) + 0.5

        def ramp(dist: torch.Tensor) -> torch.Tensor:
            return ((dist - overlap_sr / 4.0) / (overlap_sr / 2.0)).clamp(0.0, 1.0)

        if inner_start:
            w = w * ramp(d)
        if inner_end:
            w = w * ramp(length - d)
    return w.to(torch.float32)


class _BandAccumulator:
    """``sum w*out`` and ``sum w`` for SR rows ``[top, top + height)``, full SR width, in buffers of ``rows``
    rows allocated once: a finished band is normalised in place, handed to ``finish``, and the rows below it
    moved up, so the memory stays one tile row of accumulators with nothing allocated per row (a 2000 px wide
    photo at x4 needs 63 MB of accumulators for 128 px tiles; reallocating them each row grew the heap)."""

    def __init__(self, channels: int, width: int, rows: int, device: torch.device) -> None:
        self.top = 0
        self.height = 0
        self.num = torch.zeros(channels, rows, width, dtype=torch.float32, device=device)
        self.den = torch.zeros(1, rows, width, dtype=torch.float32, device=device)

    def extend_to(self, bottom: int) -> None:
        """Cover rows up to ``bottom`` (exclusive); rows past ``height`` are already zero."""
        if bottom - self.top > self.num.shape[1]:
            raise ValueError(f"rows {self.top}..{bottom} exceed the accumulator's {self.num.shape[1]}")
        self.height = max(self.height, bottom - self.top)

    def add(self, y0: int, x0: int, out: torch.Tensor, weight: torch.Tensor) -> None:
        """Accumulate a (C, h, w) tile output with its (h, w) weight at SR position (y0, x0)."""
        r0 = y0 - self.top
        h, w = weight.shape
        self.num[:, r0 : r0 + h, x0 : x0 + w].addcmul_(out, weight)
        self.den[:, r0 : r0 + h, x0 : x0 + w].add_(weight)

    def pop_until(self, bottom: int, finish: Callable[[torch.Tensor], T]) -> tuple[int, T]:
        """Normalise rows ``[top, bottom)``, drop them, return ``(top, finish((1, C, rows, W) band))``."""
        k = bottom - self.top
        top, band = self.top, finish(self.num[:, :k].div_(self.den[:, :k]).unsqueeze(0))
        rest = self.height - k
        for buffer in (self.num, self.den):
            for i in range(0, rest, k):  # k rows at a time: a chunk's source and destination never overlap
                n = min(k, rest - i)
                buffer[:, i : i + n].copy_(buffer[:, i + k : i + k + n])
            buffer[:, rest : self.height].zero_()
        self.top, self.height = bottom, rest
        return top, band


def _check_lr(lr: object) -> torch.Tensor:
    if not isinstance(lr, torch.Tensor):
        raise ValueError(f"lr must be a torch.Tensor of shape (1, C, H, W), got {type(lr).__name__}")
    if lr.ndim != 4 or lr.shape[0] != 1:
        raise ValueError(f"lr must have shape (1, C, H, W), got {tuple(lr.shape)}")
    if not lr.is_floating_point():
        raise ValueError(f"lr must be a floating-point tensor, got dtype {lr.dtype}")
    if min(lr.shape[1:]) < 1:
        raise ValueError(f"lr must be non-empty, got shape {tuple(lr.shape)}")
    return lr


def iter_tiled_bands(
    fn: UpscaleFn,
    lr: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    progress: ProgressFn | None = None,
    align: int = TILE_ALIGN,
    finish: Callable[[torch.Tensor], Any] = torch.clone,
) -> Iterator[tuple[int, Any]]:
    """Upscale ``lr`` tile by tile, yielding finished horizontal SR bands top to bottom.

    ``fn`` is called once per tile of :func:`tile_plan` in its row-major order, with a
    contiguous (1, C, th, tw) slice of ``lr``; gradients/inference mode are the caller's business.
    An ``fn`` with a ``map(tiles)`` method (a pool of worker processes, say) gets all the
    tiles through it instead, and must yield their outputs in the same order (it may run them in parallel).

    Args:
        fn: maps (1, C, h, w) to (1, C, h*scale, w*scale); any float dtype, any device.
        lr: (1, C, H, W) floating-point LR image (C = 3 for RGB).
        scale: upscaling factor, >= 1.
        tile: tile side in LR pixels (see :func:`tile_plan`).
        overlap: tile overlap in LR pixels, ``0 <= overlap < tile``.
        progress: optional callable, called with 1 after each tile (e.g. ``tqdm.update``).
        align: tile starts are multiples of it (see :func:`tile_plan`).
        finish: maps each band to what is yielded, called with a view of the accumulator's rows, which it may
            overwrite and which is reused after the call: converting the band there (say to 8-bit samples)
            spares a float copy of it. The default, a copy, yields the band itself.

    Yields:
        ``(y0_sr, finish(band))``: the band's first SR row and what ``finish`` made of the float32
        (1, C, rows, W*scale) band on ``lr``'s device. Bands are disjoint, consecutive and together cover
        all ``H*scale`` rows; each has at most ``min(tile, H) * scale`` rows.

    Raises:
        ValueError: on bad arguments (raised at the call, before iterating), or, while
            iterating, when ``fn`` returns a tensor of the wrong shape.
    """
    lr = _check_lr(lr)
    scale = _check_int(scale, "scale", 1)
    tile, overlap = _check_tile_overlap(tile, overlap)
    return _iter_bands(fn, lr, scale, tile_plan(lr.shape[2], lr.shape[3], tile, overlap, align), overlap, progress,
                       finish)


def _iter_bands(
    fn: UpscaleFn,
    lr: torch.Tensor,
    scale: int,
    plan: list[Tile],
    overlap: int,
    progress: ProgressFn | None,
    finish: Callable[[torch.Tensor], Any],
) -> Iterator[tuple[int, Any]]:
    _, c, h, w = lr.shape
    overlap_sr = overlap * scale
    row_tops = sorted({t.y0 for t in plan})
    logger.debug("tiled upscale: %dx%d LR, %d tiles in %d rows (first %dx%d, overlap=%d, x%d)",
                 h, w, len(plan), len(row_tops), plan[0].width, plan[0].height, overlap, scale)

    acc = _BandAccumulator(c, w * scale, max(t.height for t in plan) * scale, lr.device)
    tiles = (lr[:, :, t.y0 : t.y1, t.x0 : t.x1].contiguous() for t in plan)
    outputs = fn.map(tiles) if callable(getattr(fn, "map", None)) else map(fn, tiles)
    for r, row_top in enumerate(row_tops):
        row = [t for t in plan if t.y0 == row_top]
        acc.extend_to(row[0].y1 * scale)
        wy = edge_weights_1d(row[0].height * scale, row[0].y0 > 0, row[0].y1 < h, overlap_sr).to(lr.device)
        for t in row:
            out = next(outputs)
            expected = (1, c, t.height * scale, t.width * scale)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"fn must map a {tuple((1, c, t.height, t.width))} tile to {expected} "
                                 f"(scale={scale}), got {got}")
            wx = edge_weights_1d(t.width * scale, t.x0 > 0, t.x1 < w, overlap_sr).to(lr.device)
            weight = wy[:, None] * wx[None, :]
            acc.add(t.y0 * scale, t.x0 * scale, out[0].to(device=lr.device, dtype=torch.float32), weight)
            if progress is not None:
                progress(1)
        done = row_tops[r + 1] * scale if r + 1 < len(row_tops) else h * scale
        if done > acc.top:
            yield acc.pop_until(done, finish)


def upscale_tiled(
    fn: UpscaleFn,
    lr: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    progress: ProgressFn | None = None,
    align: int = TILE_ALIGN,
) -> torch.Tensor:
    """Upscale ``lr`` tile by tile and return the whole blended SR image.

    Same arguments as :func:`iter_tiled_bands`, whose bands are copied into one output tensor.

    Returns:
        float32 (1, C, H*scale, W*scale) tensor on ``lr``'s device.
    """
    lr = _check_lr(lr)
    scale = _check_int(scale, "scale", 1)
    _, c, h, w = lr.shape
    out = torch.empty(1, c, h * scale, w * scale, dtype=torch.float32, device=lr.device)
    for y0, band in iter_tiled_bands(fn, lr, scale, tile, overlap, progress, align):
        out[:, :, y0 : y0 + band.shape[2]] = band
    return out
