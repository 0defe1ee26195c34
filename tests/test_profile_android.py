"""apps/android/profile_android.py against a fake adb that answers like the real tools do.

No phone is reachable here: these tests pin the adb commands, the parsers and which stream each
line is read from (formats in ../shared/docs/apps.md §7), not on-device numbers. The fake adb below
sends each tool's lines where the real tool writes them (read from their sources):

- ``benchmark_model``: its ``TFLITE_LOG(INFO)`` lines (timings, memory, op tables) to stdout, the
  TFLite runtime's own ``INFO: Created TensorFlow Lite XNNPACK delegate`` line to stderr
  (tflite/tools/logging.h, tflite/minimal_logging_android.cc); the memory lines only with
  ``--report_peak_memory_footprint``, the op tables only with ``--enable_op_profiling``.
- ``executor_runner``: every ``ET_LOG`` line, including ``Model executed successfully``, to stderr
  (``FAKE_ET_PAL=posix``, runtime/platform/default/posix.cpp) or only to logcat with tag
  ``ExecuTorch`` (``FAKE_ET_PAL=android``, android.cpp); the printed outputs to stdout. ExecuTorch
  1.3+ logs ``Iteration i of N: X ms`` (``FAKE_ET_ITERATIONS=0`` plays an older runner).
  ``--etdump_path`` is an unknown flag unless ``FAKE_ET_TRACER=1`` (gflags rejects it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "android"
spec = importlib.util.spec_from_file_location("profile_android", ROOT / "apps" / "android" / "profile_android.py")
profile_android = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_android)

FAKE_ADB = r'''#!PYTHON
"""Fake adb: logs each call as a JSON line to $FAKE_ADB_LOG, answers like the real tools (see the test module)."""
import json
import os
import re
import sys
from pathlib import Path

args = sys.argv[1:]
log = Path(os.environ["FAKE_ADB_LOG"])
logcat = log.with_suffix(".logcat")
remote = log.with_suffix(".remote")
remote.mkdir(exist_ok=True)
with log.open("a") as f:
    f.write(json.dumps(args) + "\n")
if args[:2] == ["-s", os.environ.get("FAKE_ADB_SERIAL", "")]:
    args = args[2:]
elif args and args[0] == "-s":
    sys.exit("error: device '%s' not found" % args[1])


def flag(command, name, default=None):
    match = re.search(r"--%s=(\S+)" % name, command)
    return match.group(1) if match else default


def benchmark_model(command):
    text = (Path(os.environ["FAKE_FIXTURES"]) / "benchmark_model.txt").read_text()
    timing, profiling = text.split("Profiling Info for Benchmark Initialization:")
    for line in timing.splitlines(keepends=True):
        if line.startswith("INFO: Created TensorFlow Lite"):
            sys.stderr.write(line)  # the runtime's MinimalLogger
        elif "memory footprint" in line.lower():
            if flag(command, "report_peak_memory_footprint") == "true":
                sys.stdout.write(line)
        else:
            sys.stdout.write(line)
    if flag(command, "enable_op_profiling") == "true":
        sys.stdout.write("Profiling Info for Benchmark Initialization:" + profiling)


def executor_runner(command):
    if flag(command, "etdump_path") and os.environ.get("FAKE_ET_TRACER") != "1":
        sys.stderr.write("ERROR: unknown command line flag 'etdump_path'\n")
        sys.exit(1)
    n = int(flag(command, "num_executions", "1"))
    times = [200.0 if i <= 5 else 50.0 + i % 3 for i in range(1, n + 1)]  # five slow warm-up runs
    lines = ["Model file %s is loaded." % flag(command, "model_path"), "Method loaded."]
    if os.environ.get("FAKE_ET_ITERATIONS", "1") == "1":
        lines += ["Iteration %d of %d: %f ms" % (i + 1, n, t) for i, t in enumerate(times)]
    lines.append("Model executed successfully %d time(s) in %f ms." % (n, sum(times)))
    if flag(command, "etdump_path"):
        (remote / Path(flag(command, "etdump_path")).name).write_bytes(b"etdump")
        lines.append("ETDump written to file '%s'." % flag(command, "etdump_path"))
    if os.environ["FAKE_ET_PAL"] == "android":
        with logcat.open("a") as f:
            f.writelines("ExecuTorch\t%s\n" % line for line in lines)
    else:
        sys.stderr.writelines("I 00:00:01.000000 executorch:executor_runner.cpp:1] %s\n" % line for line in lines)
    sys.stdout.write("Output 0: tensor(sizes=[1, 3, 256, 256], [0.452, 0.447, 0.441, ...])\n")


if args[0] == "shell":
    command = " ".join(args[1:])
    props = {"ro.product.model": "Pixel 8", "ro.soc.model": "Tensor G3", "ro.build.version.sdk": "34",
             "ro.product.cpu.abi": "arm64-v8a"}
    if command.startswith("getprop "):
        print(props.get(command.split()[1], ""))
    elif "benchmark_model --" in command:
        benchmark_model(command)
    elif "executor_runner --" in command:
        executor_runner(command)
elif args[0] == "logcat":
    if "-c" in args:
        logcat.write_text("")
    elif "-d" in args:
        tags = [a.split(":")[0] for a in args[args.index("-s") + 1:]] if "-s" in args else None
        for line in (logcat.read_text().splitlines() if logcat.exists() else []):
            tag, message = line.split("\t", 1)
            if tags is None or tag in tags:
                print(message if "raw" in args else "I %s: %s" % (tag, message))
elif args[0] == "pull":
    source = remote / Path(args[1]).name
    if not source.exists():
        sys.exit("adb: error: remote object '%s' does not exist" % args[1])
    Path(args[2]).write_bytes(source.read_bytes())
'''


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.replace("PYTHON", sys.executable, 1))
    adb.chmod(0o755)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_SERIAL", "R5CT")
    monkeypatch.setenv("FAKE_FIXTURES", str(FIXTURES))
    monkeypatch.setenv("FAKE_ET_PAL", "posix")
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


def _runner(tmp_path: Path, name: str) -> Path:
    runner = tmp_path / name
    runner.write_bytes(b"\x7fELF")
    return runner


STEADY = [50.0 + i % 3 for i in range(6, 56)]  # the fake's iterations 6..55, after its five 200 ms warm-up runs


def test_fake_adb_writes_the_executor_runner_result_where_the_real_runner_does(fake_adb, monkeypatch):
    """The fidelity the other tests rely on: the result line is never on stdout."""
    command = ["adb", "-s", "R5CT", "shell", "/data/local/tmp/executor_runner --model_path=m.pte --num_executions=2"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "Model executed successfully 2 time(s)" in done.stderr and "executed" not in done.stdout
    assert done.stdout.startswith("Output 0:")
    monkeypatch.setenv("FAKE_ET_PAL", "android")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "executed" not in done.stdout + done.stderr
    logged = subprocess.run(["adb", "-s", "R5CT", "logcat", "-d", "-v", "raw", "-s", "ExecuTorch:I"],
                            capture_output=True, text=True, check=True).stdout
    assert "Model executed successfully 2 time(s)" in logged


def test_benchmark_model_output_is_parsed():
    r = profile_android.parse_benchmark_model((FIXTURES / "benchmark_model.txt").read_text())
    assert r["runs"] == 50 and r["median_ms"] == pytest.approx(47.310) and r["p95_ms"] == pytest.approx(50.877)
    assert r["mean_ms"] == pytest.approx(47.5324) and r["init_ms"] == pytest.approx(41.503)
    assert r["peak_memory_mb"] == pytest.approx(44.2891)
    assert r["ops"][0] == {"op": "Fully Connected (NC, QD8, F32, QC4W) GEMM", "instances": 96, "avg_ms": 17.402}
    assert len(r["ops"]) == 4  # the regular-run table, not the initialization one


def test_executor_runner_output_drops_warmup_and_minibench_is_parsed():
    old = profile_android.parse_executor_runner((FIXTURES / "executor_runner.txt").read_text(), warmup=5)
    assert old == {"executions": 55, "total_ms": pytest.approx(2863.569), "per_run": False}
    text = "\n".join([f"Iteration {i} of 4: {t} ms" for i, t in enumerate([90.0, 10.0, 12.0, 11.0], 1)]
                     + ["Model executed successfully 4 time(s) in 123.0 ms."])
    r = profile_android.parse_executor_runner(text, warmup=1)
    assert r["runs"] == 3 and r["warmup"] == 1 and r["per_run"] is True
    assert r["median_ms"] == 11.0 and r["max_ms"] == 12.0 and r["mean_ms"] == pytest.approx(11.0)
    with pytest.raises(ValueError, match="leave none"):
        profile_android.parse_executor_runner(text, warmup=4)
    m = profile_android.parse_minibench(json.dumps([{"model_load_time(ms)": 40.5, "avg_inference_latency(ms)": 51.2,
                                                     "trimmean_inference_latency(ms)": 50.1, "ram_pss_usage(mb)": 88,
                                                     "load_status": 0}]))
    assert m == {"load_ms": 40.5, "mean_ms": 51.2, "trimmed_mean_ms": 50.1, "peak_memory_mb": 88, "load_status": 0}
    with pytest.raises(ValueError, match="Model executed successfully"):
        profile_android.parse_executor_runner("Segmentation fault")


def test_tflite_profile_times_in_a_clean_run_and_profiles_separately(fake_adb, tmp_path):
    build, runner = _build(tmp_path, "tflite"), _runner(tmp_path, "benchmark_model")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "R5CT", "--threads", "4",
                                 "--runs", "50", "--warmup", "5"]) == 0
    report = json.loads((build / "android_profile.json").read_text())
    assert report["device"] == {"kind": "android", "model": "Pixel 8", "soc": "Tensor G3", "sdk": "34",
                                "abi": "arm64-v8a"}
    entry = report["profiles"][0]["latency"]["threads_4"]
    artifact = entry["artifact"]
    assert artifact["median_ms"] == pytest.approx(47.31) and entry["speedup_vs_fp32"] == pytest.approx(1.0)
    assert artifact["peak_memory_mb"] == pytest.approx(44.2891) and len(artifact["ops"]) == 4
    calls = _calls(fake_adb)
    assert all(c[:2] == ["-s", "R5CT"] for c in calls)
    assert ["-s", "R5CT", "push", str(build / "model.tflite"), "/data/local/tmp/sr2bit/model.tflite"] in calls
    runs = [c[3] for c in calls if c[2] == "shell" and "benchmark_model --" in c[3]]
    assert len(runs) == 6  # timed, memory, ops; for the int4 artifact and its FP32 baseline
    base = "/data/local/tmp/sr2bit/benchmark_model --graph=/data/local/tmp/sr2bit/model.tflite --num_threads=4 "
    assert runs[:3] == [base + "--num_runs=50 --warmup_runs=5 --use_xnnpack=true",
                        base + "--num_runs=10 --warmup_runs=1 --use_xnnpack=true --report_peak_memory_footprint=true",
                        base + "--num_runs=10 --warmup_runs=1 --use_xnnpack=true --enable_op_profiling=true"]


@pytest.mark.parametrize("pal", ["posix", "android"])
def test_executorch_profile_reads_the_result_from_stderr_or_logcat_without_warmup(fake_adb, tmp_path, monkeypatch,
                                                                                 pal):
    monkeypatch.setenv("FAKE_ET_PAL", pal)
    build, runner = _build(tmp_path, "executorch"), _runner(tmp_path, "executor_runner")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "R5CT", "--threads", "1", "4",
                                 "--runs", "50", "--warmup", "5", "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    latency = report["profiles"][0]["latency"]
    assert set(latency) == {"threads_1", "threads_4"}
    artifact = latency["threads_4"]["artifact"]
    assert artifact["runs"] == 50 and artifact["max_ms"] == 52.0  # the 200 ms warm-up runs are left out
    assert artifact["median_ms"] == pytest.approx(sorted(STEADY)[24] / 2 + sorted(STEADY)[25] / 2)
    assert artifact["mean_ms"] == pytest.approx(sum(STEADY) / 50)
    assert artifact["ops"] == profile_android.NO_OPS_ET and artifact["peak_memory_mb"] is None
    calls = _calls(fake_adb)
    shell = [c[3] for c in calls if c[2] == "shell" and "executor_runner --" in c[3]]
    assert shell[0] == ("/data/local/tmp/sr2bit/executor_runner --model_path=/data/local/tmp/sr2bit/model.pte "
                        "--num_executions=55 --cpu_threads=1")
    assert len(shell) == 4 and not any("etdump" in s for s in shell)  # no ETDump unless asked for
    assert not any(c[2] == "pull" for c in calls)


def test_executorch_profile_with_an_old_runner_subtracts_a_warmup_only_run(fake_adb, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ET_ITERATIONS", "0")
    build, runner = _build(tmp_path, "executorch"), _runner(tmp_path, "executor_runner")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "R5CT", "--threads", "4",
                                 "--runs", "50", "--warmup", "5"]) == 0
    artifact = json.loads((build / "android_profile.json").read_text())["profiles"][0]["latency"]["threads_4"][
        "artifact"]
    assert artifact["mean_ms"] == pytest.approx(sum(STEADY) / 50) and artifact["median_ms"] is None
    shell = [c[3] for c in _calls(fake_adb) if c[2] == "shell" and "executor_runner --" in c[3]]
    assert [s.split()[2] for s in shell[:2]] == ["--num_executions=55", "--num_executions=5"]


def test_etdump_is_a_separate_opt_in_run(fake_adb, tmp_path, monkeypatch, capsys):
    build, runner = _build(tmp_path, "executorch"), _runner(tmp_path, "executor_runner")
    args = [str(build), "--runner", str(runner), "--serial", "R5CT", "--threads", "4", "--etdump"]
    assert profile_android.main(args) == 2  # a runner without the event tracer rejects --etdump_path
    assert "unknown command line flag 'etdump_path'" in capsys.readouterr().err
    monkeypatch.setenv("FAKE_ET_TRACER", "1")
    seen = []

    def fake_etdump_latency(path):
        seen.append(Path(path).read_bytes())
        return {"runs": 10, "median_ms": 60.0, "ops": [{"op": "DELEGATE_CALL", "median_ms": 40.0}]}

    monkeypatch.setattr(profile_android, "etdump_latency", fake_etdump_latency)
    assert profile_android.main(args) == 0
    artifact = json.loads((build / "android_profile.json").read_text())["profiles"][0]["latency"]["threads_4"][
        "artifact"]
    assert artifact["ops"] == [{"op": "DELEGATE_CALL", "median_ms": 40.0}] and seen == [b"etdump", b"etdump"]
    assert artifact["median_ms"] != 60.0  # the traced run never replaces the clean one
    calls = _calls(fake_adb)
    traced = [c[3] for c in calls if c[2] == "shell" and "--etdump_path=" in c[3]]
    assert traced[-2] == ("/data/local/tmp/sr2bit/executor_runner --model_path=/data/local/tmp/sr2bit/model.pte "
                          "--num_executions=10 --cpu_threads=4 --etdump_path=/data/local/tmp/sr2bit/model.pte.etdump")
    assert ["-s", "R5CT", "pull", "/data/local/tmp/sr2bit/model.pte.etdump", str(build / "model.pte.etdump")] in calls


def test_clear_errors(fake_adb, tmp_path, capsys):
    build = _build(tmp_path, "tflite")
    assert profile_android.main([str(build), "--runner", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    runner = tmp_path / "benchmark_model"
    runner.write_bytes(b"")
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "OTHER"]) == 2
    assert "device 'OTHER' not found" in capsys.readouterr().err
    assert profile_android.main([str(build), "--runner", str(runner), "--serial", "R5CT", "--runs", "0"]) == 2
    assert "--runs >= 1" in capsys.readouterr().err
    coreml = _build(tmp_path, "executorch")
    manifest = json.loads((coreml / "manifest.json").read_text())
    (coreml / "manifest.json").write_text(json.dumps({**manifest, "target": "coreml"}))
    assert profile_android.main([str(coreml), "--runner", str(runner), "--serial", "R5CT"]) == 2
    assert "Android runs tflite and executorch builds" in capsys.readouterr().err
