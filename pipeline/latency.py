"""Latency of a deployment artifact in its own runtime, one fresh process per measurement.

A fresh process per (artifact, thread count) because runtimes size their thread pools once per
process (ExecuTorch's must be set before the first program loads), and so that the peak resident
memory it reports belongs to that artifact alone. ``python -m pipeline.latency`` is that process;
:func:`measure` starts it and reads its one JSON line.
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

__all__ = ["measure", "summarize_times", "time_runner"]


def summarize_times(seconds: list[float]) -> dict[str, float]:
    """Median, p90, min and mean in milliseconds (p90 by the nearest-rank rule)."""
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]
    return {"median_ms": 1e3 * statistics.median(ordered), "p90_ms": 1e3 * p90, "min_ms": 1e3 * ordered[0],
            "mean_ms": 1e3 * statistics.fmean(ordered), "runs": len(ordered)}


def time_runner(run: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, runs: int, warmup: int) -> dict:
    """Call ``run(example)`` ``warmup`` times untimed, then ``runs`` times timed; :func:`summarize_times` of those."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    start = time.perf_counter()
    for _ in range(warmup):
        run(example)
    warm = time.perf_counter() - start
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        run(example)
        seconds.append(time.perf_counter() - start)
    return {**summarize_times(seconds), "warmup_runs": warmup, "warmup_ms": 1e3 * warm}


def measure(target: str, artifact: str | Path, tile: int, threads: int, runs: int = 10, warmup: int = 3,
            timeout: float = 1800, op_profile: bool = False) -> dict[str, Any]:
    """Time ``artifact`` on a (1, 3, tile, tile) input with ``threads`` threads, in a fresh process.

    Returns:
        :func:`time_runner`'s statistics plus ``threads`` and ``peak_rss_mb`` (the process's peak
        resident memory, runtime and Python included); with ``op_profile``, also ``ops``: the
        backend's per-operator times (after the timed runs, so they do not slow them), or a
        reason why the runtime offers none.

    Raises:
        RuntimeError: the measuring process failed (its stderr tail is included).
    """
    command = [sys.executable, "-m", "pipeline.latency", "--target", target, "--artifact", str(artifact),
               "--tile", str(tile), "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    command += ["--op-profile"] if op_profile else []
    # The child imports this very checkout, installed or not.
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"timing {artifact} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time one artifact in its runtime; prints one JSON line.")
    parser.add_argument("--target", required=True, help="backend name (executorch, tflite)")
    parser.add_argument("--artifact", required=True, type=Path, help="the artifact file")
    parser.add_argument("--tile", required=True, type=int, help="LR input side the artifact was built for")
    parser.add_argument("--threads", required=True, type=int, help="runtime threads")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--op-profile", action="store_true", help="then profile per operator, where the runtime can")
    args = parser.parse_args(argv)
    from targets import get_target

    backend = get_target(args.target)
    run = backend.runner(args.artifact, threads=args.threads)
    example = torch.rand(1, 3, args.tile, args.tile, generator=torch.Generator().manual_seed(0))
    stats = time_runner(run, example, args.runs, args.warmup)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    stats = {**stats, "threads": args.threads, "peak_rss_mb": peak_kb / 1024}
    if args.op_profile:
        stats["ops"] = (backend.op_profile(args.artifact, example, args.runs) if hasattr(backend, "op_profile")
                        else getattr(backend, "no_op_profile", "this runtime offers no per-operator profile"))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
