"""GPU session for the reference model: measure the training settings, then fine-tune the shipped x4 model.

    SR2BIT_DATA=.devdata python -m benchmarks.gpu_train_reference --out runs/gpu-train --budget-s 240

1. Times a training step (batch, LR patch 64) in fp32 eager, bf16 eager and bf16 with the Swin blocks
   compiled (:func:`srcore.model.compiled_blocks`), and the crop pipeline with ``--workers``
   processes; writes ``speed.json``.
2. Fine-tunes the shipped model (``train-fp --init-weights``) with the fastest setting for as many
   steps as fit in what is left of ``--budget-s``, validating on Set5; the run folder holds
   ``best.safetensors``, ``last.pt`` and ``log.jsonl`` (ship with ``benchmarks.ship_reference_model``).
3. Scores the kept weights on Set5 and Set14 in fp32 (TF32 off) and writes ``summary.json``.

The budget covers everything after the imports, compilation included: the device is lent by the minute.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from pipeline.evaluate import evaluate, model_upscaler
from pipeline.train import TrainConfig, train
from srcore.data import PairStream
from srcore.model import build_model, compiled_blocks
from srcore.paths import benchmark_dir, data_root
from srcore.weights import MODEL_ZOO, load_model, shipped_name

SETTINGS = {"fp32 eager": (False, False), "bf16 eager": (True, False), "bf16 compiled": (True, True)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train_step(
    device: torch.device, batch: int, patch: int, scale: int, bf16: bool, compile: bool, steps: int = 10
) -> dict:
    """Seconds per optimizer step on random data after 3 warm-up steps, and the first step's time (compilation)."""
    model = build_model("light", scale).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    x = torch.rand(batch, 3, patch, patch, device=device)
    y = torch.rand(batch, 3, patch * scale, patch * scale, device=device)
    times = []
    for _ in range(3 + steps):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16), compiled_blocks(model, compile):
            loss = torch.nn.functional.l1_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"s_per_step": sorted(times[3:])[len(times[3:]) // 2], "first_step_s": times[0]}


def time_crops(folders: list[str], batch: int, patch: int, scale: int, workers: int, batches: int = 30) -> float:
    """Seconds per training batch delivered by :class:`PairStream` with ``workers`` processes (after start-up)."""
    with PairStream(dict(hr_folders=folders, scale=scale, lr_size=patch, seed=0), batch, workers=workers) as stream:
        for _ in range(2 * workers + 2):
            next(stream)
        start = time.perf_counter()
        for _ in range(batches):
            next(stream)
        return (time.perf_counter() - start) / batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for speed.json, summary.json and the run")
    parser.add_argument("--budget-s", type=float, default=240, help="wall time for all of it (default 240)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (cosine, warm-up 100)")
    parser.add_argument("--workers", type=int, default=14, help="crop processes")
    parser.add_argument("--train", nargs="+", default=None, help="HR folders (default: every folder in <data>/train)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--device", default="cuda", help="cuda (cpu only for a dry run of the script)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.backends.cudnn.allow_tf32 = False  # scores in true fp32, comparable with the CPU
    args.out.mkdir(parents=True, exist_ok=True)
    folders = args.train or [str(p) for p in sorted((data_root() / "train").iterdir()) if p.is_dir()]
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    info = {"device": gpu, "torch": torch.__version__, "python": platform.python_version(),
            "batch": args.batch_size, "patch": args.patch, "train_folders": folders}
    print(json.dumps(info), flush=True)

    speed = {}
    for name in args.settings:
        bf16, compile = SETTINGS[name]
        try:
            speed[name] = time_train_step(device, args.batch_size, args.patch, args.scale, bf16, compile)
        except Exception as exc:  # a setting that fails here is reported, not fatal
            speed[name] = {"error": repr(exc)}
        print(name, speed[name], flush=True)
    speed["crops"] = {"workers": args.workers, "s_per_batch": time_crops(folders, args.batch_size, args.patch,
                                                                           args.scale, args.workers)}
    print("crops", speed["crops"], flush=True)
    (args.out / "speed.json").write_text(json.dumps({**info, "speed": speed}, indent=1))

    best = min((n for n in args.settings if "s_per_step" in speed[n]), key=lambda n: speed[n]["s_per_step"])
    s_per_step = max(speed[best]["s_per_step"], speed["crops"]["s_per_batch"])
    left = args.budget_s - (time.perf_counter() - start) - 25  # final scoring and files
    steps = int(0.85 * left / s_per_step)  # validations and checkpoints take the rest
    bf16, compile = SETTINGS[best]
    print(f"fine-tuning with {best}: {steps} steps at ~{1 / s_per_step:.1f} it/s", flush=True)
    config = TrainConfig(
        scale=args.scale, hr_folders=tuple(folders), val_folder=str(benchmark_dir("Set5")), lr_patch=args.patch,
        batch_size=args.batch_size, steps=steps, learning_rate=args.lr, warmup_steps=100,
        validate_every=max(1, steps // 4), checkpoint_every=max(1, steps // 2), log_every=50, bf16=bf16,
        compile=compile, init_weights=str(MODEL_ZOO / f"{shipped_name(args.scale)}.safetensors"),
    )
    run = train(config, args.out / "run", device=device, progress=False, workers=args.workers)

    model, weights = load_model(args.out / "run" / "best.safetensors", args.scale, device)
    results = evaluate(model_upscaler(model, device), [benchmark_dir("Set5"), benchmark_dir("Set14")], args.scale,
                       progress=False)
    summary = {**info, "setting": best, "steps": run["step"], "train_wall_s": run["wall_s"],
               "it_per_s": run["step"] / run["wall_s"], "weights_sha256": weights.sha256,
               "scores": {r.dataset: {"psnr": r.psnr, "ssim": r.ssim} for r in results},
               "total_s": time.perf_counter() - start}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
