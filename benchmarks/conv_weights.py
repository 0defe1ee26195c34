"""Convolutions as floats, fp16 (ExecuTorch) or int8 per channel, Core ML, TFLite and ExecuTorch: bytes, PSNR and
latency cost, to choose ``conv_weights``.

    python -m benchmarks.conv_weights --bounds 4=reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors \\
        3=reports/bounds/gpu-h200/x4-w3a3-2dquant.safetensors 2=reports/bounds/gpu-h200/x4-w2a2-dobi.safetensors \\
        --out reports/conv_weights.md

PSNR is each target's PyTorch simulation of the deploy model with its convolutions as stored
(floats; ExecuTorch's fp16 filters, :func:`targets.base.with_fp16_values`; or
:func:`targets.base.int8_convolutions`' int8 codes times fp16 per-channel scales):
Core ML's fp16 mode (calibrated grids, Linear inputs and outputs rounded to fp16), TFLite's own
(int4 codes with int8-per-token Linear inputs, bias tables as its config stores them), ExecuTorch's
(the same Linears). Sizes are real ``pipeline build`` artifacts (read back and verified: tables,
codes and scales exact), scored against their simulation on Set5 where the runtime runs here.
TFLite and ExecuTorch W4 builds of each storage are timed against the float-filter ones (paired, fresh
processes, as ``pipeline build`` does). Core ML cannot run here: on Apple hardware its constexpr
weights are decompressed by the runtime, whose cost only a device measures (apps/ios/profile_coreml.py).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from calibration.bounds import load_bounds
from calibration.deploy import DeployMode, simulate
from calibration.snapping import CONTAINERS, snap_weight_bounds
from pipeline.build import BuildChecks, build
from pipeline.evaluate import evaluate, model_upscaler
from srcore.paths import benchmark_dir, data_root
from srcore.weights import load_model
from targets import CoreMLConfig, ExecuTorchConfig, TFLiteConfig, get_target, tool_versions
from targets.base import channel_grid, deploy_model, int8_convolutions, on_integer_grid
from targets.config import ConvWeights, TargetConfig
from targets.latency import versus_baseline

CONFIGS = {"coreml": CoreMLConfig, "tflite": TFLiteConfig, "executorch": ExecuTorchConfig}


def psnr(model: torch.nn.Module, sets: list[str]) -> dict[str, float]:
    """PSNR (Y, full images, as pipeline evaluate) of ``model`` on each benchmark set."""
    with torch.no_grad():
        results = evaluate(model_upscaler(model.eval()), [benchmark_dir(s) for s in sets], 4, progress=False)
    return {r.dataset: r.psnr for r in results}


def simulation(target: str, model: torch.nn.Module, bounds, config: TargetConfig) -> torch.nn.Module:
    """``target``'s simulation of what ``build`` ships from ``bounds`` (None: the FP model) with ``config``'s storage."""
    deploy = model
    if bounds is not None:
        if target != "coreml":  # the default snapped int4 grid, as build stores it
            bounds, _ = snap_weight_bounds(bounds, "int4")
        deploy, weights = deploy_model(model, bounds)
        if target != "coreml":
            deploy, _, _ = on_integer_grid(deploy, weights, *CONTAINERS["int4"])
    backend = get_target(config)
    if config.conv_weights is ConvWeights.INT8:
        deploy, _, _ = int8_convolutions(deploy)
    return simulate(deploy, DeployMode.FP16) if target == "coreml" else backend.simulate(deploy)


def rounding_rows(model: torch.nn.Module, crop: tuple[int, int]) -> list[str]:
    """The FP model with only its convolutions int8, codes rounded to nearest or kernel sums kept
    (:func:`targets.base.channel_grid`), against the float one on a crop of a photo: the output's drift, its
    4x4 pattern (the pixel-shuffle conv's channels are sub-pixel positions) and its PNG size."""
    photo = Image.open(data_root() / "train" / "DF2K_HR" / "000010.png").convert("RGB").crop((0, 0, *crop))
    lr = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255

    def upscaled(keep_sums: bool | None) -> np.ndarray:
        copy = deepcopy(model)
        for path, conv in [(p, m) for p, m in copy.named_modules() if isinstance(m, torch.nn.Conv2d)]:
            if keep_sums is not None:
                conv.weight.data = channel_grid(path, conv.weight, keep_sums).weight
        with torch.no_grad():
            return (copy(lr)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()

    def png_bytes(image: np.ndarray) -> int:
        buffer = io.BytesIO()
        Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
        return len(buffer.getvalue())

    reference, rows = upscaled(None), []
    for label, keep_sums in (("float", None), ("int8, nearest", False), ("int8, kernel sums kept (default)", True)):
        d = upscaled(keep_sums) - reference
        pattern = np.array([[d[y::4, x::4].mean() for x in range(4)] for y in range(4)])
        rows.append(f"| {label} | {d.mean():+.3f} | {np.abs(d).mean():.3f} | {pattern.max() - pattern.min():.3f} | "
                    f"{png_bytes(reference + d):,} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", nargs="+", required=True, metavar="BITS=FILE", help="one bounds file per bit width")
    parser.add_argument("--targets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="thread counts of the TFLite and ExecuTorch W4 timing, each storage against float "
                             "(none: no timing)")
    parser.add_argument("--runs", type=int, default=40, help="timed rounds per thread count")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, info = load_model(None, 4)
    model.eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets:
            modes = CONFIGS[target].conv_storage  # FLOAT first: every other mode is compared with it
            if target == "coreml":
                rows.append((target, "FP (no quantized Linears)",
                             {m: psnr(simulation(target, model, None, CONFIGS[target](conv_weights=m)), args.sets)
                              for m in modes}, {}, {}))
            for item in args.bounds:
                bits, path = item.split("=", 1)
                bounds = load_bounds(path)
                scores = {m: psnr(simulation(target, model, bounds, CONFIGS[target](conv_weights=m)), args.sets)
                          for m in modes}
                built, speed = {}, {}
                # ExecuTorch stores every bit width in the same int4 container (reports/artifact_sizes.md): built at W4 only
                if target != "executorch" or bits == "4":
                    folders = {m: Path(tmp) / f"{target}-w{bits}-{m.value}" for m in modes}
                    options = {"tiles": ()} if target == "executorch" else {}  # one tile size, as the other targets
                    checks = BuildChecks(baseline_cache=Path(tmp) / "baselines",
                                         score_on=benchmark_dir("Set5") if target != "coreml" else None)
                    built = {m: build(model, bounds, CONFIGS[target](tile=args.tile, conv_weights=m, **options),
                                      folders[m], checks=checks).manifest for m in modes}
                    if target != "coreml" and bits == "4" and args.threads:  # each mode against float filters, paired
                        speed = {m: versus_baseline(target, folders[m] / built[m]["artifact"],
                                                    folders[ConvWeights.FLOAT] / built[ConvWeights.FLOAT]["artifact"],
                                                    args.tile, args.threads, runs=args.runs) for m in modes[1:]}
                rows.append((target, f"W{bits} ({Path(path).name})", scores, built, speed))
    tools = tool_versions(args.targets)
    lines = [
        "# Convolution weights: floats, fp16 or int8 per channel (issue 16 goal 3)",
        "",
        f"- Command: `python -m benchmarks.conv_weights {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Weights: **{info.describe()}**. This model is weak (Set5 29.71 dB FP against the official SwinIR-light's "
        "32.45): costs on the official model may differ; nothing here reproduces the paper.",
        f"- Host: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, no GPU; "
        + ", ".join(f"{k} {v}" for k, v in sorted(tools.items())),
        "- PSNR: dB, Y channel, full images, of each target's simulation with the convolutions as stored (float: Core "
        "ML fp16 weights, TFLite and ExecuTorch fp32 ones). fp16 (ExecuTorch): fp16 filters that XNNPACK widens to "
        "fp32 when the program loads, simulated as fp32 filters holding the fp16 values. int8: codes -127..127 times "
        "one fp16 scale per output channel (max |w| / 127), all 7 convolutions; ExecuTorch runs them on fp32 inputs as "
        "3x3 patches times XNNPACK's f32 x qc8w fully connected op (`targets.xnnpack_convs`). 'cost' is float minus "
        "the row's storage.",
        f"- KB: the `pipeline build` artifact at a {args.tile} px tile (verified exact; ExecuTorch: W4 only, every "
        "bit width is stored in the same int4 container) and its convolution component (`size_breakdown`). "
        "'artifact - simulation': the build's own score on Set5 tiles of the artifact in its runtime minus its "
        "simulation, and the largest difference of a pixel in 8-bit levels (TFLite, ExecuTorch). "
        "Latency (W4, TFLite and ExecuTorch): the row's artifact against the float-filter one, runs "
        f"interleaved in one fresh process per thread count, median of {args.runs} after warm-up; 'paired' is the "
        "median of the per-round float / row time ratios (above 1: the row's artifact is faster). Core ML does not "
        "run on this host.",
        "",
        "| target | model | stored as | " + " | ".join(f"{s} float | {s} stored | {s} cost" for s in args.sets)
        + " | KB float | KB stored | convolutions KB float / stored | artifact - simulation, Set5 (dB; max levels) | "
        + " | ".join(f"{t} thr ms float / stored (paired)" for t in args.threads) + " |",
        "|---|---|---|" + "---|" * (3 * len(args.sets) + 4 + len(args.threads)),
    ]
    worst = {}
    for target, label, scores, built, speed in rows:
        for mode in [m for m in scores if m is not ConvWeights.FLOAT]:
            cells = []
            for s in args.sets:
                cost = scores[ConvWeights.FLOAT][s] - scores[mode][s]
                worst[target, mode] = max(worst.get((target, mode), cost), cost)
                cells.append(f"{scores[ConvWeights.FLOAT][s]:.3f} | {scores[mode][s]:.3f} | {cost:+.3f}")
            size_cells, speed_cells = "– | – | – | –", ["–"] * len(args.threads)
            if built:
                kb = {m: built[m]["artifact_bytes"] / 1e3 for m in (ConvWeights.FLOAT, mode)}
                conv = {m: built[m]["size_breakdown"]["artifact"]["convolutions"] / 1e3 for m in (ConvWeights.FLOAT, mode)}
                ran = built[mode]["verification"].get("artifact")
                versus = (f"{ran['psnr_minus_simulation']:+.4f}; {ran['max_abs_diff_vs_simulation']['max_abs_8bit_levels']:.2f}"
                          if ran else "–")
                size_cells = (f"{kb[ConvWeights.FLOAT]:.0f} | {kb[mode]:.0f} | "
                              f"{conv[ConvWeights.FLOAT]:.1f} / {conv[mode]:.1f} | {versus}")
            if mode in speed:
                timed = speed[mode]
                speed_cells = [f"{timed[f'threads_{t}']['fp32_baseline']['median_ms']:.1f} / "
                               f"{timed[f'threads_{t}']['artifact']['median_ms']:.1f} "
                               f"({timed[f'threads_{t}']['paired_speedup_median']:.3f}x)" for t in args.threads]
            lines.append(f"| {target} | {label} | {mode.value} | " + " | ".join(cells) + f" | {size_cells} | "
                         + " | ".join(speed_cells) + " |")
    crop = (240, 180)
    lines += ["", "Largest PSNR cost of each storage against float (positive: it scores lower): "
              + ", ".join(f"{t} {m.value} {c:.3f} dB" for (t, m), c in worst.items()) + ".", "",
              f"## How the codes are rounded (FP model, convolutions only, {crop[0]}x{crop[1]} crop of `000010.png`, x4)",
              "", "Output minus the float-convolution output, in 8-bit levels; 'pattern': the range of its mean over the "
              "16 positions modulo 4; PNG: the rounded output's bytes.", "",
              "| convolutions | mean difference | mean abs difference | 4x4 pattern range | PNG bytes |",
              "|---|---|---|---|---|", *rounding_rows(model, crop),
              "", f"Total wall time: {time.perf_counter() - start:.0f} s."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
