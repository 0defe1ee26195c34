"""apps/android/profile_android.py against a fake adb that replays recorded benchmark_model / executor_runner output.

No phone is reachable here: these tests pin the adb commands and the parsers (formats in
../shared/docs/apps.md §7), not on-device numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "android"
spec = importlib.util.spec_from_file_location("profile_android", ROOT / "apps" / "android" / "profile_android.py")
profile_android = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_android)


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{FIXTURES / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_SERIAL", "R5CT")
    return log


def _build(tmp_path: Path, target: str) -> Path:
    folder = tmp_path / f"build-{target}"
    folder.mkdir()
    ext = {"tflite": ".tflite", "executorch": ".pte"}[target]
    (folder / f"model{ext}").write_bytes(b"int4")
    (folder / f"baseline_fp32{ext}").write_bytes(b"fp32 baseline")
    (folder / "manifest.json").write_text(json.dumps({
        "target": target, "artifact": f"model{ext}", "artifact_bytes": 4, "weight_bits": 4,
        "baseline": {"artifact": f"baseline_fp32{ext}", "artifact_bytes": 13}, "tool_versions": {"x": "1"},
        "weights": {"name": "w", "sha256": "0"}, "input": {"shape": [1, 3, 64, 64]}}))
    return folder


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_benchmark_model_output_is_parsed():
    r = profile_android.parse_benchmark_model((FIXTURES / "benchmark_model.txt").read_text())
    assert r["runs"] == 50 and r["median_ms"] == pytest.approx(47.310) and r["p95_ms"] == pytest.approx(50.877)
    assert r["mean_ms"] == pytest.approx(47.5324) and r["init_ms"] == pytest.approx(41.503)
    assert r["peak_memory_mb"] == pytest.approx(44.2891)
    assert r["ops"][0] == {"op": "Fully Connected (NC, QD8, F32, QC4W) GEMM", "instances": 96, "avg_ms": 17.402}
    assert len(r["ops"]) == 4  # the regular-run table, not the initialization one


def test_executor_runner_and_minibench_are_parsed():
    r = profile_android.parse_executor_runner((FIXTURES / "executor_runner.txt").read_text())
    assert r == {"runs": 55, "mean_ms": pytest.approx(2863.569 / 55), "total_ms": pytest.approx(2863.569)}
    m = profile_android.parse_minibench(json.dumps([{"model_load_time(ms)": 40.5, "avg_inference_latency(ms)": 51.2,
                                                     "trimmean_inference_latency(ms)": 50.1, "ram_pss_usage(mb)": 88,
                                                     "load_status": 0}]))
    assert m == {"load_ms": 40.5, "mean_ms": 51.2, "trimmed_mean_ms": 50.1, "peak_memory_mb": 88, "load_status": 0}
    with pytest.raises(ValueError, match="Model executed successfully"):
        profile_android.parse_executor_runner("Segmentation fault")


def test_tflite_profile_pushes_runs_and_reports_ratio(fake_adb, tmp_path):
    build, runner = _build(tmp_path, "tflite"), tmp_path / "benchmark_model"
    runner.write_bytes(b"\x7fELF")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "R5CT", "--threads", "4",
                                 "--runs", "50", "--warmup", "5"]) == 0
    report = json.loads((build / "android_profile.json").read_text())
    assert report["device"] == {"kind": "android", "model": "Pixel 8", "soc": "Tensor G3", "sdk": "34",
                                "abi": "arm64-v8a"}
    entry = report["profiles"][0]["latency"]["threads_4"]
    assert entry["artifact"]["median_ms"] == pytest.approx(47.31) and entry["speedup_vs_fp32"] == pytest.approx(1.0)
    calls = _calls(fake_adb)
    assert all(c[:2] == ["-s", "R5CT"] for c in calls)
    assert ["-s", "R5CT", "push", str(build / "model.tflite"), "/data/local/tmp/sr2bit/model.tflite"] in calls
    runs = [c for c in calls if c[2] == "shell" and "benchmark_model" in c[3] and "chmod" not in c[3]]
    assert len(runs) == 2  # the int4 artifact and its FP32 baseline
    assert runs[0][3] == ("/data/local/tmp/sr2bit/benchmark_model --graph=/data/local/tmp/sr2bit/model.tflite "
                          "--num_threads=4 --num_runs=50 --warmup_runs=5 --use_xnnpack=true "
                          "--report_peak_memory_footprint=true --enable_op_profiling=true")


def test_executorch_profile_runs_executor_runner_and_tries_the_etdump(fake_adb, tmp_path):
    build, runner = _build(tmp_path, "executorch"), tmp_path / "executor_runner"
    runner.write_bytes(b"\x7fELF")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "R5CT", "--threads", "1", "4",
                                 "--runs", "50", "--warmup", "5", "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["profiles"][0]["latency"]) == {"threads_1", "threads_4"}
    calls = _calls(fake_adb)
    shell = [c[3] for c in calls if c[2] == "shell" and "executor_runner --" in c[3]]
    assert shell[0] == ("/data/local/tmp/sr2bit/executor_runner --model_path=/data/local/tmp/sr2bit/model.pte "
                        "--num_executions=55 --cpu_threads=1 --etdump_path=/data/local/tmp/sr2bit/model.pte.etdump")
    assert ["-s", "R5CT", "pull", "/data/local/tmp/sr2bit/model.pte.etdump", str(build / "model.pte.etdump")] in calls


def test_clear_errors(fake_adb, tmp_path, capsys):
    build = _build(tmp_path, "tflite")
    assert profile_android.main([str(build), "--runner", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    runner = tmp_path / "benchmark_model"
    runner.write_bytes(b"")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "OTHER"]) == 2
    assert "device 'OTHER' not found" in capsys.readouterr().err
    coreml = _build(tmp_path, "executorch")
    manifest = json.loads((coreml / "manifest.json").read_text())
    (coreml / "manifest.json").write_text(json.dumps({**manifest, "target": "coreml"}))
    assert profile_android.main([str(coreml), "--runner", str(runner), "--serial", "R5CT"]) == 2
    assert "Android runs tflite and executorch builds" in capsys.readouterr().err
