"""Latency of a deployment artifact in its own runtime, against its FP32 baseline, in a fresh process.

A fresh process per measurement because runtimes size their thread pools once per process
(ExecuTorch's must be set before the first program loads) and so that a peak resident memory
belongs to one artifact. The artifact and its baseline run in the same process, interleaved round
by round (:func:`time_runners`), so that both see the same load on a shared machine; the artifact's
peak memory is read there before the baseline loads, the baseline's in a process of its own
(:func:`versus_baseline`). ``python -m targets.latency`` is that process; :func:`measure` starts it
and reads its one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from srcore.tiling import default_overlap

Run = Callable[[torch.Tensor], torch.Tensor]
PEAK_RSS_WHAT = "peak resident memory of a fresh process that loaded and ran only that artifact (runtime, Python included)"

__all__ = ["json_from_child", "measure", "summarize_times", "tile_speeds", "time_runners", "versus_baseline"]


def summarize_times(seconds: list[float]) -> dict[str, float]:
    """Median, p90, min and mean in milliseconds (p90 by the nearest-rank rule)."""
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]
    return {"median_ms": 1e3 * statistics.median(ordered), "p90_ms": 1e3 * p90, "min_ms": 1e3 * ordered[0],
            "mean_ms": 1e3 * statistics.fmean(ordered), "runs": len(ordered)}


def time_runners(runners: dict[str, Run], example: torch.Tensor, runs: int, warmup: int) -> dict[str, Any]:
    """Time several runners on ``example``, interleaved: every round calls each once, in alternating order.

    Interleaving makes the comparison paired: on a shared machine the load drifts during a
    measurement, and both runners see the same drift. Returns, per runner name,
    :func:`summarize_times` of its ``runs`` timed calls (after ``warmup`` untimed calls each), and
    with two runners ``paired_ratio_median``: the median over rounds of second / first.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name](example)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name](example)
            seconds[name].append(time.perf_counter() - start)
    result: dict[str, Any] = {name: {**summarize_times(times), "warmup_runs": warmup} for name, times in seconds.items()}
    if len(names) == 2:
        first, second = seconds[names[0]], seconds[names[1]]
        result["paired_ratio_median"] = statistics.median(b / a for a, b in zip(first, second))
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started, in MB.

    Linux keeps ``getrusage``'s ``ru_maxrss`` across ``exec``, so a process started by a large
    parent (a build holding the model) would report the parent's size; ``VmHWM`` belongs to the
    process's own address space. Elsewhere ``ru_maxrss`` is the best there is (bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(target: str, artifact: str | Path, tile: int, threads: int, runs: int = 10, warmup: int = 3,
            timeout: float = 1800, op_profile: bool = False, baseline: str | Path | None = None) -> dict[str, Any]:
    """Time ``artifact`` (and, interleaved with it, ``baseline``) on a (1, 3, tile, tile) input, in a fresh process.

    Returns:
        ``{"artifact": stats, "fp32_baseline": stats (with a baseline), "paired_speedup_median"
        (baseline / artifact per round, median), "threads"}``. ``stats["artifact"]["peak_rss_mb"]``
        is the process's peak resident memory (runtime and Python included) after loading and
        running the artifact once, before any baseline loads. With ``op_profile``,
        also ``ops``: the backend's per-operator times of the artifact (after the timed runs, so
        they do not slow them), or a reason why the runtime offers none.

    Raises:
        RuntimeError: the measuring process failed (its stderr tail is included).
    """
    command = [sys.executable, "-m", "targets.latency", "--target", target, "--artifact", str(artifact),
               "--tile", str(tile), "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    command += ["--op-profile"] if op_profile else []
    command += ["--baseline", str(baseline)] if baseline else []
    return json_from_child(command, f"timing {artifact}", timeout)


def json_from_child(command: list[str], what: str, timeout: float | None = None) -> dict[str, Any]:
    """Run ``command`` in a fresh process that imports this very checkout (installed or not); the last JSON
    line it printed. A fresh process each: its peak memory and its threads are its own.

    Raises:
        RuntimeError: the process failed or printed no JSON line (``what`` and its stderr tail are included).
    """
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def versus_baseline(target: str, artifact: Path, baseline: Path, tile: int, threads, runs: int = 10, warmup: int = 3,
                    op_profile: bool = False) -> dict[str, Any]:
    """Artifact against its FP32 baseline per thread count: one fresh process each, runs interleaved.

    ``speedup_vs_fp32`` is the ratio of the medians (> 1: the artifact is faster); ``paired_speedup_median``
    the median of the per-round ratios, the steadier of the two on a busy machine. Each side's
    ``peak_rss_mb`` is its own: a fresh process that loaded and ran only that artifact once
    (the artifact's read before the baseline loads, the baseline's from one more process).
    """
    table = {}
    for count in threads:
        r = measure(target, artifact, tile, count, runs, warmup, op_profile=op_profile, baseline=baseline)
        alone = measure(target, baseline, tile, count, runs=1, warmup=0)  # the baseline's memory, by itself
        table[f"threads_{count}"] = {
            "artifact": {**r["artifact"], "threads": count, **({"ops": r["ops"]} if "ops" in r else {})},
            "fp32_baseline": {**r["fp32_baseline"], "threads": count,
                              "peak_rss_mb": alone["artifact"]["peak_rss_mb"]},
            "peak_rss_what": PEAK_RSS_WHAT,
            "speedup_vs_fp32": r["fp32_baseline"]["median_ms"] / r["artifact"]["median_ms"],
            "paired_speedup_median": r["paired_speedup_median"],
        }
    return table


def tile_speeds(target: str, artifact: Path, tiles, scale: int, threads, runs: int = 10,
                warmup: int = 3) -> dict[str, Any]:
    """Each tile side of ``artifact`` per thread count: ms per tile, ms per output megapixel, peak memory.

    Every (threads, tile) pair is a fresh process (:func:`measure`), so each peak memory belongs to that
    tile size alone. Each count n > 1 also gets ``workers_n``: n processes of one thread each running tiles
    at once (:mod:`targets.tile_workers`), ms per tile as their throughput, memory as the process tree's peak
    (PSS on Linux: the parent, the fork server and the workers).

    ``ms_per_output_mp`` counts only the output a tile adds inside a large photo, the
    ``(tile - overlap)^2 * scale^2`` pixels past its overlap with the tiles before it: what a bigger
    tile saves in recomputed overlap and per-call cost shows up there (overlap: :func:`srcore.tiling.default_overlap`).
    """
    table: dict[str, Any] = {"how": f"median of {runs} runs after {warmup} warm-up, one fresh process per thread "
                                    f"count and tile; {PEAK_RSS_WHAT}; workers_n: n processes of one thread "
                                    "each at once, ms per tile of their throughput, peak PSS of the process tree"}
    for count in threads:
        rows = {}
        for tile in tiles:
            stats = measure(target, artifact, tile, count, runs, warmup)["artifact"]
            rows[str(tile)] = _speed_row(stats["median_ms"], stats["peak_rss_mb"], tile, scale)
        table[f"threads_{count}"] = rows
        if count > 1:
            table[f"workers_{count}"] = {str(tile): _worker_speed(target, artifact, tile, count, runs, warmup, scale)
                                         for tile in tiles}
    return table


def _worker_speed(target: str, artifact: Path, tile: int, workers: int, runs: int, warmup: int,
                  scale: int) -> dict[str, Any]:
    """One tile side through ``workers`` processes of one thread each (:mod:`targets.tile_workers`), in a fresh
    process: ms per tile (wall time over tiles, all workers busy), the seconds it took them to start (the time
    to the first tile, less one tile) and the process tree's peak memory."""
    command = [sys.executable, "-m", "targets.tile_workers", "--target", target, "--artifact", str(artifact),
               "--tile", str(tile), "--workers", str(workers), "--runs", str(runs), "--warmup", str(warmup)]
    got = json_from_child(command, f"timing {artifact} in {workers} worker processes")
    return {**_speed_row(got["ms_per_tile"], got["peak_memory_mb"], tile, scale), "workers": workers,
            "start_s": got["start_s"]}


def _speed_row(ms_per_tile: float, peak_mb: float, tile: int, scale: int) -> dict[str, float]:
    """A ``tile_speed`` row: the time per tile also per output megapixel past the tile's overlap."""
    overlap = default_overlap(tile)
    return {"median_ms": ms_per_tile, "overlap": overlap,
            "ms_per_output_mp": ms_per_tile * 1e6 / ((tile - overlap) ** 2 * scale**2), "peak_rss_mb": peak_mb}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time one artifact in its runtime; prints one JSON line.")
    parser.add_argument("--target", required=True, help="backend name (executorch, tflite)")
    parser.add_argument("--artifact", required=True, type=Path, help="the artifact file")
    parser.add_argument("--baseline", type=Path, default=None, help="an FP32 artifact to time interleaved with it")
    parser.add_argument("--tile", required=True, type=int,
                        help="LR input side: one the artifact was built for (ExecuTorch: selects the method)")
    parser.add_argument("--threads", required=True, type=int, help="runtime threads")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--op-profile", action="store_true", help="then profile per operator, where the runtime can")
    args = parser.parse_args(argv)
    from targets import get_target

    backend = get_target(args.target)
    example = torch.rand(1, 3, args.tile, args.tile, generator=torch.Generator().manual_seed(0))
    runners = {"artifact": backend.runner(args.artifact, threads=args.threads, tile=args.tile)}
    runners["artifact"](example)  # alone first: the peak read next is this artifact's, before a baseline loads
    artifact_peak_mb = peak_rss_mb()
    if args.baseline:
        runners["fp32_baseline"] = backend.runner(args.baseline, threads=args.threads, tile=args.tile)
    stats = time_runners(runners, example, args.runs, args.warmup)
    if "paired_ratio_median" in stats:
        stats["paired_speedup_median"] = stats.pop("paired_ratio_median")
    stats["artifact"]["peak_rss_mb"] = artifact_peak_mb
    stats.update(threads=args.threads)
    if args.op_profile:
        stats["ops"] = backend.op_profile(args.artifact, example, args.runs)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
