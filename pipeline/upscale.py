"""``pipeline upscale``: one photo of any size through a build artifact (or the PyTorch model), tile by tile.

The photo is read as it displays (:func:`srcore.images.load_photo`: EXIF orientation applied,
alpha, grayscale and 16-bit kept). The colour is cut by :func:`srcore.tiling.tile_plan` and
runs through the upscaler; grayscale runs as gray replicated to RGB, and the mean of the three
outputs is written. The alpha channel runs through the same plan in lockstep (MATLAB bicubic, or
the upscaler on alpha replicated to RGB), and where all LR alpha within 2 px (the bicubic support)
is fully transparent or fully opaque, the SR alpha is set exactly so.

Memory (:func:`photo_memory_mb`): the LR image, its float32 copy, the blending accumulators of one row
of tiles (:func:`srcore.tiling.iter_tiled_bands`) and one band of output samples. PNG output is encoded
band by band, so the full SR image is never held; JPEG and WebP hold it once
(:func:`pipeline.photo_writer.output_memory`, refused above ``max_memory_mb``).
The output is written to a temporary sibling and renamed at the end: a failure or Ctrl-C leaves
no partial file. The apps run the same plan (``apps/golden/`` holds the shared vectors).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import logging
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from pipeline.evaluate import Upscaler
from pipeline.photo_writer import PhotoSpec, output_format, output_memory, photo_spec, write_photo
from pipeline.tile_choice import TileSizes, choose_tile
from srcore.images import Photo, load_photo
from srcore.imresize import imresize
from srcore.tiling import ProgressFn, default_overlap, iter_tiled_bands, tile_plan

__all__ = ["AlphaMethod", "UpscaleConfig", "UpscaleReport", "photo_memory_mb", "upscale_file"]

logger = logging.getLogger(__name__)

_ALPHA_SUPPORT = 2  # LR px: the bicubic kernel's radius, so bicubic alpha is never changed by the snap


class AlphaMethod(enum.Enum):
    BICUBIC = "bicubic"
    MODEL = "model"


@dataclass(frozen=True)
class UpscaleConfig:
    """How a photo is written (the CLI's ``--alpha``, ``--bit-depth``, ``--quality``, ``--max-memory``).

    Attributes:
        alpha: how the alpha channel is upscaled.
        bit_depth: 8, or 16 (PNG only; a 16-bit input keeps its precision).
        quality: JPEG/WebP quality 1..100; None: JPEG 95, WebP lossless.
        max_memory_mb: memory cap: the largest in-memory output allowed for formats that cannot be
            streamed (JPEG, WebP), and what an artifact's tile size must fit (:func:`pipeline.tile_choice.choose_tile`).
    """

    alpha: AlphaMethod = AlphaMethod.BICUBIC
    bit_depth: int = 8
    quality: int | None = None
    max_memory_mb: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, AlphaMethod):
            raise ValueError(f"alpha must be one of {[m.value for m in AlphaMethod]}, got {self.alpha!r}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit depth must be 8 or 16, got {self.bit_depth}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.max_memory_mb < 1:
            raise ValueError(f"max memory must be >= 1 MB, got {self.max_memory_mb}")


@dataclass(frozen=True)
class UpscaleReport:
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    tiles: int
    tile: int
    overlap: int
    seconds: float
    peak_rss_mb: float
    notes: tuple[str, ...] = ()
    workers: int = 1
    """Processes the tiles ran in; above 1, ``peak_rss_mb`` is the peak PSS of this process and its workers."""


def _to_lr(samples: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8/uint16 -> float32 (1, C, H, W) in [0, 1] (``v / 255`` like :func:`to_tensor`)."""
    maxval = 65535.0 if samples.dtype == np.uint16 else 255.0
    return torch.from_numpy(samples.transpose(2, 0, 1).astype(np.float32)).div_(maxval).unsqueeze(0)


def _quantize(band: torch.Tensor, bit_depth: int, into: np.ndarray) -> None:
    """(1, C, h, w) float32 -> ``into`` (h, w, C) uint8/uint16: :func:`to_uint8`'s clamp and round at any depth.

    Overwrites ``band``: it is the blending accumulator's rows (:func:`srcore.tiling.iter_tiled_bands`'s
    ``finish``), so no float temporary of a band (tens of MB for a large photo) is made.
    """
    t = band[0].nan_to_num_(0.0).clamp_(0.0, 1.0).mul_(2**bit_depth - 1).round_()
    np.copyto(into, t.permute(1, 2, 0).numpy(), casting="unsafe")  # whole numbers in range: exact


def _all_near(mask: np.ndarray, radius: int) -> np.ndarray:
    """True where every pixel within ``radius`` (a square window, clipped at the borders) is True."""
    padded = np.pad(mask, radius, mode="edge")
    rows = sliding_window_view(padded, 2 * radius + 1, axis=0).all(axis=-1)
    return sliding_window_view(rows, 2 * radius + 1, axis=1).all(axis=-1)


def _alpha_fn(upscaler: Upscaler, method: AlphaMethod, scale: int) -> Upscaler:
    """Upscaler of a (1, 1, h, w) alpha tile."""
    if method is AlphaMethod.MODEL:
        return lambda a: upscaler(a.expand(-1, 3, -1, -1).contiguous()).mean(dim=1, keepdim=True)
    return lambda a: torch.from_numpy(imresize(a[0, 0].double().numpy(), scale)).float()[None, None]


def _output_bands(upscaler: Upscaler, photo: Photo, scale: int, tile: int, overlap: int, config: UpscaleConfig,
                  progress: ProgressFn) -> Iterator[tuple[int, np.ndarray]]:
    """``(y0, (rows, W*scale, C) samples)`` of the SR photo, top to bottom, C = gray/RGB (+ alpha).

    Every band is the same reused array, valid until the next is asked for (:func:`write_photo` is done with
    it by then): a new one each row fragmented the heap by tens of MB over a large photo.
    """
    h, w, channels = photo.pixels.shape
    band = np.empty((min(tile, h) * scale, w * scale, channels + (photo.alpha is not None)),
                    np.uint16 if config.bit_depth == 16 else np.uint8)

    def colour_samples(sr: torch.Tensor) -> np.ndarray:
        rows = band[: sr.shape[2]]
        _quantize(sr.mean(dim=1, keepdim=True) if channels == 1 else sr, config.bit_depth, rows[:, :, :channels])
        return rows

    lr = _to_lr(photo.pixels).expand(-1, 3, -1, -1)
    colour = iter_tiled_bands(upscaler, lr, scale, tile, overlap, progress=progress, finish=colour_samples)
    if photo.alpha is None:
        yield from colour
        return
    maxval = np.iinfo(photo.alpha.dtype).max
    clear, opaque = (_all_near(photo.alpha == v, _ALPHA_SUPPORT) for v in (0, maxval))
    cols = np.arange(w * scale) // scale

    def alpha_samples(sr: torch.Tensor) -> np.ndarray:
        _quantize(sr, config.bit_depth, band[: sr.shape[2], :, channels:])
        return band[: sr.shape[2], :, channels]

    alphas = iter_tiled_bands(_alpha_fn(upscaler, config.alpha, scale), _to_lr(photo.alpha[:, :, None]), scale, tile,
                              overlap, progress=progress, finish=alpha_samples)
    for (y0, rows), (_, a) in zip(colour, alphas):
        lr_rows = np.arange(y0, y0 + a.shape[0]) // scale
        a[clear[lr_rows][:, cols]] = 0
        a[opaque[lr_rows][:, cols]] = 2**config.bit_depth - 1
        yield y0, rows


UNITEMIZED_MB = 80
"""What upscaling a photo adds beyond the buffers :func:`photo_memory_mb` itemizes: freed blocks the allocator
keeps (glibc serves blocks under 32 MB from a heap it rarely returns), the PNG compressor, Python objects, tile
outputs in flight between processes. Measured on this project's 2-core x86 host with the ExecuTorch W4 .pte at
x4, 2000x600 and 2000x1500 photos, 64 and 128 px tiles: 18-35 MB in one process, 50-55 MB with 2 worker
processes; 80 leaves a margin. ``tests/test_upscale_memory.py`` checks the whole prediction against real runs."""


def photo_memory_mb(photo: Photo, scale: int, tile: int, bit_depth: int) -> float:
    """MB that upscaling ``photo`` with ``tile`` px tiles adds to the process running the tiles (or, beside
    worker processes, blending them), as :func:`_output_bands` allocates it.

    The photo's samples and their float32 copy (alpha included); the accumulators of one row of tiles, each
    ``sum w*out`` and ``sum w`` (4 float rows for colour, which runs as RGB, 2 for alpha); one band of output
    samples, for gray also the mean of the RGB band, for alpha the mask snapping it; per channel group two
    tile outputs with their weight (the one blended and the one computed meanwhile); and :data:`UNITEMIZED_MB`.
    """
    h, w, channels = photo.pixels.shape
    alpha = photo.alpha is not None
    rows, sr_width, tile_px = min(tile, h) * scale, w * scale, min(tile, h) * min(tile, w) * scale**2
    image = h * w * (channels + alpha) * (photo.pixels.itemsize + 4)
    accumulators = (4 + 2 * alpha) * 4 * rows * sr_width
    samples = ((channels + alpha) * (bit_depth // 8) + 4 * (channels == 1) + alpha) * rows * sr_width
    tiles = 2 * (1 + alpha) * (3 + 1) * 4 * tile_px
    return (image + accumulators + samples + tiles) / 2**20 + UNITEMIZED_MB


def _open_partial(dst: Path) -> tuple[Path, BinaryIO]:
    """A new temporary sibling of ``dst``, opened; an unwritable place is one clear ValueError."""
    partial = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    existing = next(p for p in dst.absolute().parents if p.exists())
    if not existing.is_dir():
        raise ValueError(f"cannot write {dst}: {existing} is a file, not a folder")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        return partial, partial.open("wb")
    except OSError as exc:
        raise ValueError(f"cannot write {dst} (in {dst.parent}): {exc.strerror or exc}") from exc


def upscale_file(upscaler: Upscaler | TileSizes, src: str | os.PathLike, dst: str | os.PathLike, scale: int,
                 tile: int | None, overlap: int | None = None, progress: bool = True,
                 config: UpscaleConfig = UpscaleConfig()) -> UpscaleReport:
    """Upscale the image ``src`` into ``dst`` (PNG, JPEG or WebP by extension) with overlapping tiles.

    Args:
        upscaler: maps a (1, 3, h, w) float tile to (1, 3, h*scale, w*scale); or an artifact's
            :class:`~pipeline.tile_choice.TileSizes`, of which ``tile`` or, when ``tile`` is None, the
            fastest size within ``config.max_memory_mb`` for this photo is used (the choice is logged).
        tile, overlap: LR tile side and overlap in px (overlap None: :func:`srcore.tiling.default_overlap`).
        progress: show a tile progress bar.
        config: alpha method, bit depth, quality and memory limit.

    Returns:
        Sizes, tile side, overlap and count, time, peak RSS, and the notes logged (conversions, dropped metadata).

    Raises:
        srcore.images.ImageReadError: ``src`` is not a readable image (corrupt, truncated, too many pixels).
        ValueError: an unsupported output, ``dst`` is ``src``, an output format that cannot hold the
            photo (alpha in JPEG, 16 bits outside PNG) or needs more than ``config.max_memory_mb``,
            an unwritable destination, or bad tile/overlap.
    """
    src, dst = Path(src), Path(dst)
    fmt = output_format(dst)
    if dst.resolve() == src.resolve():
        raise ValueError(f"the output {dst} is the input; choose another output name")
    photo = load_photo(src)
    h, w, channels = photo.pixels.shape
    spec, notes = photo_spec(fmt, (h * scale, w * scale), channels + (photo.alpha is not None), config.bit_depth,
                             config.quality, photo.icc_profile, photo.exif)
    notes = [*photo.notes, *notes]
    if photo.bit_depth == 16 and config.bit_depth == 8:
        notes.append("16-bit input written as 8-bit (--bit-depth 16 keeps 16 bits in a PNG)")
    needed_mb = output_memory(spec) / 2**20
    if needed_mb > config.max_memory_mb:
        raise ValueError(f"a {spec.width}x{spec.height} {fmt.name} output needs about {needed_mb:.0f} MB in memory "
                         f"(not streamed), above --max-memory {config.max_memory_mb} MB; write a .png (streamed) "
                         "or raise --max-memory")
    if needed_mb:
        logger.info("%s: the %s output is not streamed: it needs about %.1f MB in memory", src.name, fmt.name,
                    needed_mb)
    for note in notes:
        logger.warning("%s: %s", src.name, note)
    workers = 1
    if isinstance(upscaler, TileSizes):
        writing = _writing_seconds_per_mp(photo, spec, scale, upscaler.default, config) if upscaler.worker_speeds else 0.0
        upscaler, tile, overlap, workers = _pick(
            upscaler, src.name, (h, w), scale, tile, overlap, config.max_memory_mb,
            lambda side: photo_memory_mb(photo, scale, side, config.bit_depth) + needed_mb, writing)
    elif tile is None:
        raise ValueError("a tile side is needed: only an artifact's TileSizes can choose one")
    overlap = default_overlap(tile) if overlap is None else overlap
    plan = tile_plan(h, w, tile, overlap)
    start = time.perf_counter()
    partial, f = _open_partial(dst)
    try:
        with contextlib.ExitStack() as stack:
            if workers > 1:
                stack.enter_context(upscaler)  # stops the worker processes however this ends
            with f, torch.inference_mode(), tqdm(total=len(plan) * (1 + (photo.alpha is not None)), unit="tile",
                                                desc=src.name, disable=not progress, leave=False) as bar:
                write_photo(f, spec, _output_bands(upscaler, photo, scale, tile, overlap, config, bar.update))
            peak_mb = upscaler.peak_memory_mb() if workers > 1 else None
        os.replace(partial, dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if peak_mb is None:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return UpscaleReport((h, w), (h * scale, w * scale), len(plan), tile, overlap, time.perf_counter() - start,
                         peak_mb, tuple(notes), workers)


def _writing_seconds_per_mp(photo: Photo, spec: PhotoSpec, scale: int, tile: int, config: UpscaleConfig) -> float:
    """Seconds this process spends per SR megapixel blending tiles and encoding the output, timed on a corner of
    the photo itself (at most ``tile`` x ``4 * tile`` LR px, bilinear-upscaled so the encoder sees its content).

    Tiles run in this process wait for it; worker processes run beside it (:func:`pipeline.tile_choice.choose_tile`).
    """
    rows, cols = min(photo.pixels.shape[0], tile), min(photo.pixels.shape[1], 4 * tile)
    corner = dataclasses.replace(photo, pixels=photo.pixels[:rows, :cols],
                                 alpha=None if photo.alpha is None else photo.alpha[:rows, :cols])
    corner_spec = dataclasses.replace(spec, height=rows * scale, width=cols * scale)

    def bilinear(lr: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lr, scale_factor=scale, mode="bilinear")

    start = time.perf_counter()
    with torch.inference_mode():
        write_photo(io.BytesIO(), corner_spec, _output_bands(bilinear, corner, scale, tile, default_overlap(tile),
                                                             config, lambda _: None))
    return (time.perf_counter() - start) / (rows * cols * scale**2 / 1e6)


def _pick(sizes: TileSizes, name: str, shape: tuple[int, int], scale: int, tile: int | None,
          overlap: int | None, max_memory_mb: float, photo_mb: Callable[[int], float],
          writing_s_per_mp: float = 0.0) -> tuple[Upscaler, int, int | None, int]:
    """The upscaler, tile, overlap and worker processes for one photo from an artifact's sizes (see :func:`upscale_file`)."""
    workers = sizes.forced_workers or 1
    if sizes.speeds is None and not sizes.worker_speeds:
        if tile is None:
            tile = sizes.default
            logger.info("%s: tile %d px, the artifact's own (its manifest holds no speed for this choice)", name, tile)
    else:
        chosen, options = choose_tile(sizes.speeds or {}, *shape, scale, max_memory_mb, photo_mb, overlap,
                                      sizes.worker_speeds, tile, writing_s_per_mp)
        logger.info("%s: tile %d px%s, the fastest %swithin --max-memory %d MB (%s):\n%s", name, chosen.tile,
                    f" in {chosen.workers} processes" if chosen.workers > 1 else "",
                    "of the artifact's sizes " if tile is None else "way to run it ", max_memory_mb, sizes.measured,
                    "\n".join(f"  {'->' if o is chosen else '  '} {o.describe()}" for o in options))
        tile, overlap, workers = chosen.tile, chosen.overlap, chosen.workers
    if workers > 1:
        return sizes.workers_for(tile, workers), tile, overlap, workers
    return sizes.upscaler_for(tile), tile, overlap, workers
