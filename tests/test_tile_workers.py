"""Tiles through worker processes (targets.tile_workers): every output in order, and Ctrl-C stops it all."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pipeline.evaluate import bicubic_upscaler
from targets.tile_workers import TileWorkers

ROOT = Path(__file__).resolve().parents[1]


def test_tile_workers_return_every_tile_in_order_from_several_processes():
    tiles = [torch.rand(1, 3, 8 + i, 12, generator=torch.Generator().manual_seed(i)) for i in range(7)]
    run = bicubic_upscaler(2)
    with TileWorkers(functools.partial(bicubic_upscaler, 2), 2) as workers:
        outputs = list(workers.map(iter(tiles)))
        assert 1 <= len(workers._peaks) <= 2 and workers.peak_memory_mb() > 0  # a loaded host may start one late
        single = workers(tiles[3])
    for tile, out in zip(tiles, outputs, strict=True):
        torch.testing.assert_close(out, run(tile), rtol=0, atol=0)
    torch.testing.assert_close(single, run(tiles[3]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        TileWorkers(functools.partial(bicubic_upscaler, 2), 0)


def test_ctrl_c_stops_the_command_and_its_workers(tmp_path):
    """Ctrl-C goes to the whole process group: the parent must get out (no lock left held by an interrupted
    worker) and no worker may stay behind."""
    script = tmp_path / "slow_tiles.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from targets.tile_workers import TileWorkers

        def slow():
            def run(x):  # large outputs: a worker spends much of its time sending them
                return x.repeat(1, 1, 16, 16)
            return run

        if __name__ == "__main__":
            try:
                with TileWorkers(slow, 2) as workers:
                    for i, _ in enumerate(workers.map(iter(lambda: __import__("torch").ones(1, 3, 64, 64), None))):
                        if i == 10:
                            print("running", flush=True)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(3):  # where the signal lands is a race: without the workers ignoring it, about half hang
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env,
                                 start_new_session=True)
        try:
            assert child.stdout.readline().strip() == "running"
            workers = _descendants_of(child.pid)
            assert len(workers) >= 3  # the fork server (or resource tracker) and two workers
            os.killpg(child.pid, signal.SIGINT)
            assert child.wait(timeout=20) == 0 and child.stdout.read().strip() == "interrupted"
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)


def _descendants_of(pid: int) -> list[int]:
    from targets.tile_workers import _descendants

    return [p for p in _descendants(pid) if p != pid]
