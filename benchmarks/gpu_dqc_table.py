"""GPU session for 2DQuant: DQC speed per setting, then the Table-3 layout with as long a DQC as the budget allows.

    SR2BIT_DATA=.devdata python -m benchmarks.gpu_dqc_table --out runs/gpu-table --budget-s 420 [--weights W]

1. DOBI W4A4 bounds once, then DQC at the paper preset (batch 32, 64x64 LR crops) timed in fp32 and
   bf16 autocast, eager and with the Swin blocks compiled: seconds per iteration after warm-up, and
   the first iterations' time (compilation); ``dqc_speed.json``.
2. ``benchmarks.paper_table`` (MinMax, Percentile, both DOBI variants, 2DQuant at 4/3/2 bits) with the
   setting that finishes soonest (compilation counted: it recompiles for each bit width) and
   ``min(3000, what fits)`` DQC iterations; the table and the bounds files go under ``--out``.

Scores are computed in fp32 with TF32 off, so ``python -m pipeline eval --bounds`` on a CPU reproduces them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from benchmarks import paper_table
from calibration.bounds import Bounds, apply_bounds_
from calibration.config import QuantConfig
from calibration.dqc import DQC_PRESETS, distill_bounds_
from pipeline.calibrate import CalibrationConfig, Method, run_calibration
from pipeline.evaluate import evaluate, model_upscaler
from srcore.data import CropSampler
from srcore.paths import benchmark_dir, calib_dir
from srcore.weights import load_model

SETTINGS = {"fp32 eager": (False, False), "bf16 eager": (True, False),
            "fp32 compiled": (False, True), "bf16 compiled": (True, True)}


def time_dqc(
    weights, bounds: Bounds, calib: list[Path], device, bf16: bool, compile: bool, iters: int, batch_size: int
) -> dict:
    """Seconds per DQC iteration (paper preset) after 3 warm-up iterations, which include any compilation."""
    model, _ = load_model(weights, 4, device)
    apply_bounds_(model, bounds)
    sampler = CropSampler(lr_folders=[str(c) for c in calib], scale=4, lr_size=64, seed=1)
    config = dataclasses.replace(DQC_PRESETS["paper"], bf16=bf16, compile=compile, batch_size=batch_size)
    warm = distill_bounds_(model, sampler.sample_lr, dataclasses.replace(config, iterations=3), device, progress=False)
    timed = distill_bounds_(model, sampler.sample_lr, dataclasses.replace(config, iterations=iters), device,
                            progress=False)
    return {"s_per_it": timed.wall_s / iters, "warmup_3_it_s": warm.wall_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=420, help="wall time for all of it (default 420)")
    parser.add_argument("--weights", default=None, help="FP x4 weights (default: the shipped model)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--timed-iters", type=int, default=15)
    parser.add_argument("--max-iters", type=int, default=3000, help="DQC iterations at most (paper: 3000)")
    parser.add_argument("--bits", nargs="+", default=["4", "3", "2"], choices=["4", "3", "2"])
    parser.add_argument("--batch-size", type=int, default=32, help="DQC batch (paper 32)")
    parser.add_argument("--device", default="cuda", help="cuda (cpu only for a dry run of the script)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch._dynamo.config.cache_size_limit = 64  # a graph per block kind and bit width
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    calib = [calib_dir()]
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.machine()
    info = {"device": name, "torch": torch.__version__, "python": platform.python_version()}

    model, weights = load_model(args.weights, 4, device)
    t = time.perf_counter()
    result = run_calibration(model, CalibrationConfig(Method.DOBI, QuantConfig(4, 4)), calib, weights_name=weights.name,
                             device=device, progress=False)
    dobi_s = time.perf_counter() - t
    t = time.perf_counter()
    evaluate(model_upscaler(result.model, device), [benchmark_dir("Set5"), benchmark_dir("Set14")], 4, progress=False)
    eval_s = time.perf_counter() - t
    sampler = CropSampler(lr_folders=[str(c) for c in calib], scale=4, lr_size=64, seed=1)
    sampler.sample_lr(args.batch_size)
    t = time.perf_counter()
    sampler.sample_lr(args.batch_size)
    speed = {"weights": weights.describe(), "dobi_w4a4_s": dobi_s, "eval_set5_set14_s": eval_s,
             "crops_per_iteration_s": time.perf_counter() - t}
    for label in args.settings:
        bf16, compile = SETTINGS[label]
        try:
            speed[label] = time_dqc(args.weights, result.bounds, calib, device, bf16, compile, args.timed_iters,
                                    args.batch_size)
        except Exception as exc:  # reported, not fatal: the table still runs with what works
            speed[label] = {"error": repr(exc)}
        print(label, speed[label], flush=True)
        (args.out / "dqc_speed.json").write_text(json.dumps({**info, **speed}, indent=1))

    # 12 quick rows (+ FP and bicubic) cost about a DOBI and an evaluation each; DQC gets the rest.
    quick_rows = 4 * len(args.bits) + 2 + len(args.bits)  # 4 methods per bit width, FP, bicubic, DQC's DOBI
    left = args.budget_s - (time.perf_counter() - start) - quick_rows * (dobi_s + eval_s)
    usable = {k: v for k, v in speed.items() if isinstance(v, dict) and "s_per_it" in v}

    runs = len(args.bits)

    def finish_s(label: str, iters: int) -> float:  # one DQC per bit width; compiled ones recompile for each
        return runs * (iters * usable[label]["s_per_it"] + usable[label]["warmup_3_it_s"])

    iters = {k: max(1, min(args.max_iters, int((left / runs - v["warmup_3_it_s"]) / v["s_per_it"])))
             for k, v in usable.items()}
    best = max(usable, key=lambda k: (iters[k], -finish_s(k, iters[k])))
    bf16, compile = SETTINGS[best]
    plan = {"setting": best, "iterations": iters[best], "expected_s": finish_s(best, iters[best]), "left_s": left}
    print("plan", plan, flush=True)
    (args.out / "dqc_speed.json").write_text(json.dumps({**info, **speed, "plan": plan}, indent=1))

    table_args = ["--scale", "4", "--bits", *args.bits, "--dqc-preset", "paper", "--iters", str(iters[best]),
                  "--batch-size", str(args.batch_size),
                  "--device", str(device), "--bounds-dir", str(args.out / "bounds"),
                  "--out", str(args.out / "table3_x4_gpu.md"), "--hardware", f"{name}, torch {torch.__version__}",
                  "--dqc-bf16" if bf16 else "--no-dqc-bf16", "--dqc-compile" if compile else "--no-dqc-compile"]
    if args.weights:
        table_args += ["--weights", str(args.weights)]
    paper_table.main(table_args)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
