"""A build folder (``pipeline build`` output) read back: manifest, artifact, FP32 baseline, and a runner for it.

:func:`pipeline.build.build` returns an :class:`Artifact`; ``pipeline upscale --artifact`` and
``pipeline profile`` load one with :func:`load_build`, so all of them run exactly what the build
wrote, through the runtime its manifest names, at one of the fixed tile sizes it was built for.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.evaluate import Upscaler, fixed_shape_upscaler
from pipeline.tile_choice import TileSizes, measured_threads
from targets import get_target
from targets.tile_workers import TileWorkers, artifact_runner, runtime_preload

__all__ = ["Artifact", "BuildFolderError", "artifact_bytes", "load_build"]


class BuildFolderError(ValueError):
    """Not a build folder: no or unreadable manifest, or a file it names is missing."""


def artifact_bytes(path: Path) -> int:
    """Size of an artifact on disk: a file, or every file in a folder (e.g. an .mlpackage)."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Artifact:
    """A verified build folder: ``folder/manifest.json`` and the artifact (and FP32 baseline) it names."""

    folder: Path
    manifest: dict[str, Any]
    _run: Upscaler | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def artifact(self) -> Path:
        return self.folder / self.manifest["artifact"]

    @property
    def baseline(self) -> Path | None:
        entry = self.manifest.get("baseline")
        return self.folder / entry["artifact"] if entry else None

    @property
    def tile(self) -> int:
        return int(self.manifest["tile"])

    @property
    def tiles(self) -> tuple[int, ...]:
        """Every LR tile side the artifact runs, its own :attr:`tile` first (older manifests: that one)."""
        return tuple(int(t) for t in self.manifest.get("tiles", [self.tile]))

    @property
    def scale(self) -> int:
        return int(self.manifest["scale"])

    @property
    def bits(self) -> int:
        return int(self.manifest["weight_bits"])

    def upscaler(self, threads: int | None = None, baseline: bool = False, tile: int | None = None) -> Upscaler:
        """Tiles of at most ``tile`` px (one of :attr:`tiles`, default :attr:`tile`) through the artifact's runtime.

        ``baseline``: through the FP32 baseline instead, which runs only :attr:`tile`.
        """
        tile = self.tile if tile is None else tile
        path = self._runnable(tile, baseline)
        return fixed_shape_upscaler(get_target(self.target).runner(path, threads=threads, tile=tile), tile, self.scale)

    def _runnable(self, tile: int, baseline: bool = False) -> Path:
        """The file that runs ``tile`` px tiles here (the artifact or its FP32 baseline); why not, as an error."""
        if tile not in self.tiles or (baseline and tile != self.tile):
            raise BuildFolderError(f"{self.folder} runs LR tiles of {', '.join(map(str, self.tiles))} px"
                                   f"{f' (its FP32 baseline only {self.tile})' if baseline else ''}, not {tile}")
        path = self.baseline if baseline else self.artifact
        if path is None:
            raise BuildFolderError(f"{self.folder} has no FP32 baseline ({self.target} builds keep none)")
        if get_target(self.target).runtime is None:
            raise BuildFolderError(f"{self.target} artifacts cannot run on this host")
        return path

    def tile_sizes(self, threads: int | None = None, workers: int | None = None) -> TileSizes:
        """Every tile size with an upscaler each and the speeds the build measured with ``threads`` (or the most
        threads): in this process and, where the build measured them, in as many worker processes of one thread.

        ``workers``: None offers both modes; 1 only this process; n > 1 only n worker processes (with speeds
        where the build measured n). ``pipeline upscale`` picks from these per photo
        (:func:`pipeline.tile_choice.choose_tile`).
        """
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        measured = self.manifest.get("tile_speed")
        speeds, where, worker_speeds = None, "", {}
        if measured:
            count = measured_threads(measured, threads)
            where = f"speeds measured by the build with {count} thread(s)"
            n = count if workers is None else workers
            if n > 1 and f"workers_{n}" in measured:
                worker_speeds = {n: measured[f"workers_{n}"]}
                where += f" and with {n} processes of 1 thread"
            if workers is None or workers == 1:
                speeds = measured[f"threads_{count}"]
        return TileSizes(functools.cache(lambda tile: self.upscaler(threads, tile=tile)), speeds, self.tile, where,
                         self.workers, worker_speeds, workers)

    def workers(self, tile: int, count: int) -> TileWorkers:
        """``count`` worker processes, each running the artifact at ``tile`` on one thread (tiles up to that size)."""
        factory = functools.partial(_fixed_shape_runner, self.target, str(self._runnable(tile)), tile, self.scale)
        return TileWorkers(factory, count, runtime_preload(self.target))

    def run(self, lr: torch.Tensor) -> torch.Tensor:
        """One (1, 3, h, w) LR image in [0, 1], h and w at most ``tile``, through the artifact's runtime -> SR image.

        The runtime is loaded on the first call and kept; :meth:`upscaler` gives one with other threads.
        """
        if self._run is None:
            object.__setattr__(self, "_run", self.upscaler())
        return self._run(lr)


def _fixed_shape_runner(target: str, artifact: str, tile: int, scale: int) -> Upscaler:
    """What each worker process of :meth:`Artifact.workers` runs: the artifact on one thread, any tile up to ``tile``."""
    return fixed_shape_upscaler(artifact_runner(target, artifact, tile, threads=1), tile, scale)


def load_build(folder: str | os.PathLike) -> Artifact:
    """Read ``folder/manifest.json`` and check that the files it names exist.

    Raises:
        BuildFolderError: with what is wrong and how to get a build folder.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise BuildFolderError(f"{folder} is not a build folder (no manifest.json); make one with "
                               "`python -m pipeline build --target ...`")
    try:
        manifest = json.loads(manifest_path.read_text())
        build = Artifact(folder, manifest)
        paths = [build.artifact] + ([build.baseline] if build.baseline else [])
        _ = build.tile, build.tiles, build.scale, build.bits, build.target
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise BuildFolderError(f"{manifest_path} is not a valid build manifest: {err}") from err
    for path in paths:
        if not path.exists():
            raise BuildFolderError(f"{path} named by {manifest_path} is missing")
    return build
