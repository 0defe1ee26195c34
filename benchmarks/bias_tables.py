"""An integer target's relative-position bias tables in fp32 or fp16: bytes, PSNR and latency, to choose ``bias_tables``.

    python -m benchmarks.bias_tables --bounds 4=reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors \\
        3=reports/bounds/gpu-h200/x4-w3a3-2dquant.safetensors 2=reports/bounds/gpu-h200/x4-w2a2-dobi.safetensors \\
        --out reports/bias_tables.md        # --target executorch --out reports/bias_tables_executorch.md

PSNR is the target's PyTorch simulation (int4 codes, int8-per-token Linear inputs, its default convolutions)
with the tables as stored: fp32, or rounded to fp16 values (:func:`targets.base.with_fp16_values`).
Sizes come from real W4 ``pipeline build`` artifacts with the target's default tile sizes (read back
and verified; the 2- and 3-bit ones ride in the same int4 container, so their files are the same size),
each also scored in its runtime on the first set against its own simulation. The fp16-table artifact
is timed against the fp32-table one (paired, fresh processes, as ``pipeline build`` times an artifact
against its baseline).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.conv_weights import psnr, simulation
from calibration.bounds import load_bounds
from pipeline.build import BuildChecks, build
from srcore.paths import benchmark_dir
from srcore.weights import load_model
from targets import tool_versions
from targets.config import CONFIGS, Precision
from targets.latency import versus_baseline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", nargs="+", required=True, metavar="BITS=FILE", help="one bounds file per bit width")
    parser.add_argument("--target", choices=["tflite", "executorch"], default="tflite")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="thread counts of the W4 fp16-vs-fp32 timing (none: no timing)")
    parser.add_argument("--runs", type=int, default=40, help="timed rounds per thread count")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, info = load_model(None, 4)
    model.eval()
    tables = sum(m.relative_position_bias_table.numel() for m in model.modules()
                 if hasattr(m, "relative_position_bias_table"))
    precisions = (Precision.FP32, Precision.FP16)
    configs = {p: CONFIGS[args.target](tile=args.tile, bias_tables=p) for p in precisions}
    runtime = {"tflite": "LiteRT", "executorch": "ExecuTorch"}[args.target]
    scores, built, speed = {}, {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.bounds:
            bits, path = item.split("=", 1)
            bounds = load_bounds(path)
            scores[bits] = {p: psnr(simulation(args.target, model, bounds, configs[p]), args.sets) for p in precisions}
            if bits != "4":
                continue
            folders = {p: Path(tmp) / f"w4-{p.value}" for p in precisions}
            checks = BuildChecks(score_on=benchmark_dir(args.sets[0]), baseline_cache=Path(tmp) / "baselines")
            built = {p: build(model, bounds, configs[p], folders[p], checks=checks).manifest for p in precisions}
            if args.threads:
                speed = versus_baseline(args.target, *(folders[p] / built[p]["artifact"] for p in precisions[::-1]),
                                        args.tile, args.threads, runs=args.runs)
    lines = [
        f"# {runtime} bias tables: fp32 or fp16 (issue 16)",
        "",
        f"- Command: `python -m benchmarks.bias_tables {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Weights: **{info.describe()}**. This model is weak (Set5 29.71 dB FP against the official SwinIR-light's "
        "32.45): costs on the official model may differ; nothing here reproduces the paper.",
        f"- Host: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, no GPU; "
        + ", ".join(f"{k} {v}" for k, v in sorted(tool_versions([args.target]).items())),
        f"- PSNR: dB, Y channel, full images, of {runtime}'s simulation with the relative-position bias tables "
        f"({tables:,} values) in fp32 or rounded to fp16; 'cost' is fp32 minus fp16.",
        "",
        "| model | " + " | ".join(f"{s} fp32 | {s} fp16 | {s} cost" for s in args.sets) + " |",
        "|---|" + "---|" * (3 * len(args.sets)),
    ]
    worst = max(scores[b][Precision.FP32][s] - scores[b][Precision.FP16][s] for b in scores for s in args.sets)
    for bits, by_precision in scores.items():
        lines.append(f"| W{bits} | " + " | ".join(
            f"{by_precision[Precision.FP32][s]:.3f} | {by_precision[Precision.FP16][s]:.3f} | "
            f"{by_precision[Precision.FP32][s] - by_precision[Precision.FP16][s]:+.4f}" for s in args.sets) + " |")
    lines += ["", f"Largest PSNR cost of fp16 tables (positive: fp16 scores lower): {worst:.4f} dB.", ""]
    if built:
        lines += [f"W4 artifacts (tile sizes {', '.join(map(str, configs[Precision.FP16].sizes))} px, `pipeline build`, "
                  f"verified exact; scored in {runtime} on "
                  f"{args.sets[0]} against their own simulation):", "",
                  "| bias tables | artifact bytes | bias tables bytes | artifact - simulation dB | max abs diff (of 255) |",
                  "|---|---|---|---|---|"]
        for p in precisions:
            m, artifact = built[p], built[p]["verification"]["artifact"]
            lines.append(f"| {p.value} | {m['artifact_bytes']:,} | {m['size_breakdown']['artifact']['bias tables']:,} | "
                         f"{artifact['psnr_minus_simulation']:+.4f} | "
                         f"{artifact['max_abs_diff_vs_simulation']['max_abs_8bit_levels']:.3f} |")
    if speed:
        lines += ["", f"Latency of one {args.tile} px tile, fp16-table artifact against the fp32-table one (runs "
                  f"interleaved in one fresh process per thread count, median of {args.runs} after warm-up; 'paired' is the median of the "
                  "per-round fp32 / fp16 time ratios, above 1: fp16 is faster):", ""]
        for t in args.threads:
            entry = speed[f"threads_{t}"]
            lines.append(f"- {t} thread(s): fp32 {entry['fp32_baseline']['median_ms']:.1f} ms, fp16 "
                         f"{entry['artifact']['median_ms']:.1f} ms, paired {entry['paired_speedup_median']:.3f}x")
    lines += ["", f"Total wall time: {time.perf_counter() - start:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
