"""Profile a build's artifact on an Android phone over adb, in the same JSON schema as ``pipeline profile``.

    python apps/android/profile_android.py build/<folder> --runner ~/bin/benchmark_model     # TFLite build
    python apps/android/profile_android.py build/<folder> --runner ~/bin/executor_runner     # ExecuTorch build

Pushes the artifact, its FP32 baseline and the runner binary to ``--device-dir`` and runs each model
several times, because a profiler perturbs what it measures:

1. a clean timed run (warm-up runs, then ``--runs`` timed runs; no op profiler, no memory monitor);
   warm-up runs never enter the statistics;
2. LiteRT only: a run with the peak-memory monitor, then a run with the op profiler
   (``--profile-runs`` iterations each);
3. ExecuTorch only, with ``--etdump``: a run that writes an ETDump for per-op times.

Where each tool writes (read from their sources; both streams of ``adb shell`` are read, merged in order):

- LiteRT ``benchmark_model`` (download it for arm64 from the TFLite benchmark page): its own
  ``TFLITE_LOG(INFO)`` lines (``count=...``, ``Inference timings in us``, peak memory, the
  ``Summary by node type`` table) go to stdout, errors and the runtime's own log lines
  (``INFO: Created TensorFlow Lite XNNPACK delegate``) to stderr.
- ExecuTorch ``executor_runner``: every ``ET_LOG`` line, including ``Model executed successfully N
  time(s) in X ms`` and (ExecuTorch 1.3 and later) ``Iteration i of N: X ms``, goes to stderr with the
  POSIX platform layer, and only to logcat (tag ``ExecuTorch``) when the runner is built with the
  Android preset (``EXECUTORCH_PAL_DEFAULT=android``); the printed outputs go to stdout. So the log is
  cleared before each run and read with ``logcat -d`` when the shell output lacks the result line.
  The per-iteration lines give median/p90 without the warm-up; an older runner prints only the total,
  and the steady-state mean is then (total of warm-up + timed runs - total of a warm-up-only run) / runs.
  ``--etdump_path`` exists only in runners built with the event tracer
  (``-DEXECUTORCH_BUILD_DEVTOOLS=ON -DEXECUTORCH_ENABLE_EVENT_TRACER=ON``), so it is passed only with
  ``--etdump``; without it the report says per-op times are unavailable.

Nothing here can reach a phone in CI: ``tests/test_profile_android.py`` puts a fake ``adb`` on PATH
that routes each tool's lines to the stream the real tool uses, and checks the commands and the parsers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1  # the same as pipeline.profile.SCHEMA_VERSION

_COUNT_LINE = re.compile(r"count=(\d+).*?min=([\d.]+).*?max=([\d.]+).*?avg=([\d.]+).*?median=([\d.]+)"
                         r"(?:.*?p95=([\d.]+))?")
_TIMINGS = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                      r"Warmup \(avg\): ([\d.]+), Inference \(avg\): ([\d.]+)")
_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.]+)")
_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate")
_ET_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms")
_ET_ITERATION = re.compile(r"Iteration (\d+) of (\d+): ([\d.]+) ms")
ET_LOGCAT_TAG = "ExecuTorch"  # runtime/platform/default/android.cpp: __android_log_print(level, "ExecuTorch", ...)
NO_OPS_ET = "unavailable: run with --etdump and a runner built with the event tracer for per-op times"


def summarize_ms(times: list[float]) -> dict[str, Any]:
    """Median, p90 (nearest rank, as pipeline/latency.py), min, max and mean of per-run times in ms."""
    if not times:
        raise ValueError("no timed runs to summarize")
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, -(-9 * len(ordered) // 10) - 1)]
    return {"runs": len(ordered), "median_ms": statistics.median(ordered), "p90_ms": p90, "min_ms": ordered[0],
            "max_ms": ordered[-1], "mean_ms": statistics.fmean(ordered)}


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Statistics from LiteRT ``benchmark_model`` output (its last ``count=`` line is the timed runs)."""
    counts = _COUNT_LINE.findall(text)
    if not counts:
        raise ValueError("no 'count=... median=...' line in the benchmark_model output")
    count, low, high, avg, median, p95 = counts[-1]
    result: dict[str, Any] = {"runs": int(count), "min_ms": float(low) / 1e3, "max_ms": float(high) / 1e3,
                              "mean_ms": float(avg) / 1e3, "median_ms": float(median) / 1e3,
                              "p95_ms": float(p95) / 1e3 if p95 else None}
    if timing := _TIMINGS.search(text):
        init, first, warm, _ = (float(v) / 1e3 for v in timing.groups())
        result.update(init_ms=init, first_ms=first, warmup_ms=warm)
    if peak := _PEAK.search(text):
        result["peak_memory_mb"] = float(peak.group(1))
    if delegated := _DELEGATED.search(text):
        result["delegated_nodes"] = [int(delegated.group(1)), int(delegated.group(2))]
    ops = _node_type_summary(text)
    if ops:
        result["ops"] = ops
    return result


def _node_type_summary(text: str) -> list[dict[str, Any]]:
    """Rows of the last ``Summary by node type`` table (tab-separated): node type, count, avg ms."""
    blocks = text.split("Summary by node type")
    if len(blocks) < 2:
        return []
    rows = []
    for line in blocks[-1].splitlines()[1:]:
        fields = [f.strip() for f in line.split("\t") if f.strip()]
        if len(fields) < 3 or not fields[1].isdigit():
            if rows:
                break
            continue
        rows.append({"op": fields[0], "instances": int(fields[1]), "avg_ms": float(fields[2])})
    return rows


def parse_executor_runner(text: str, warmup: int = 0) -> dict[str, Any]:
    """Timings from ExecuTorch ``executor_runner`` output, the first ``warmup`` executions left out.

    With ``Iteration i of N: X ms`` lines (ExecuTorch 1.3+): statistics of iterations ``warmup + 1 .. N``.
    Without them (older runners print only ``Model executed successfully N time(s) in X ms``): the
    total and its count only, ``per_run`` False; the caller then subtracts a warm-up-only run.
    """
    match = _ET_TOTAL.search(text)
    if not match:
        raise ValueError("no 'Model executed successfully N time(s) in X ms' line in the executor_runner output "
                         "(stdout, stderr or logcat tag ExecuTorch)")
    executions, total = int(match.group(1)), float(match.group(2))
    iterations = [float(ms) for _, _, ms in _ET_ITERATION.findall(text)]
    if not iterations:
        return {"executions": executions, "total_ms": total, "per_run": False}
    if len(iterations) != executions:
        raise ValueError(f"{len(iterations)} 'Iteration' lines for {executions} executions")
    if warmup >= executions:
        raise ValueError(f"{warmup} warm-up runs leave none of the {executions} executions to time")
    return {**summarize_ms(iterations[warmup:]), "warmup": warmup, "executions": executions, "total_ms": total,
            "per_run": True}


def parse_minibench(payload: str) -> dict[str, Any]:
    """ExecuTorch Minibench ``benchmark_results.json`` (one record or a list; the first is used)."""
    data = json.loads(payload)
    record = data[0] if isinstance(data, list) else data
    return {"load_ms": record.get("model_load_time(ms)"), "mean_ms": record.get("avg_inference_latency(ms)"),
            "trimmed_mean_ms": record.get("trimmean_inference_latency(ms)"),
            "peak_memory_mb": record.get("ram_pss_usage(mb)"), "load_status": record.get("load_status")}


def etdump_latency(path: Path) -> dict[str, Any]:
    """Per-run statistics and per-op medians from a pulled ETDump (needs the ``executorch`` package).

    These come from a run with the event tracer on, so they are reported beside, never instead of, the
    clean timed run.
    """
    from executorch.devtools import Inspector

    frame = Inspector(etdump_path=str(path)).to_dataframe()
    runs = frame[frame["event_name"] == "Method::execute"]["raw"]
    times = [float(t) for t in (runs.iloc[0] if len(runs) else [])]
    if not times:
        raise ValueError(f"{path} has no Method::execute events")
    ops = [{"op": str(name), "median_ms": statistics.median(float(t) for t in raw)}
           for name, raw in zip(frame["event_name"], frame["raw"]) if name != "Method::execute" and len(raw)]
    return {**summarize_ms(times), "ops": ops}


class Adb:
    """``adb`` with an optional serial; every call is logged (the tests read ``commands``)."""

    def __init__(self, serial: str | None = None, executable: str = "adb"):
        self.base = [executable] + (["-s", serial] if serial else [])
        self.commands: list[list[str]] = []

    def __call__(self, *args: str, check: bool = True) -> str:
        command = self.base + list(args)
        self.commands.append(command)
        done = subprocess.run(command, capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return done.stdout

    def shell(self, command: list[str]) -> str:
        return self("shell", shlex.join(command))

    def run_tool(self, command: list[str]) -> str:
        """Runs a benchmark binary on the phone; its stdout and stderr, merged in the order adb wrote them.

        Both matter: ``adb shell`` (shell protocol v2, Android 7+) keeps the remote stderr on adb's
        stderr, and executor_runner logs there (benchmark_model's runtime messages too).
        """
        full = self.base + ["shell", shlex.join(command)]
        self.commands.append(full)
        done = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode:
            raise RuntimeError(f"{shlex.join(full)} failed ({done.returncode}): {done.stdout.strip()[-1500:]}")
        return done.stdout


def device_info(adb: Adb) -> dict[str, Any]:
    props = {key: adb.shell(["getprop", prop]).strip() for key, prop in
             (("model", "ro.product.model"), ("soc", "ro.soc.model"), ("sdk", "ro.build.version.sdk"),
              ("abi", "ro.product.cpu.abi"))}
    return {"kind": "android", **props}


def _benchmark_model(adb: Adb, runner: str, model: str, threads: int, runs: int, warmup: int,
                     *flags: str) -> dict[str, Any]:
    return parse_benchmark_model(adb.run_tool([runner, f"--graph={model}", f"--num_threads={threads}",
                                               f"--num_runs={runs}", f"--warmup_runs={warmup}", "--use_xnnpack=true",
                                               *flags]))


def _executor_runner(adb: Adb, runner: str, model: str, threads: int, executions: int, *flags: str) -> str:
    """One executor_runner run; its log from the shell streams, else from logcat (Android-preset builds)."""
    adb("logcat", "-c", check=False)
    output = adb.run_tool([runner, f"--model_path={model}", f"--num_executions={executions}",
                           f"--cpu_threads={threads}", *flags])
    if not _ET_TOTAL.search(output):
        output += adb("logcat", "-d", "-v", "raw", "-s", f"{ET_LOGCAT_TAG}:I", check=False)
    return output


def run_artifact(adb: Adb, runtime: str, runner: str, model: str, device_dir: str, threads: int, runs: int,
                 warmup: int, pull_to: Path, profile_runs: int = 10, etdump: bool = False) -> dict[str, Any]:
    """Times one pushed model in a clean run, then profiles it in separate runs; parsed statistics.

    The timed statistics never include warm-up runs, and never come from a run with the op profiler,
    the memory monitor or the ETDump writer on.
    """
    name = Path(model).name
    if runtime == "tflite":
        result = _benchmark_model(adb, runner, model, threads, runs, warmup)
        memory = _benchmark_model(adb, runner, model, threads, profile_runs, 1, "--report_peak_memory_footprint=true")
        ops = _benchmark_model(adb, runner, model, threads, profile_runs, 1, "--enable_op_profiling=true")
        result.pop("ops", None)
        result["peak_memory_mb"] = memory.get("peak_memory_mb")
        result["ops"] = ops.get("ops") or "unavailable: benchmark_model printed no 'Summary by node type' table"
        return result
    result = parse_executor_runner(_executor_runner(adb, runner, model, threads, runs + warmup), warmup)
    if not result["per_run"]:  # a runner older than ExecuTorch 1.3: subtract a warm-up-only run's total
        warm_total = parse_executor_runner(_executor_runner(adb, runner, model, threads, warmup))["total_ms"] \
            if warmup else 0.0
        result.update(runs=runs, warmup=warmup, mean_ms=(result["total_ms"] - warm_total) / runs,
                      median_ms=None, p90_ms=None)
    result["peak_memory_mb"] = None  # executor_runner has no memory monitor
    result["ops"] = NO_OPS_ET
    if etdump:
        remote = f"{device_dir}/{name}.etdump"
        _executor_runner(adb, runner, model, threads, profile_runs, f"--etdump_path={remote}")
        local = pull_to / f"{name}.etdump"
        adb("pull", remote, str(local))
        try:
            result["etdump"] = etdump_latency(local)
            result["ops"] = result["etdump"].pop("ops", None) or result["ops"]
        except (ImportError, ValueError, KeyError) as err:  # no executorch here, or an unreadable dump
            result["etdump_error"] = str(err)
    return result


def profile(build_dir: Path, runner: Path, adb: Adb, threads: list[int], runs: int, warmup: int,
            device_dir: str, profile_runs: int = 10, etdump: bool = False) -> dict[str, Any]:
    manifest = json.loads((build_dir / "manifest.json").read_text())
    runtime = manifest["target"]
    if runtime not in ("tflite", "executorch"):
        raise ValueError(f"{build_dir} is a {runtime} build; Android runs tflite and executorch builds")
    info = device_info(adb)
    adb.shell(["mkdir", "-p", device_dir])
    remote_runner = f"{device_dir}/{runner.name}"
    adb("push", str(runner), remote_runner)
    adb.shell(["chmod", "+x", remote_runner])
    models = {"artifact": manifest["artifact"], "fp32_baseline": manifest["baseline"]["artifact"]}
    for file in models.values():
        adb("push", str(build_dir / file), f"{device_dir}/{file}")
    latency = {}
    for count in threads:
        entry = {key: {**run_artifact(adb, runtime, remote_runner, f"{device_dir}/{file}", device_dir, count, runs,
                                      warmup, build_dir, profile_runs, etdump), "threads": count}
                 for key, file in models.items()}
        entry["speedup_vs_fp32"] = entry["fp32_baseline"]["mean_ms"] / entry["artifact"]["mean_ms"]
        latency[f"threads_{count}"] = entry
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": info,
        "settings": {"threads": threads, "runs": runs, "warmup": warmup, "profile_runs": profile_runs,
                     "etdump": etdump, "data": []},
        "profiles": [{
            "build": str(build_dir),
            "runtime": {"target": runtime, "runner": runner.name, "tools": manifest["tool_versions"]},
            "model": {"artifact": manifest["artifact"], "artifact_bytes": manifest["artifact_bytes"],
                      "baseline_bytes": manifest["baseline"]["artifact_bytes"], "weights": manifest["weights"],
                      "weight_bits": manifest["weight_bits"], "input": manifest["input"]},
            "latency": latency,
            "accuracy": [],
        }],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, help="a `pipeline build --target tflite|executorch` folder")
    parser.add_argument("--runner", type=Path, required=True,
                        help="arm64 benchmark_model (TFLite) or executor_runner (ExecuTorch) binary on this computer")
    parser.add_argument("--serial", default=None, help="adb device serial (default: the only device)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4], help="thread counts (default 1 4)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs, left out of the statistics (default 5)")
    parser.add_argument("--profile-runs", type=int, default=10,
                        help="runs of each separate profiling pass: memory monitor, op profiler, ETDump (default 10)")
    parser.add_argument("--etdump", action=argparse.BooleanOptionalAction, default=False,
                        help="ExecuTorch: also write and pull an ETDump for per-op times (the runner must be built "
                             "with the event tracer; default off)")
    parser.add_argument("--device-dir", default="/data/local/tmp/sr2bit", help="working folder on the phone")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default <build>/android_profile.json)")
    args = parser.parse_args(argv)
    for path in (args.build / "manifest.json", args.runner):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    try:
        if args.runs < 1 or args.warmup < 0 or args.profile_runs < 1:
            raise ValueError(f"need --runs >= 1, --warmup >= 0, --profile-runs >= 1; got {args.runs}, {args.warmup}, "
                             f"{args.profile_runs}")
        report = profile(args.build, args.runner, Adb(args.serial), args.threads, args.runs, args.warmup,
                         args.device_dir, args.profile_runs, args.etdump)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.build / "android_profile.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    for key, entry in report["profiles"][0]["latency"].items():
        print(f"{key}: {entry['artifact']['mean_ms']:.1f} ms vs fp32 {entry['fp32_baseline']['mean_ms']:.1f} ms "
              f"({entry['speedup_vs_fp32']:.2f}x)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
