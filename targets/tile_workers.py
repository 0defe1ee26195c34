"""Tiles of one photo through several processes at once, each with its own runtime on one thread.

XNNPACK splits each operator of a tile over its threads, which meet after every operator. On this 2-core VM
an ExecuTorch W4 tile of 128 px took 338-352 ms on one thread and, on two, 183 ms in one hour and 265 in
another (other machines' load on the host; a late thread holds up both), while two processes of one thread
each took 184-213 ms per tile in either. Tiles are independent, so n processes can run n of them, and the
process that blends and encodes the photo does so beside them instead of between tiles. The runtimes' Python
bindings hold the GIL while a method runs, so these are processes, not threads. They start from a fork server
that imported torch and the runtime once (``preload``), so their copies share pages; memory is read as PSS
(each shared page divided among the processes mapping it) of the whole process tree, sampled at most every
quarter second as tiles finish (Linux; elsewhere the sum of each process's peak RSS, an upper bound).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import functools
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["TileWorkers", "artifact_runner", "runtime_preload", "tree_memory_mb"]

Upscaler = Callable[[torch.Tensor], torch.Tensor]

_upscaler: Upscaler | None = None  # the worker process's own, made once by its initializer
_SAMPLE_SECONDS = 0.25


def artifact_runner(target: str, artifact: str | os.PathLike, tile: int, threads: int = 1) -> Upscaler:
    """A runner of ``artifact`` (:meth:`targets.base.Target.runner`); a picklable ``factory`` for :class:`TileWorkers`."""
    from targets import get_target

    return get_target(target).runner(Path(artifact), threads=threads, tile=tile)


def runtime_preload(target: str) -> tuple[str, ...]:
    """Modules for the fork server to import for ``target``'s workers: torch, the backend and its runtime."""
    from targets import get_target

    backend = get_target(target)
    return ("torch", type(backend).__module__, *backend.runtime_modules)


def _start(factory: Callable[[], Upscaler]) -> None:
    """A worker's initializer. Ctrl-C reaches the whole process group: a worker interrupted while it holds the
    result queue's lock would leave the others and the parent's shutdown waiting forever, so workers ignore it
    and the parent, which handles it, stops them after their current tile."""
    global _upscaler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _upscaler = factory()


def _run(lr: np.ndarray) -> tuple[np.ndarray, int, float]:
    """One tile in a worker. Arrays, not tensors, cross the pipe: torch moves a pickled tensor into shared
    memory that stays mapped (peak PSS of a 2000x1500 photo at x4: 1268 MB instead of 919)."""
    from targets.latency import peak_rss_mb

    return _upscaler(torch.from_numpy(lr)).numpy(), os.getpid(), peak_rss_mb()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:  # a task that ended meanwhile
                continue
        found.append(parent)
    return found


def tree_memory_mb() -> float | None:
    """PSS of this process and all its descendants in MB (Linux); None where /proc has no ``smaps_rollup``."""
    if not Path("/proc/self/smaps_rollup").is_file():
        return None
    total = 0
    for pid in _descendants(os.getpid()):
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("Pss:"))
    return total / 1024


class TileWorkers:
    """``workers`` processes, each holding the upscaler ``factory()`` makes; :meth:`map` runs tiles through them.

    Args:
        factory: picklable, called once in each worker (e.g. ``functools.partial(artifact_runner, ...)``).
        workers: how many processes (>= 1).
        preload: modules the fork server imports once for all workers.

    Use as a context manager: leaving it stops the workers (also on an error or Ctrl-C).
    """

    def __init__(self, factory: Callable[[], Upscaler], workers: int, preload: Iterable[str] = ("torch",)):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(list(preload))
        self.workers = workers
        self._pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start,
                                                            initargs=(factory,))
        self._peaks: dict[int, float] = {}
        self._peak_tree, self._sampled = 0.0, -_SAMPLE_SECONDS

    def __enter__(self) -> TileWorkers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        return next(self.map([lr]))

    def map(self, tiles: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Each tile's output, in order; at most two tiles per worker are queued ahead."""
        pending: collections.deque[concurrent.futures.Future] = collections.deque()
        try:
            for lr in tiles:
                pending.append(self._pool.submit(_run, lr.numpy()))
                if len(pending) > 2 * self.workers:
                    yield self._result(pending.popleft())
            while pending:
                yield self._result(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def _result(self, future: concurrent.futures.Future) -> torch.Tensor:
        out, pid, peak = future.result()
        self._peaks[pid] = peak
        if time.perf_counter() - self._sampled >= _SAMPLE_SECONDS:  # reading /proc costs ~0.6 ms per process
            self._peak_tree = max(self._peak_tree, tree_memory_mb() or 0.0)
            self._sampled = time.perf_counter()
        return torch.from_numpy(out)

    def peak_memory_mb(self) -> float:
        """Peak memory of this process and its workers so far (see the module docstring)."""
        from targets.latency import peak_rss_mb

        self._peak_tree = max(self._peak_tree, tree_memory_mb() or 0.0)
        return self._peak_tree or peak_rss_mb() + sum(self._peaks.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time tiles through several worker processes at once (one runtime "
                                                 "thread each); prints one JSON line.")
    parser.add_argument("--target", required=True, help="backend name (executorch, tflite)")
    parser.add_argument("--artifact", required=True, type=Path, help="the artifact file")
    parser.add_argument("--tile", required=True, type=int, help="LR input side: one the artifact was built for")
    parser.add_argument("--workers", required=True, type=int, help="worker processes")
    parser.add_argument("--runs", type=int, default=10, help="timed tiles per worker (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed tiles per worker first (default 3)")
    args = parser.parse_args(argv)
    example = torch.rand(1, 3, args.tile, args.tile, generator=torch.Generator().manual_seed(0))
    factory = functools.partial(artifact_runner, args.target, str(args.artifact), args.tile)
    start = time.perf_counter()
    with TileWorkers(factory, args.workers, runtime_preload(args.target)) as workers:
        next(workers.map([example]))
        first = time.perf_counter() - start  # the workers' start and one tile
        for _ in workers.map([example] * (args.warmup * args.workers)):
            pass
        start = time.perf_counter()
        for _ in workers.map([example] * (args.runs * args.workers)):
            pass
        ms_per_tile = (time.perf_counter() - start) * 1e3 / (args.runs * args.workers)
        print(json.dumps({"ms_per_tile": ms_per_tile, "workers": args.workers, "start_s": first - ms_per_tile / 1e3,
                          "peak_memory_mb": workers.peak_memory_mb()}))


if __name__ == "__main__":
    main()
