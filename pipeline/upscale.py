"""``pipeline upscale``: one photo of any size through a build artifact (or the PyTorch model), tile by tile.

Memory stays bounded by the tile: the LR image is cut by :func:`srcore.tiling.tile_plan`, the
SR result is blended and released band by band (:func:`srcore.tiling.iter_tiled_bands`) and each
band is encoded into the output PNG as it is finished, so the full SR image is never held in
memory. The output is written to a temporary sibling and renamed at the end: a failure or Ctrl-C
leaves no partial file. The apps run the same plan (``apps/golden/`` holds the shared vectors).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.evaluate import Upscaler
from srcore.images import load_rgb, to_tensor, to_uint8
from srcore.tiling import iter_tiled_bands, tile_plan

__all__ = ["UpscaleReport", "upscale_file"]


@dataclass(frozen=True)
class UpscaleReport:
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    tiles: int
    seconds: float
    peak_rss_mb: float


def _rows(bands: Iterator[tuple[int, torch.Tensor]]) -> Iterator[np.ndarray]:
    """uint8 (W*3,) rows of the SR image from float bands (the evaluation's rounding: :func:`to_uint8`)."""
    for _, band in bands:
        pixels = to_uint8(band)
        yield from pixels.reshape(pixels.shape[0], -1)


def upscale_file(upscaler: Upscaler, src: str | os.PathLike, dst: str | os.PathLike, scale: int, tile: int,
                 overlap: int, progress: bool = True) -> UpscaleReport:
    """Upscale the image ``src`` into the PNG ``dst`` with tiles of ``tile`` LR px overlapping by ``overlap``.

    Raises:
        srcore.images.ImageReadError: ``src`` is not a readable image.
        ValueError: ``dst`` is not a .png, or bad tile/overlap.
    """
    import png

    dst = Path(dst)
    if dst.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png (written band by band), got {dst.name}")
    lr = to_tensor(load_rgb(src))
    _, _, h, w = lr.shape
    plan = tile_plan(h, w, tile, overlap)
    start = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    try:
        with torch.inference_mode(), tqdm(total=len(plan), unit="tile", desc=Path(src).name, disable=not progress,
                                          leave=False) as bar, partial.open("wb") as f:
            bands = iter_tiled_bands(upscaler, lr, scale, tile, overlap, progress=bar.update)
            png.Writer(w * scale, h * scale, greyscale=False, bitdepth=8).write(f, _rows(bands))
        os.replace(partial, dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return UpscaleReport((h, w), (h * scale, w * scale), len(plan), time.perf_counter() - start, peak_kb / 1024)
