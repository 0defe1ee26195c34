"""Profile a build's artifact on an Android phone over adb, in the same JSON schema as ``pipeline profile``.

    python apps/android/profile_android.py build/<folder> --runner ~/bin/benchmark_model     # TFLite build
    python apps/android/profile_android.py build/<folder> --runner ~/bin/executor_runner     # ExecuTorch build

Pushes the artifact, its FP32 baseline and the runner binary to ``--device-dir``, runs each with
warm-up and repeat counts, pulls what the runner wrote and parses it:

- LiteRT ``benchmark_model`` (download it for arm64 from the TFLite benchmark page): the
  ``count=... median=... p95=...`` line (microseconds), ``Inference timings in us`` (init, first,
  warm-up), the peak-memory line, and the ``Summary by node type`` table (``--enable_op_profiling``).
- ExecuTorch ``executor_runner`` (build it with the NDK, ``-DEXECUTORCH_BUILD_DEVTOOLS=ON`` and the
  event tracer for an ETDump): ``Model executed successfully N time(s) in X ms`` gives the mean;
  per-run median/p90 and per-op times come from the pulled ETDump through ExecuTorch's Inspector.

Nothing here can reach a phone in CI: ``tests/test_profile_android.py`` puts a fake ``adb`` on PATH
that replays recorded tool outputs, and checks the commands and the parsers.
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


def parse_executor_runner(text: str) -> dict[str, Any]:
    """Mean latency from ExecuTorch ``executor_runner`` (it prints only a total)."""
    match = _ET_TOTAL.search(text)
    if not match:
        raise ValueError("no 'Model executed successfully N time(s) in X ms' line in the executor_runner output")
    runs, total = int(match.group(1)), float(match.group(2))
    return {"runs": runs, "mean_ms": total / runs, "total_ms": total}


def parse_minibench(payload: str) -> dict[str, Any]:
    """ExecuTorch Minibench ``benchmark_results.json`` (one record or a list; the first is used)."""
    data = json.loads(payload)
    record = data[0] if isinstance(data, list) else data
    return {"load_ms": record.get("model_load_time(ms)"), "mean_ms": record.get("avg_inference_latency(ms)"),
            "trimmed_mean_ms": record.get("trimmean_inference_latency(ms)"),
            "peak_memory_mb": record.get("ram_pss_usage(mb)"), "load_status": record.get("load_status")}


def etdump_latency(path: Path) -> dict[str, Any]:
    """Per-run median/p90 and per-op medians from a pulled ETDump (needs the ``executorch`` package)."""
    from executorch.devtools import Inspector

    frame = Inspector(etdump_path=str(path)).to_dataframe()
    runs = frame[frame["event_name"] == "Method::execute"]["raw"]
    times = sorted(float(t) for t in (runs.iloc[0] if len(runs) else []))
    if not times:
        return {}
    p90 = times[min(len(times) - 1, -(-9 * len(times) // 10) - 1)]
    return {"runs": len(times), "median_ms": statistics.median(times), "p90_ms": p90, "min_ms": times[0]}


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


def device_info(adb: Adb) -> dict[str, Any]:
    props = {key: adb.shell(["getprop", prop]).strip() for key, prop in
             (("model", "ro.product.model"), ("soc", "ro.soc.model"), ("sdk", "ro.build.version.sdk"),
              ("abi", "ro.product.cpu.abi"))}
    return {"kind": "android", **props}


def run_artifact(adb: Adb, runtime: str, runner: str, model: str, device_dir: str, threads: int, runs: int,
                 warmup: int, pull_to: Path) -> dict[str, Any]:
    """Run one pushed model with the pushed runner; parsed statistics."""
    name = Path(model).name
    if runtime == "tflite":
        output = adb.shell([runner, f"--graph={model}", f"--num_threads={threads}", f"--num_runs={runs}",
                            f"--warmup_runs={warmup}", "--use_xnnpack=true", "--report_peak_memory_footprint=true",
                            "--enable_op_profiling=true"])
        return parse_benchmark_model(output)
    etdump = f"{device_dir}/{name}.etdump"
    output = adb.shell([runner, f"--model_path={model}", f"--num_executions={runs + warmup}",
                        f"--cpu_threads={threads}", f"--etdump_path={etdump}"])
    result = parse_executor_runner(output)
    local = pull_to / f"{name}.etdump"
    adb("pull", etdump, str(local), check=False)
    if local.is_file():
        try:
            result.update(etdump_latency(local))
        except (ImportError, ValueError, KeyError) as err:  # no executorch here, or an unreadable dump
            result["etdump_error"] = str(err)
    return result


def profile(build_dir: Path, runner: Path, adb: Adb, threads: list[int], runs: int, warmup: int,
            device_dir: str) -> dict[str, Any]:
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
                                      warmup, build_dir), "threads": count}
                 for key, file in models.items()}
        entry["speedup_vs_fp32"] = entry["fp32_baseline"]["mean_ms"] / entry["artifact"]["mean_ms"]
        latency[f"threads_{count}"] = entry
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": info,
        "settings": {"threads": threads, "runs": runs, "warmup": warmup, "data": []},
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
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    parser.add_argument("--device-dir", default="/data/local/tmp/sr2bit", help="working folder on the phone")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default <build>/android_profile.json)")
    args = parser.parse_args(argv)
    for path in (args.build / "manifest.json", args.runner):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    try:
        report = profile(args.build, args.runner, Adb(args.serial), args.threads, args.runs, args.warmup,
                         args.device_dir)
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
