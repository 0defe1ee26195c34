"""``pipeline upscale IN_DIR OUT_DIR``: every image of a folder, resumable, one bad file never stops the batch.

Outputs mirror the input tree (``IN_DIR/a/b.jpg`` -> ``OUT_DIR/a/b.<format>``). An output that
already exists is skipped unless ``force``, so rerunning an interrupted batch resumes it (each
output appears only when complete: :func:`pipeline.upscale.upscale_file` renames a temporary
file). Files that cannot be read or written are reported by name and counted as failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.evaluate import Upscaler
from pipeline.photo_writer import OutputFormat, check_options
from pipeline.tile_choice import TileSizes
from pipeline.upscale import UpscaleConfig, upscale_file
from srcore.images import ImageReadError

__all__ = ["FolderReport", "upscale_folder"]

logger = logging.getLogger(__name__)

_SUFFIX = {OutputFormat.PNG: ".png", OutputFormat.JPEG: ".jpg", OutputFormat.WEBP: ".webp"}


@dataclass
class FolderReport:
    """What a folder run did; ``failed`` pairs each input with the reason, ``ignored`` counts non-image files."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"done {len(self.done)}, skipped {len(self.skipped)} (output exists; --force redoes them), "
                f"failed {len(self.failed)}, ignored {self.ignored} non-image files, {self.seconds:.1f} s")


def _inputs(src_dir: Path, dst_dir: Path, recursive: bool) -> tuple[list[Path], int]:
    """Image files under ``src_dir`` (by extension, hidden and ``dst_dir`` entries left out), and the others' count."""
    readable = set(Image.registered_extensions())
    paths = src_dir.rglob("*") if recursive else src_dir.iterdir()
    images, others = [], 0
    for path in sorted(paths):
        rel = path.relative_to(src_dir)
        if any(part.startswith(".") for part in rel.parts) or path == dst_dir or dst_dir in path.parents:
            continue
        if path.is_file():
            if path.suffix.lower() in readable:
                images.append(path)
            else:
                others += 1
    return images, others


def upscale_folder(upscaler: Upscaler | TileSizes, src_dir: str | Path, dst_dir: str | Path, scale: int,
                   tile: int | None, overlap: int | None, *, fmt: OutputFormat = OutputFormat.PNG, recursive: bool = False,
                   force: bool = False, progress: bool = True,
                   config: UpscaleConfig = UpscaleConfig()) -> FolderReport:
    """Upscale every image in ``src_dir`` into ``dst_dir`` as ``fmt`` (see the module docstring).

    Raises:
        ValueError: ``dst_dir`` is ``src_dir`` or an existing file, or ``fmt`` cannot honour ``config``.
        KeyboardInterrupt: passed on after the current file's temporary output is removed.
    """
    src_dir, dst_dir = Path(src_dir).resolve(), Path(dst_dir).resolve()
    if dst_dir == src_dir:
        raise ValueError(f"the output folder {dst_dir} is the input folder; choose another one")
    if dst_dir.is_file():
        raise ValueError(f"the output {dst_dir} is a file; with an input folder give an output folder")
    check_options(fmt, config.bit_depth, config.quality)
    images, ignored = _inputs(src_dir, dst_dir, recursive)
    report = FolderReport(ignored=ignored)
    start = time.perf_counter()
    written: dict[Path, Path] = {}  # output -> the input that made it in this run
    with logging_redirect_tqdm(), tqdm(images, unit="image", disable=not progress) as bar:
        for src in bar:
            rel = src.relative_to(src_dir)
            dst = (dst_dir / rel).with_suffix(_SUFFIX[fmt])
            if dst not in written and dst.exists() and not force:
                report.skipped.append(rel)
                continue
            try:
                if dst in written:
                    raise ValueError(f"same output {dst.name} as {written[dst]}; rename one of them")
                written[dst] = rel
                upscale_file(upscaler, src, dst, scale, tile, overlap, progress=False, config=config)
                report.done.append(rel)
            except (ImageReadError, ValueError) as err:
                report.failed.append((rel, str(err)))
                logger.warning("failed %s: %s", rel, err)
    report.seconds = time.perf_counter() - start
    return report
