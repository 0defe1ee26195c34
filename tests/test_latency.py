"""Latency statistics, the timing loop and whose peak memory is reported (numbers every build, profile and app report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from targets import latency
from targets.latency import summarize_times, time_runners

ROOT = Path(__file__).resolve().parents[1]


def test_summary_by_hand():
    s = summarize_times([0.001 * t for t in (10, 1, 9, 2, 8, 3, 7, 4, 6, 5)])
    assert s["median_ms"] == pytest.approx(5.5) and s["min_ms"] == pytest.approx(1.0)
    assert s["p90_ms"] == pytest.approx(9.0)  # nearest rank: the 9th of 10 sorted values
    assert s["mean_ms"] == pytest.approx(5.5) and s["runs"] == 10
    odd = summarize_times([0.003, 0.001, 0.002])
    assert odd["median_ms"] == pytest.approx(2.0) and odd["p90_ms"] == pytest.approx(3.0)


def test_runners_are_timed_interleaved_after_warm_up():
    calls = []
    example = torch.zeros(1, 3, 8, 8)
    stats = time_runners({"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}, example, runs=4, warmup=2)
    assert calls == ["a", "b"] * 2 + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then alternating order
    assert stats["a"]["runs"] == stats["b"]["runs"] == 4 and stats["a"]["warmup_runs"] == 2
    assert 0 <= stats["a"]["min_ms"] <= stats["a"]["median_ms"] <= stats["a"]["p90_ms"]
    assert stats["paired_ratio_median"] > 0
    with pytest.raises(ValueError, match="runs must be >= 1"):
        time_runners({"a": lambda x: x}, example, runs=0, warmup=0)


def test_each_side_reports_its_own_peak_memory(monkeypatch):
    """The artifact's peak comes from the timing process (read before the baseline loads), the baseline's from its own."""
    calls = []

    def fake_measure(target, artifact, tile, threads, runs=10, warmup=3, op_profile=False, baseline=None):
        calls.append((artifact, baseline))
        stats = {"artifact": {"median_ms": 2.0, "peak_rss_mb": {"int4.pte": 100.0, "fp32.pte": 300.0}[artifact]}}
        if baseline:
            stats.update(fp32_baseline={"median_ms": 4.0}, paired_speedup_median=2.0)
        return stats

    monkeypatch.setattr(latency, "measure", fake_measure)
    table = latency.versus_baseline("executorch", "int4.pte", "fp32.pte", 16, (1, 2), runs=3)
    assert calls == [("int4.pte", "fp32.pte"), ("fp32.pte", None)] * 2
    entry = table["threads_2"]
    assert (entry["artifact"]["peak_rss_mb"], entry["fp32_baseline"]["peak_rss_mb"]) == (100.0, 300.0)
    assert entry["peak_rss_what"] == latency.PEAK_RSS_WHAT and entry["speedup_vs_fp32"] == 2.0


def test_artifact_peak_memory_is_read_before_the_baseline_loads(tmp_path):
    """In a fresh process, a fake backend whose 'baseline' holds 400 MB must not raise the artifact's peak."""
    script = tmp_path / "fake_backend.py"
    script.write_text(textwrap.dedent("""
        import json
        import numpy as np
        import targets
        from targets import latency

        class Fake:  # an "artifact" named N holds N MB once loaded
            def runner(self, path, threads=None, tile=None):
                held = np.ones(int(str(path)) << 20, np.uint8)
                return lambda x, held=held: x

        targets.get_target = lambda name: Fake()
        latency.main(["--target", "fake", "--artifact", "50", "--baseline", "400", "--tile", "8", "--threads", "1",
                      "--runs", "1", "--warmup", "0"])
        print(json.dumps({"process_peak_mb": latency.peak_rss_mb()}))
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
    stats, process = (json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))
    assert stats["artifact"]["peak_rss_mb"] + 300 < process["process_peak_mb"]


def test_profile_writes_under_build_by_default():
    """reports/ holds reports written on purpose: a plain `pipeline profile` must not overwrite them."""
    from pipeline.cli import build_parser

    assert build_parser().parse_args(["profile", "some_build"]).out == Path("build/profile")


def test_a_fresh_process_peak_is_its_own_not_its_large_parents():
    """Linux carries ru_maxrss across exec: a timing process started by a build holding the model would inherit it."""
    import numpy as np

    held = np.ones(700 << 20, np.uint8)  # the parent is now at least 700 MB resident
    code = "from targets.latency import peak_rss_mb; print(peak_rss_mb())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert float(done.stdout.split()[-1]) < 600 and held[-1] == 1
