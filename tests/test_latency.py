"""Latency statistics and the timing loop (the numbers every build, profile and app report)."""

from __future__ import annotations

import pytest
import torch

from targets.latency import summarize_times, time_runners


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
