"""Train SwinIR-light from scratch (the project's own reference model; the official weights can't be fetched here).

Random HR crops from natural-image folders (never the benchmark sets), LR made on the fly with
the MATLAB-compatible bicubic, dihedral augmentation, L1 loss, Adam with a cosine schedule,
optional bf16 autocast and ``torch.compile`` on CUDA. A run directory holds:

- ``last.pt``: model, optimizer, schedule, step and RNG state, written atomically every
  ``checkpoint_every`` steps, on Ctrl-C and at the end; ``train`` resumes from it bit-identically
  (same crops, same updates) on the same device. The crops of step ``i`` depend only on the seed
  and ``i`` (:class:`~srcore.data.PairStream`), whatever the number of data workers;
- ``best.safetensors``: params-only weights of the best Set5 validation PSNR so far;
- ``log.jsonl``: one JSON line per logged step (loss, learning rate, validation PSNR, wall time
  summed over resumed sessions).

Under ``torchrun`` (:mod:`srcore.distributed`) the ranks split each global batch of ``batch_size``
crops (rank r computes rows ``[r*B/N, (r+1)*B/N)`` of the one-process batch), DDP averages the
gradients, and only rank 0 validates, logs and writes; ``last.pt`` records the world size. The
crops and updates are those of one process with the same batch, up to float summation order, so a
run may also resume with another number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from pipeline.evaluate import evaluate, model_upscaler
from srcore.checkpoint import atomic_torch_save, load_weights_, read_state_dict
from srcore.data import PairStream, load_benchmark
from srcore.distributed import SINGLE, Distributed
from srcore.model import SwinIR, build_model, compiled_blocks

__all__ = ["TrainConfig", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint; a resume must match it)."""

    scale: int = 4
    variant: str = "light"
    hr_folders: tuple[str, ...] = ()
    val_folder: str | None = None
    lr_patch: int = 64
    batch_size: int = 16
    steps: int = 100_000
    learning_rate: float = 5e-4
    min_learning_rate: float = 1e-6
    warmup_steps: int = 200
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 0
    validate_every: int = 500
    checkpoint_every: int = 200
    log_every: int = 20
    bf16: bool = False
    compile: bool = False
    init_weights: str | None = None  # start from these weights (fine-tuning) instead of a random init

    def __post_init__(self):
        if not self.hr_folders:
            raise ValueError("hr_folders is empty: give at least one folder of HR training images")
        for name in ("lr_patch", "batch_size", "steps", "validate_every", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay from ``learning_rate`` to ``min_learning_rate``."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.min_learning_rate + (self.learning_rate - self.min_learning_rate) * cosine


def _state(model, optimizer, step, best_psnr, config, wall_s, world_size) -> dict:
    return {
        "wall_s": wall_s,
        "world_size": world_size,
        "config": dataclasses.asdict(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "best_psnr": best_psnr,
    }


def _validate(model: SwinIR, folder: str, scale: int, device: torch.device) -> float:
    model.eval()
    try:
        (result,) = evaluate(model_upscaler(model, device), [folder], scale, progress=False)
    finally:
        model.train()
    return result.psnr


def train(
    config: TrainConfig,
    run_dir: str | Path,
    device: str = "cpu",
    progress: bool = True,
    until_step: int | None = None,
    workers: int = 0,
    dist: Distributed = SINGLE,
) -> dict:
    """Train (or resume) in ``run_dir``; returns ``{"step", "best_psnr", "wall_s"}``.

    Resuming requires the same config, except ``steps`` (extending a run re-shapes the remaining
    cosine schedule) and the logging/validation intervals. ``until_step`` stops early (checkpoint
    written), e.g. to split a run across sessions; the schedule still follows ``config.steps``.
    ``workers`` processes prepare the crops ahead (needed to keep a GPU busy; no effect on results).
    ``dist``: this process's rank under torchrun (:func:`srcore.distributed.process_group`); the
    returned ``best_psnr`` is rank 0's (the others do not validate).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    rows = dist.shard(config.batch_size)  # before any work: a batch that does not divide is an input error
    torch.manual_seed(config.seed)
    model = build_model(config.variant, config.scale)
    if config.init_weights:
        load_weights_(model, read_state_dict(config.init_weights))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=config.betas)
    sampler_args = dict(hr_folders=config.hr_folders, scale=config.scale, lr_size=config.lr_patch, seed=config.seed)
    if config.val_folder:
        load_benchmark(config.val_folder, config.scale)  # fail now, not after an hour of training
    step, best_psnr, previous_wall_s = 0, -math.inf, 0.0
    last = run_dir / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        _check_resumable(state["config"], config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, best_psnr, previous_wall_s = state["step"], state["best_psnr"], state.get("wall_s", 0.0)
        log.info("resumed %s at step %d (best Set5 PSNR %.2f)", last, step, best_psnr)
        if state.get("world_size", 1) != dist.world_size:
            log.warning("%s was written by %d process(es), this run has %d: same crops and updates, "
                        "but not bit-identical (float summation order)", last, state.get("world_size", 1),
                        dist.world_size)
    ddp_model = dist.wrap(model)  # after the resume: DDP starts every rank from rank 0's weights
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    start, losses = time.perf_counter(), []

    def elapsed() -> float:  # training wall time, summed over resumed sessions
        return previous_wall_s + time.perf_counter() - start

    def save_checkpoint() -> None:
        if dist.is_main:
            atomic_torch_save(_state(model, optimizer, step, best_psnr, config, elapsed(), dist.world_size), last)

    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not (progress and dist.is_main))
    batches = PairStream(sampler_args, config.batch_size, start=step, workers=workers, rows=rows)
    try:
        with (run_dir / "log.jsonl").open("a") if dist.is_main else contextlib.nullcontext() as log_file:
            while step < min(config.steps, until_step or config.steps):
                lr_batch, hr_batch = next(batches)
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate_at(step)
                with autocast, compiled_blocks(model, config.compile):  # not around validation: new sizes
                    loss = torch.nn.functional.l1_loss(ddp_model(lr_batch.to(device)).float(), hr_batch.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # DDP: gradients averaged over the ranks here
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                step += 1
                loss_value, stop = dist.end_step(loss)
                losses.append(loss_value)
                bar.update(1)
                record = {}
                if step % config.log_every == 0 or step == config.steps:
                    record = {"step": step, "loss": sum(losses) / len(losses), "lr": config.learning_rate_at(step - 1)}
                    losses = []
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                if dist.is_main and config.val_folder and (step % config.validate_every == 0 or step == config.steps):
                    psnr = _validate(model, config.val_folder, config.scale, device)
                    record.update(step=step, val_psnr=psnr)
                    if psnr > best_psnr:
                        best_psnr = psnr
                        _save_weights(model, run_dir / "best.safetensors")
                    log.info("step %d: validation PSNR %.3f dB (best %.3f)", step, psnr, best_psnr)
                if record and log_file:
                    record["wall_s"] = round(elapsed(), 1)
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                if step % config.checkpoint_every == 0:
                    save_checkpoint()
                if stop:  # Ctrl-C under torchrun: every rank stops after this same step
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if dist.is_main:
            log.warning("interrupted at step %d: saving %s", step, last)
        save_checkpoint()
        raise
    finally:
        bar.close()
        batches.close()
    save_checkpoint()
    if not config.val_folder and dist.is_main:
        _save_weights(model, run_dir / "best.safetensors")
    return {"step": step, "best_psnr": best_psnr, "wall_s": elapsed()}


_RESUME_FREE = {"steps", "validate_every", "checkpoint_every", "log_every"}


def _check_resumable(saved: dict, config: TrainConfig) -> None:
    current = dataclasses.asdict(config)
    differ = sorted(k for k in current if k not in _RESUME_FREE and _norm(saved.get(k)) != _norm(current[k]))
    if differ:
        raise ValueError(
            f"cannot resume: the checkpoint was trained with different {', '.join(differ)} "
            f"({', '.join(f'{k}={saved.get(k)!r}' for k in differ)}); use a new run directory"
        )


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _save_weights(model: SwinIR, path: Path) -> None:
    """Params-only fp32 safetensors (what ``--weights`` and the shipped model use), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
