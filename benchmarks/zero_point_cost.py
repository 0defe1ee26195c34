"""PSNR cost of storing 2DQuant's weight grids in integer containers with zero point 0 (issue 6's design choice).

    python -m benchmarks.zero_point_cost --bounds 4=reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors \\
        3=reports/bounds/gpu-h200/x4-w3a3-2dquant.safetensors 2=reports/bounds/gpu-h200/x4-w2a2-dobi.safetensors \\
        --out reports/zero_point_cost.md

For each bounds file: weight-only fake quantization (activation quantizers off, as in a backend that
runs activations in float or quantizes them itself) with the calibrated bounds, then with every
weight grid snapped (:func:`calibration.snapping.snap_bounds`) into int4 and int8 containers.
Scored on Set5 and Set14 with the shipped weights.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

import torch

from calibration.bounds import apply_bounds_, load_bounds
from calibration.qmodel import quantizers
from calibration.quantizer import Role
from calibration.snapping import snap_weight_bounds
from pipeline.evaluate import evaluate, model_upscaler
from srcore.paths import benchmark_dir
from srcore.weights import load_model


def weight_only_scores(bounds_path: str, container: str | None, folders) -> tuple[dict, int]:
    """Scores with activation quantizers off and weight grids snapped into ``container`` (None: as calibrated)."""
    model, _ = load_model(None, 4)
    bounds, widened = load_bounds(bounds_path), 0
    if container is not None:
        bounds, report = snap_weight_bounds(bounds, container)
        widened = report["widened"]
    apply_bounds_(model, bounds)
    for q in quantizers(model).values():
        q.enabled = q.role is not Role.ACTIVATION
    results = evaluate(model_upscaler(model), folders, 4, progress=False)
    return {r.dataset: r.psnr for r in results}, widened


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", nargs="+", required=True, metavar="BITS=FILE")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    folders = [benchmark_dir("Set5"), benchmark_dir("Set14")]
    _, info = load_model(None, 4)
    lines = [
        "# Cost of integer-offset weight grids (zero point 0), weight-only fake quantization",
        "",
        f"- weights: **{info.describe()}**; scores: PSNR (dB), Y channel, full images",
        f"- command: `python -m benchmarks.zero_point_cost {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- host: {platform.machine()} {platform.system()}, torch {torch.__version__}",
        "- 'as calibrated': the bounds file's weight grids; int4/int8: every weight grid moved to `l = z s` with integer "
        "`z` in the container (shift < s/2, or, when the grid fills the container, a wider step covering the old range: "
        "'rescaled' counts those of the 144 weight quantizers)",
        "",
        "| bounds | grid | Set5 | Δ | Set14 | Δ | rescaled |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in args.bounds:
        bits, path = item.split("=", 1)
        base, _ = weight_only_scores(path, None, folders)
        lines.append(f"| W{bits} `{Path(path).name}` | as calibrated | {base['Set5']:.3f} | | {base['Set14']:.3f} | | |")
        for container in ("int4", "int8"):  # the backends' int4 and a wide int8 for comparison
            scores, rescaled = weight_only_scores(path, container, folders)
            lines.append(f"| W{bits} | {container} | {scores['Set5']:.3f} | {scores['Set5'] - base['Set5']:+.3f} | "
                         f"{scores['Set14']:.3f} | {scores['Set14'] - base['Set14']:+.3f} | {rescaled} |")
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
