"""Which of an artifact's tile sizes a photo should go through: the fastest whose memory fits a cap.

A build measures, per thread count and tile side, the time of one tile and the peak memory of a
process that ran only that tile size (:func:`targets.latency.tile_speeds`, manifest ``tile_speed``), and for
n threads also n worker processes of one thread each running tiles at once (``workers_n``).
For a given photo the time is then known before it starts: the number of tiles of
:func:`srcore.tiling.tile_plan` times the time of one, plus, for tiles run in this process, what blending
them and encoding the output cost here (beside worker processes the two overlap: the longer one counts).
The memory is the measured peak plus what the photo itself adds for that tile side, which the caller
knows (:func:`pipeline.upscale.photo_memory_mb`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.evaluate import Upscaler
from srcore.tiling import default_overlap, tile_plan

__all__ = ["TileOption", "TileSizes", "choose_tile", "measured_threads"]


@dataclass(frozen=True)
class TileOption:
    """One tile side for one photo: its plan, predicted time and memory."""

    tile: int
    overlap: int
    tiles: int
    seconds: float
    memory_mb: float
    fits: bool
    workers: int = 1

    def describe(self) -> str:
        how = f", {self.workers} processes of 1 thread" if self.workers > 1 else ""
        return (f"{self.tile} px{how}: {self.tiles} tiles (overlap {self.overlap}), about {self.seconds:.0f} s, "
                f"about {self.memory_mb:.0f} MB{'' if self.fits else ' (over the cap)'}")


@dataclass(frozen=True)
class TileSizes:
    """The tile sides an artifact runs, their measured speed, and an upscaler for each (``upscale_file`` picks one).

    Attributes:
        upscaler_for: tile side -> (1, 3, h, w) -> SR upscaler running that size (h, w at most the side).
        speeds: tile side (str) -> ``{"median_ms", "peak_rss_mb"}``; None: nothing measured, the
            ``default`` side is used.
        default: the artifact's own tile side.
        measured: where the speeds come from, for the printed choice.
        workers_for: (tile side, n) -> an upscaler running tiles in n processes of one thread each, with a
            ``map`` and used as a context manager (:class:`targets.tile_workers.TileWorkers`); None: no such mode.
        worker_speeds: n -> the same table as ``speeds`` for n such processes (``median_ms``: per tile, all busy).
        forced_workers: the processes asked for (``pipeline upscale --workers``); None: chosen by the speeds.
    """

    upscaler_for: Callable[[int], Upscaler]
    speeds: dict[str, dict[str, float]] | None
    default: int
    measured: str = ""
    workers_for: Callable[[int, int], Any] | None = None
    worker_speeds: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    forced_workers: int | None = None


def measured_threads(tile_speed: dict[str, Any], threads: int | None) -> int:
    """The thread count whose measurements apply: ``threads`` when measured, else the largest measured one."""
    counts = sorted(int(key.split("_")[1]) for key in tile_speed if key.startswith("threads_"))
    if not counts:
        raise ValueError("the manifest's tile_speed holds no measurement")
    return threads if threads in counts else counts[-1]


def choose_tile(speeds: dict[str, dict[str, float]], height: int, width: int, scale: int, max_memory_mb: float,
                photo_mb: Callable[[int], float], overlap: int | None = None,
                worker_speeds: dict[int, dict[str, dict[str, float]]] | None = None, tile: int | None = None,
                writing_s_per_mp: float = 0.0) -> tuple[TileOption, list[TileOption]]:
    """The fastest tile side (and number of worker processes) for an ``height x width`` LR photo whose
    predicted memory fits ``max_memory_mb``.

    Args:
        speeds: tile side (str) -> ``{"median_ms", "peak_rss_mb"}`` for one thread count, in this process.
        photo_mb: tile side -> MB the photo adds to a process running tiles of that side (its image, the
            blending buffers, an output that cannot be streamed).
        overlap: LR overlap; None: :func:`srcore.tiling.default_overlap` of each tile.
        worker_speeds: n -> the same for n worker processes of one thread each (:class:`TileSizes`), with
            ``start_s``, the seconds they take to start, added to their time.
        tile: only this tile side (the modes are still compared).
        writing_s_per_mp: what blending the tiles and encoding the output take in this process, per SR
            megapixel: added to the tiles' time when they run here too, overlapping it with worker processes.

    Returns:
        The chosen option and every option, smallest tile first (in-process before workers).

    Raises:
        ValueError: no tile side fits the cap (the smallest need is given).
    """
    options = []
    for workers, table in [(1, speeds), *sorted((worker_speeds or {}).items())]:
        for key, measured in sorted(table.items(), key=lambda item: int(item[0])):
            side = int(key)
            if tile is not None and side != tile:
                continue
            side_overlap = default_overlap(side) if overlap is None else overlap
            count = len(tile_plan(height, width, side, side_overlap))
            memory = measured["peak_rss_mb"] + photo_mb(side)
            tiles_s, writing_s = count * measured["median_ms"] / 1e3, height * width * scale**2 / 1e6 * writing_s_per_mp
            seconds = measured.get("start_s", 0.0) + max(tiles_s, writing_s) if workers > 1 else tiles_s + writing_s
            options.append(TileOption(side, side_overlap, count, seconds, memory, memory <= max_memory_mb, workers))
    if not options:
        raise ValueError(f"no speed measured for {tile} px tiles")
    fitting = [option for option in options if option.fits]
    if not fitting:
        least = min(options, key=lambda option: option.memory_mb)
        raise ValueError(f"no tile size fits --max-memory {max_memory_mb:.0f} MB: the smallest need is "
                         f"{least.memory_mb:.0f} MB ({least.describe()}); raise --max-memory")
    return min(fitting, key=lambda option: (option.seconds, option.tile, option.workers)), options
