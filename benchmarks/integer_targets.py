"""ExecuTorch and TFLite builds at 4/3/2 bits: size, accuracy in the real runtime, latency against FP32.

    python -m benchmarks.integer_targets --bounds 4=reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors \\
        3=reports/bounds/gpu-h200/x4-w3a3-2dquant.safetensors 2=reports/bounds/gpu-h200/x4-w2a2-dobi.safetensors \\
        --out reports/integer_targets.md --builds build/integer

Each row is a real ``pipeline.build`` (the default int4 grid form), lowered, every stored
int4 code and scale read back and compared, the artifact run in its own runtime on Set5 (64 px tiles,
overlap 16) beside the FP model and the PyTorch simulation of the deploy mode, and timed against the
FP32 artifact of the same graph and backend: both interleaved round by round in one fresh process
per thread count (:func:`targets.latency.versus_baseline`). Builds run one after another (never side
by side) so that the latencies do not compete for cores. Every sentence of the report is written
here from the measured numbers, so the report needs no hand edits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from calibration.bounds import load_bounds
from pipeline.build import BuildChecks, build
from srcore.paths import benchmark_dir, cache_dir
from srcore.weights import load_model
from targets.config import CONFIGS

TARGETS = ("executorch", "tflite")


def row(target: str, bits: int, manifest: dict, seconds: float) -> str:
    v, lat = manifest["verification"], manifest["latency"]
    base = manifest["baseline"]["artifact_bytes"]
    speed = " | ".join(f"{lat[k]['artifact']['median_ms']:.0f} / {lat[k]['fp32_baseline']['median_ms']:.0f} "
                       f"({lat[k]['speedup_vs_fp32']:.2f}x; paired **{lat[k]['paired_speedup_median']:.2f}x**)"
                       for k in ("threads_1", "threads_2"))
    return (f"| {target} | W{bits} | {manifest['artifact_bytes'] / 1e6:.2f} / {base / 1e6:.2f} "
            f"({base / manifest['artifact_bytes']:.2f}x) | {v['fp']['psnr']:.3f} | {v['simulation']['psnr']:.3f} | "
            f"{v['artifact']['psnr']:.3f} | {v['artifact']['psnr_minus_simulation']:+.4f} | "
            f"{v['artifact']['max_abs_diff_vs_simulation']['max_abs_8bit_levels']:.2f} | {speed} | {seconds / 60:.1f} |")


def summary(manifests: dict[str, dict], targets: list[str]) -> list[str]:
    """One line per backend: the range of paired speed-ups and of size ratios over its builds."""
    lines = []
    for target in targets:
        ours = [m for name, m in manifests.items() if name.startswith(f"{target}-")]
        timed = [entry for m in ours for key, entry in m["latency"].items() if key.startswith("threads_")]
        paired = [entry["paired_speedup_median"] for entry in timed]
        smaller = [m["baseline"]["artifact_bytes"] / m["artifact_bytes"] for m in ours]
        threads = sorted({entry["artifact"]["threads"] for entry in timed})
        lines.append(f"- {target}: int4 artifacts {min(paired):.2f}-{max(paired):.2f}x as fast as FP32 (paired, "
                     f"{' and '.join(map(str, threads))} threads, all bit widths), {min(smaller):.2f}-{max(smaller):.2f}x "
                     "smaller")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", nargs="+", required=True, metavar="BITS=FILE", help="one bounds file per bit width")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--builds", type=Path, default=Path("build/integer"), help="where the build folders go")
    parser.add_argument("--out", type=Path, required=True, help="Markdown report (a .json of the manifests beside it)")
    args = parser.parse_args(argv)
    paths = dict(item.split("=", 1) for item in args.bounds)
    model, info = load_model(None, 4)
    rows, manifests = [], {}
    for target in args.targets:
        for bits, path in sorted(paths.items(), reverse=True):
            start = time.perf_counter()
            bounds = load_bounds(path)
            if bounds.quant_config.weight_bits != int(bits):
                raise SystemExit(f"{path} holds {bounds.quant_config.weight_bits}-bit weights, not {bits}")
            result = build(model, bounds, CONFIGS[target](tile=args.tile), args.builds / f"{target}-w{bits}", force=True,
                           checks=BuildChecks(score_on=benchmark_dir("Set5"), threads=(1, 2), baseline_cache=cache_dir()))
            seconds = time.perf_counter() - start
            rows.append(row(target, int(bits), result.manifest, seconds))
            manifests[f"{target}-w{bits}"] = result.manifest
            print(rows[-1], flush=True)
    timing = next(iter(manifests.values()))["latency"]["threads_1"]["artifact"]
    tools = {k: v for m in manifests.values() for k, v in m["tool_versions"].items()}
    lines = [
        "# ExecuTorch and TFLite artifacts: size, accuracy in the runtime, latency vs FP32",
        "",
        f"- Command: `python -m benchmarks.integer_targets {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Weights: {info.describe()}; bounds: " + ", ".join(
            f"W{b} `{p}` ({manifests[f'{args.targets[0]}-w{b}']['bounds']['method']})"
            for b, p in sorted(paths.items(), reverse=True)),
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; Python {platform.python_version()}; tools: "
        + ", ".join(f"{k} {v}" for k, v in sorted(tools.items())),
        f"- Input: one {args.tile}x{args.tile} LR tile -> {args.tile * 4}x{args.tile * 4}. PSNR/SSIM: Set5 Y channel, "
        "64 px tiles with overlap 16, the same tiles for all three columns.",
        "- Int4 grid form (`--int-grid`, the build's default; reports/deploy_calibration.md §3): "
        + ", ".join(sorted({m["integer_grid"]["int_grid"] for m in manifests.values()}))
        + " (snapped: each grid moved to an integer zero point in the int4 container, `calibration.snapping`; exact: "
        "plus one offset row per grid); stored codes and scales read back from each artifact and compared exactly "
        "with the calibrated ones.",
        "- Deploy mode (both backends): quantized Linears take dynamic int8 per-token activations times int4 "
        "per-channel weights; everything else fp32. 2/3-bit grids use the int4 container (no smaller kernels).",
        f"- Latency: median of {timing['runs']} runs after {timing['warmup_runs']} warm-up runs; the artifact and its "
        "FP32 baseline interleaved round by round in one fresh process per thread count. 'paired' is the median of "
        "the per-round FP32 / int4 ratios, the steadier number on a shared machine; the ratio of the medians is "
        "beside it. The machine is a shared 2-core VM: compare within a row only.",
        *summary(manifests, args.targets),
        "",
        "| backend | bits | size MB / FP32 (smaller) | FP PSNR | simulation PSNR | artifact PSNR | artifact - sim (dB) "
        "| max abs diff (of 255) | 1 thread ms: int4 / fp32 (speed-up; paired) | 2 threads, the same | build min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(manifests, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
