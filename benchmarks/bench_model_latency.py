"""Eager CPU latency of sr2bit's SwinIR-light against spandrel's SwinIR, same weights, same run.

    python -m benchmarks.bench_model_latency [--size 128] [--runs 10] [--threads 2]

Both models get identical random weights (saved in the official format and loaded by each);
outputs are checked equal (max |diff| <= 1e-5) before timing. Runs are interleaved so machine
load affects both alike; the median is reported with the ratio reference / ours.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.spandrel_reference import spandrel_swinir_light
from srcore.checkpoint import save_official
from srcore.model import build_model


def _time_once(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="LR tile height and width in pixels (default 128)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="upscaling factor (default 4)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model after one warm-up (default 10)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ours = build_model("light", args.scale).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        save_official(ours, path)
        reference = spandrel_swinir_light(args.scale)
        reference.load_state_dict(torch.load(path, weights_only=True)["params"], strict=True)
    reference.eval()

    x = torch.rand(1, 3, args.size, args.size)
    times = {"sr2bit": [], "spandrel": []}
    with torch.inference_mode():
        diff = (ours(x) - reference(x)).abs().max().item()
        if diff > 1e-5:
            raise SystemExit(f"outputs differ by {diff:.3g}: not the same model, refusing to compare speed")
        for _ in range(args.runs):
            times["sr2bit"].append(_time_once(ours, x))
            times["spandrel"].append(_time_once(reference, x))

    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"# SwinIR-light x{args.scale} eager CPU latency, {args.size}x{args.size} LR, random weights")
    print(f"host: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
          f"runs {args.runs} (+1 warm-up each, interleaved); max |diff| {diff:.2e}")
    print("| model | median ms | min ms |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {med[name]:.1f} | {min(values) * 1e3:.1f} |")
    print(f"speed-up sr2bit vs spandrel (median): {med['spandrel'] / med['sr2bit']:.2f}x")


if __name__ == "__main__":
    main()
