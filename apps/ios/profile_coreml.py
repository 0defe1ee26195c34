"""Profile a Core ML build on a Mac: PSNR/SSIM on benchmark folders and latency per compute unit.

    python apps/ios/profile_coreml.py build/swinir-light-x4-sr2bit-coreml-w4-t64 \\
        --data ../shared/data/benchmark/Set5 ../shared/data/benchmark/Set14 [--compute-units ALL CPU_ONLY] [--runs 20]

Needs macOS 15 or later (the artifact is an iOS18/macOS15 ML program), coremltools and this
repository installed (``pip install -e ".[coreml]"``). Images go through the artifact tile by tile
with the same tiling plan as ``pipeline eval --tile`` and the apps (:mod:`srcore.tiling`; tiles
narrower than the artifact are mirror-padded, :func:`pipeline.evaluate.fixed_shape_upscaler`), and
are scored by the same metric code. The manifest's ``verification.simulation`` is the PyTorch fp32
number for the same tiles; Core ML computes in fp16, so expect a few hundredths of a dB of difference.
Writes ``profile-<host>.json`` into the build folder.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.evaluate import evaluate, fixed_shape_upscaler

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


def coreml_upscaler(mlmodel, input_name: str, output_name: str, input_dtype: str):
    """The runner interface (LR tensor in, SR tensor out) over ``MLModel.predict``."""

    def run(lr: torch.Tensor) -> torch.Tensor:
        out = mlmodel.predict({input_name: lr.numpy().astype(input_dtype)})[output_name]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    return run


def latency_ms(run, tile: int, runs: int) -> float:
    """Median wall time of one tile after 3 warm-up calls."""
    x = torch.rand(1, 3, tile, tile)
    for _ in range(3):
        run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, help="folder written by `python -m pipeline build --target coreml`")
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="benchmark folders (HR + LR_bicubic)")
    parser.add_argument("--compute-units", nargs="+", choices=COMPUTE_UNITS, default=list(COMPUTE_UNITS))
    parser.add_argument("--overlap", type=int, default=16, help="LR overlap between tiles (default 16)")
    parser.add_argument("--runs", type=int, default=20, help="timed predictions per compute unit (default 20)")
    args = parser.parse_args(argv)
    if platform.system() != "Darwin":
        print("error: Core ML models run only on macOS (this is "
              f"{platform.system()}); on Linux, `pipeline build` has already verified the weights", file=sys.stderr)
        return 2
    import coremltools as ct

    manifest = json.loads((args.build / "manifest.json").read_text())
    tile, scale = manifest["tile"], manifest["scale"]
    results = {"host": platform.platform(), "machine": platform.machine(), "manifest": manifest["verification"].get("simulation"),
               "compute_units": {}}
    for unit in args.compute_units:
        mlmodel = ct.models.MLModel(str(args.build / manifest["artifact"]), compute_units=ct.ComputeUnit[unit])
        run = coreml_upscaler(mlmodel, manifest["input"]["name"], manifest["output"]["name"], manifest["input"]["dtype"])
        scores = evaluate(fixed_shape_upscaler(run, tile, scale), args.data, scale, tile=tile, overlap=args.overlap,
                          progress=False)
        entry = {"latency_ms_per_tile": latency_ms(run, tile, args.runs),
                 "scores": {r.dataset: {"psnr": r.psnr, "ssim": r.ssim} for r in scores}}
        # A package built with --tiles holds a function per further size (the build's `functions`): time each,
        # per output megapixel past the overlap, as `pipeline profile` does for the other runtimes.
        entry["tile_speed"] = {}
        for name, side in manifest.get("functions", {"main": tile}).items():
            sized = mlmodel if name == "main" else ct.models.MLModel(
                str(args.build / manifest["artifact"]), compute_units=ct.ComputeUnit[unit], function_name=name)
            ms = latency_ms(coreml_upscaler(sized, manifest["input"]["name"], manifest["output"]["name"],
                                            manifest["input"]["dtype"]), side, args.runs)
            added = ((side - args.overlap) * scale) ** 2
            entry["tile_speed"][str(side)] = {"median_ms": ms, "ms_per_output_mp": ms * 1e6 / added}
        results["compute_units"][unit] = entry
        print(f"{unit:12s} {entry['latency_ms_per_tile']:8.2f} ms/tile  "
              + "  ".join(f"{d} {s['psnr']:.2f} dB / {s['ssim']:.4f}" for d, s in entry["scores"].items())
              + "  " + "  ".join(f"{side} px {r['ms_per_output_mp']:.0f} ms/MP" for side, r in entry["tile_speed"].items()),
              flush=True)
    out = args.build / f"profile-{platform.node() or 'mac'}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
