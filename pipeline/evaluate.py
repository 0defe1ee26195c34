"""Benchmark evaluation: any upscaler on benchmark folders, Y-channel PSNR/SSIM, Markdown/JSON reports.

An *upscaler* maps a (1, 3, h, w) float tensor in [0, 1] to (1, 3, h*s, w*s). The same runner
interface serves the PyTorch model, the fake-quantized model, bicubic and (later) the deployed
artifacts, so every number in the project comes from this one metric path: output clamped and
rounded to uint8, Y channel, ``scale`` px cropped, averaged per set (the 2DQuant protocol).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from srcore.data import ImagePair, dataset_name, load_benchmark
from srcore.images import save_rgb, to_tensor, to_uint8
from srcore.imresize import imresize
from srcore.metrics import ImageScore, psnr_y, ssim_y, summarize
from srcore.model import mirror_pad
from srcore.tiling import upscale_tiled

__all__ = ["Upscaler", "DatasetResult", "evaluate", "model_upscaler", "bicubic_upscaler", "to_markdown", "write_json"]

log = logging.getLogger(__name__)

Upscaler = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DatasetResult:
    """Scores of one benchmark folder."""

    dataset: str
    scale: int
    psnr: float
    ssim: float
    images: list[ImageScore] = field(default_factory=list)


def model_upscaler(model: torch.nn.Module, device: str | torch.device = "cpu") -> Upscaler:
    """Wrap a PyTorch SR model (eval mode, no autograd) as an upscaler running on ``device``."""
    model.eval()

    def run(lr: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(lr.to(device)).float().cpu()

    return run


def fixed_shape_upscaler(run_tile: Upscaler, tile: int, scale: int) -> Upscaler:
    """Run a fixed-input-shape artifact (tile x tile) on tiles of at most that size.

    Deployed artifacts take one shape; :func:`srcore.tiling.tile_plan` gives smaller tiles on
    images narrower than the tile. Those are mirror-padded (the model's own padding,
    :func:`srcore.model.mirror_pad`) up to ``tile`` and the output is cropped back. The apps
    do the same, so the PyTorch simulation of a build and the artifact see identical inputs.
    """

    def run(lr: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2:]
        if h > tile or w > tile:
            raise ValueError(f"a {h}x{w} tile does not fit the artifact's {tile}x{tile} input; evaluate with tile={tile}")
        return run_tile(mirror_pad(lr, tile))[..., : h * scale, : w * scale]

    return run


def bicubic_upscaler(scale: int) -> Upscaler:
    """MATLAB-compatible bicubic upscaling of the uint8 LR image (the paper's Bicubic row)."""

    def run(lr: torch.Tensor) -> torch.Tensor:
        return to_tensor(imresize(to_uint8(lr), scale))

    return run


def _upscale(upscaler: Upscaler, pair: ImagePair, scale: int, tile: int | None, overlap: int) -> np.ndarray:
    lr = to_tensor(pair.lr)
    if tile is None:
        sr = upscaler(lr)
    else:
        sr = upscale_tiled(upscaler, lr, scale, tile, overlap)
    expected = (1, 3, pair.lr.shape[0] * scale, pair.lr.shape[1] * scale)
    if tuple(sr.shape) != expected:
        raise ValueError(f"upscaler returned shape {tuple(sr.shape)} for {pair.name}, expected {expected}")
    return to_uint8(sr)


def evaluate(
    upscaler: Upscaler,
    folders: Sequence[str | os.PathLike],
    scale: int,
    tile: int | None = None,
    overlap: int = 16,
    save_dir: str | os.PathLike | None = None,
    on_error: str = "skip",
    progress: bool = True,
) -> list[DatasetResult]:
    """Upscale every LR image of every benchmark folder and score it against its HR image.

    Args:
        upscaler: the runner (see module docstring).
        folders: benchmark folders (``HR/`` + ``LR_bicubic/X<s>/``, or HR-only; see ``load_benchmark``).
        scale: 2, 3 or 4.
        tile: LR tile size for tiled inference (bounded memory), or None for whole images.
        overlap: LR overlap between tiles.
        save_dir: if given, SR images are written to ``save_dir/<dataset>/<name>.png``.
        on_error: ``skip`` (warn and go on) or ``raise`` for unreadable or too-small images.
        progress: show a progress bar (stderr).

    Returns:
        One :class:`DatasetResult` per folder, in order.
    """
    results = []
    for folder in folders:
        name = dataset_name(folder)
        pairs = load_benchmark(folder, scale, on_error=on_error)
        scores = []
        for pair in tqdm(pairs, desc=f"{name} x{scale}", unit="img", disable=not progress, leave=False):
            sr = _upscale(upscaler, pair, scale, tile, overlap)
            if save_dir is not None:
                save_rgb(Path(save_dir) / name / f"{pair.name}.png", sr)
            try:
                scores.append(ImageScore(pair.name, psnr_y(sr, pair.hr, scale), ssim_y(sr, pair.hr, scale)))
            except ValueError as err:  # too small to score once `scale` px are cropped
                if on_error == "raise":
                    raise
                log.warning("%s/%s not scored: %s", name, pair.name, err)
        if not scores:
            raise ValueError(f"no image of {folder} could be scored at x{scale}")
        psnr, ssim = summarize(scores)
        results.append(DatasetResult(name, scale, psnr, ssim, scores))
    return results


def to_markdown(results: Sequence[DatasetResult], title: str, notes: Sequence[str] = ()) -> str:
    """Per-dataset summary table, then one per-image table per dataset."""
    lines = [f"## {title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", "| dataset | scale | images | PSNR (dB) | SSIM |", "|---|---|---|---|---|"]
    lines += [f"| {r.dataset} | x{r.scale} | {len(r.images)} | {r.psnr:.2f} | {r.ssim:.4f} |" for r in results]
    for r in results:
        lines += ["", f"### {r.dataset} x{r.scale}", "", "| image | PSNR (dB) | SSIM |", "|---|---|---|"]
        lines += [f"| {s.name} | {s.psnr:.2f} | {s.ssim:.4f} |" for s in r.images]
    return "\n".join(lines) + "\n"


def write_json(results: Sequence[DatasetResult], path: str | os.PathLike, meta: dict) -> None:
    """Write ``{"meta": ..., "results": [...]}`` (infinite PSNR as null) atomically."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    payload = clean({"meta": meta, "results": [asdict(r) for r in results]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
