"""TFLite W2 stored as INT2 (exact grids) against the default INT4 (snapped grids): bytes, PSNR and latency.

    python -m benchmarks.int2_storage --bounds reports/bounds/gpu-h200/x4-w2a2-dobi.safetensors \\
        --out reports/int2_storage.md

Two real ``pipeline build`` artifacts of the same 2-bit bounds: the default (grids snapped into int4,
INT4 codes) and ``int_grid="exact"`` (the calibrated grids, codes ``k - 2`` in INT2, four per byte,
plus one offset row per grid). Each is read back and verified, scored on the benchmark set in LiteRT
beside its own simulation, and timed against its FP32 baseline; then the two are timed against each
other (paired, fresh processes, as ``pipeline build`` times an artifact against its baseline).
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

from calibration.bounds import load_bounds
from pipeline.build import BuildChecks, build
from srcore.paths import benchmark_dir
from srcore.weights import load_model
from targets import TFLiteConfig, tool_versions
from targets.latency import versus_baseline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", required=True, help="a 2-bit bounds file")
    parser.add_argument("--set", default="Set5", help="benchmark set the artifacts are scored on")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds per thread count")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, info = load_model(None, 4)
    model.eval()
    bounds = load_bounds(args.bounds)
    if bounds.quant_config.weight_bits != 2:
        raise SystemExit(f"{args.bounds} holds {bounds.quant_config.weight_bits}-bit weights, not 2")
    forms = ("snapped", "exact")
    with tempfile.TemporaryDirectory() as tmp:
        checks = BuildChecks(score_on=benchmark_dir(args.set), threads=tuple(args.threads), runs=args.runs,
                             baseline_cache=Path(tmp) / "baselines")
        built = {form: build(model, bounds, TFLiteConfig(tile=args.tile, int_grid=form), Path(tmp) / form,
                             checks=checks) for form in forms}
        paired = versus_baseline("tflite", *(built[form].folder / built[form].manifest["artifact"] for form in
                                             ("exact", "snapped")), args.tile, args.threads, runs=args.runs)
    lines = [
        "# TFLite 2-bit weights: INT2 (exact grids) or INT4 (snapped grids) (issue 16 goal 2)",
        "",
        f"- Command: `python -m benchmarks.int2_storage {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Weights: **{info.describe()}**. This model is weak (Set5 29.71 dB FP against the official SwinIR-light's "
        "32.45); nothing here reproduces the paper.",
        f"- Host: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, no GPU; "
        + ", ".join(f"{k} {v}" for k, v in sorted(tool_versions(['tflite']).items())),
        f"- Each row is a `pipeline build --target tflite --bits 2 [--int-grid exact]` at a {args.tile} px tile, read "
        f"back exact; PSNR (dB, Y) on {args.set} of its simulation and of the artifact in LiteRT (XNNPACK delegate); "
        f"latency: the artifact against its FP32 baseline, median of {args.runs} interleaved runs in a fresh process, "
        "'paired' the median of per-round ratios.",
        "",
        "| int grid | stored as | artifact bytes | linear weights bytes | linear scales bytes | simulation PSNR | "
        "artifact PSNR | " + " | ".join(f"{t} thr ms (vs FP32, paired)" for t in args.threads) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(args.threads),
    ]
    for form in forms:
        m = built[form].manifest
        sizes, v = m["size_breakdown"]["artifact"], m["verification"]
        speed = [f"{m['latency'][f'threads_{t}']['artifact']['median_ms']:.1f} "
                 f"({m['latency'][f'threads_{t}']['paired_speedup_median']:.3f}x)" for t in args.threads]
        lines.append(f"| {form} | {', '.join(v['index_dtypes'])} | {m['artifact_bytes']:,} | "
                     f"{sizes['linear weights']:,} | {sizes['linear scales and tables']:,} | "
                     f"{v['simulation']['psnr']:.3f} | {v['artifact']['psnr']:.3f} | " + " | ".join(speed) + " |")
    lines += ["", "INT2 exact against INT4 snapped, one tile, paired (above 1: INT2 exact is faster):", ""]
    lines += [f"- {t} thread(s): snapped {paired[f'threads_{t}']['fp32_baseline']['median_ms']:.1f} ms, exact INT2 "
              f"{paired[f'threads_{t}']['artifact']['median_ms']:.1f} ms, paired "
              f"{paired[f'threads_{t}']['paired_speedup_median']:.3f}x" for t in args.threads]
    lines += ["", f"Total wall time: {time.perf_counter() - start:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
