"""DQC, distillation quantization calibration: train only the bounds (2DQuant §3.3, arXiv 2406.06649).

The FP model teaches its own quantized version: the same module tree run once with quantization
disabled (teacher, no autograd) and once quantized (student); only the ``lower``/``upper`` of every
quantizer receive gradients. The student runs in the deploy mode of its ``QuantConfig``
(:mod:`calibration.deploy`): with ``int8-token`` or ``fp16`` it has only weight quantizers and
its Linears see the runtime's activations, so the weight bounds are tuned for what ships. The loss (2dquant.md §3) is

    L = L1(O_q, O_fp) + lambda * sum_i MSE(F_q,i / ||F_q,i||, F_fp,i / ||F_fp,i||)

over the SR outputs O and the four residual-group (``BasicLayer``) outputs F_i, with per-sample
L2 normalisation whose norm is detached. ``loss_scaling="code"`` reproduces the released code's
extra ``1/numel`` factors (losses ~1e-7, so Adam's eps=1e-8 damps the steps); ``"paper"`` uses the
plain means of Eqs. 4-6. Both models stay in eval mode. A run directory makes the loop resumable.

Under ``torchrun`` (:mod:`srcore.distributed`) each rank distils on its rows of the global batch,
DDP averages the bounds' gradients, and only rank 0 shows progress, selects and writes the
checkpoint; the bounds are those of one process with the same batch, up to float summation order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from calibration.config import _Serializable
from calibration.deploy import deploy_simulation
from calibration.qmodel import quant_config, quantization_disabled, quantizers
from calibration.quantizer import Distribution
from srcore.checkpoint import atomic_torch_save
from srcore.distributed import SINGLE, Distributed
from srcore.model import compiled_blocks

__all__ = ["DQC_PRESETS", "DqcConfig", "DqcResult", "distill_bounds_", "distillation_loss"]

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "constant")
LOSS_SCALINGS = ("code", "paper")


@dataclass(frozen=True)
class DqcConfig(_Serializable):
    """DQC hyper-parameters. Presets: :data:`DQC_PRESETS` (paper, code, cpu).

    Args:
        iterations: optimizer steps.
        batch_size: fresh random LR crops per step.
        learning_rate: Adam learning rate for the bounds (paper and code: 1e-2).
        betas: Adam betas (paper (0.9, 0.999), code (0.9, 0.99)).
        schedule: ``cosine`` (paper) or ``constant`` (the code's MultiStepLR never fires).
        feature_weight: lambda (code: 5).
        loss_scaling: ``code`` or ``paper`` (module docstring).
        lr_patch: LR crop size (64).
        checkpoint_every: steps between resumable checkpoints when a run directory is given.
        select_every: steps between evaluations on the selection folder, if any.
        train_exponential_lower: also train the lower bound of EXPONENTIAL quantizers (fc2 input
            after GELU, and the post-softmax map unless its lower bound is pinned), as the released
            code does. A quantizer with a ``fixed_lower`` (the post-softmax map by default, see
            :func:`calibration.observe.calibrate_`) never trains its lower bound: DQC would raise
            it above 0, which clips the masked (about 0) probabilities of shifted windows up to it
            and leaks attention across the mask. False keeps them where DOBI put them.
        bf16: bf16 autocast for the forwards (CUDA; the quantizers still round on an fp32 grid).
        compile: ``torch.compile`` the Swin blocks (:func:`srcore.model.compiled_blocks`).
    """

    iterations: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    feature_weight: float = 5.0
    loss_scaling: str = "code"
    lr_patch: int = 64
    checkpoint_every: int = 50
    select_every: int = 100
    train_exponential_lower: bool = True
    bf16: bool = False
    compile: bool = False

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("iterations", "batch_size", "lr_patch", "checkpoint_every", "select_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.loss_scaling not in LOSS_SCALINGS:
            raise ValueError(f"loss_scaling must be one of {LOSS_SCALINGS}, got {self.loss_scaling!r}")
        for name in ("train_exponential_lower", "bf16", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")

    def learning_rate_at(self, step: int) -> float:
        if self.schedule == "constant":
            return self.learning_rate
        return 0.5 * self.learning_rate * (1 + math.cos(math.pi * step / self.iterations))


DQC_PRESETS: dict[str, DqcConfig] = {
    # Paper §4.1: batch 32, 3k iterations, cosine, Adam (0.9, 0.999).
    "paper": DqcConfig(iterations=3000, batch_size=32, betas=(0.9, 0.999), schedule="cosine"),
    # Released yml: batch 16, 4k iterations, constant LR, Adam (0.9, 0.99).
    "code": DqcConfig(iterations=4000, batch_size=16, betas=(0.9, 0.99), schedule="constant"),
    # What a 2-core CPU can afford: the paper's recipe, shortened.
    "cpu": DqcConfig(iterations=200, batch_size=4, betas=(0.9, 0.999), schedule="cosine"),
}


@dataclass
class DqcResult:
    """Loss curve (one value per step), the kept step and, with selection, its score."""

    losses: list[float]
    kept_step: int
    selection: str  # "last" or "best PSNR on <folder>"
    selection_psnr: float | None
    wall_s: float


@contextlib.contextmanager
def _residual_group_outputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the (B, L, C) output of every ``layers[i].residual_group`` during forwards."""
    captured: list[torch.Tensor] = []
    handles = [layer.residual_group.register_forward_hook(lambda m, i, o: captured.append(o)) for layer in model.layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def distillation_loss(
    out_q: torch.Tensor, out_fp: torch.Tensor, feats_q: list[torch.Tensor], feats_fp: list[torch.Tensor], config: DqcConfig,
    world_size: int = 1,
) -> torch.Tensor:
    """2DQuant's DQC loss (module docstring); features are (B, L, C).

    ``world_size``: ranks sharing the global batch, B per rank. The code scaling divides the
    feature term by its numel, batch included (quadratic in the batch), so a rank divides by the
    global batch's numel: then DDP's mean over the ranks is the one-process loss of the global batch.
    """
    batch = out_q.shape[0]
    pixel = (out_q - out_fp).abs().mean()
    if config.loss_scaling == "code":
        pixel = pixel / out_q.numel() * batch
    loss = pixel
    for fq, ff in zip(feats_q, feats_fp):
        nq = fq / fq.norm(dim=(1, 2), keepdim=True).detach()
        nf = ff / ff.norm(dim=(1, 2), keepdim=True)
        feature = (nq - nf).pow(2).mean()
        if config.loss_scaling == "code":
            feature = feature / (fq.numel() * world_size)
        loss = loss + config.feature_weight * feature
    return loss


def distill_bounds_(
    model: nn.Module,
    sample_lr: Callable[[int], torch.Tensor],
    config: DqcConfig,
    device: str | torch.device = "cpu",
    run_dir: str | Path | None = None,
    select: Callable[[nn.Module], float] | None = None,
    select_label: str = "",
    progress: bool = True,
    sampler_state: tuple[Callable[[], dict], Callable[[dict], None]] | None = None,
    dist: Distributed = SINGLE,
) -> DqcResult:
    """Train the bounds of a calibrated, quantized ``model`` in place by distillation from itself.

    Args:
        model: after ``quantize_`` and a bound initialisation (DOBI in 2DQuant).
        sample_lr: ``n -> (n, 3, p, p)`` fresh random LR crops in [0, 1] (called once per step);
            under torchrun only this rank's rows ``dist.shard(n)`` of them.
        config: :class:`DqcConfig`.
        device: where to train (CUDA when available is much faster).
        run_dir: if given, ``dqc_state.pt`` there is written every ``checkpoint_every`` steps and on
            Ctrl-C, and an existing one is resumed (same config required).
        select: optional ``model -> PSNR`` evaluated every ``select_every`` steps; the best bounds
            are kept (the paper selects on Set5, a test set: label such results). Without it the
            last step's bounds are kept.
        sampler_state: ``(get_state, set_state)`` of the crop sampler, saved with the checkpoint so
            a resumed run draws the same crops.
        dist: this process's rank under torchrun (:func:`srcore.distributed.process_group`); the
            result is meaningful on rank 0, the only one that selects.

    Returns:
        :class:`DqcResult`.
    """
    device = torch.device(device)
    rows = dist.shard(config.batch_size)
    model.to(device).eval()
    bounds = [
        p
        for q in quantizers(model).values()
        for p in (q.lower, q.upper)
        if not (p is q.lower and (q.fixed_lower is not None or (
            q.distribution is Distribution.EXPONENTIAL and not config.train_exponential_lower)))
    ]
    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in bounds:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(bounds, lr=config.learning_rate, betas=config.betas, weight_decay=0.0)
    state_path = Path(run_dir) / "dqc_state.pt" if run_dir else None
    step, losses, best = 0, [], (-math.inf, 0, None)
    if state_path is not None and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        if saved["config"] != config.to_dict():
            raise ValueError(f"cannot resume {state_path}: it was run with {saved['config']}, not {config.to_dict()}")
        _load_bounds_(model, saved["bounds"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        if sampler_state:
            sampler_state[1](saved["sampler"])
        step, losses, best = saved["step"], saved["losses"], saved["best"]
        log.info("resumed DQC from %s at step %d", state_path, step)
        if saved.get("world_size", 1) != dist.world_size:
            log.warning("%s was written by %d process(es), this run has %d: same crops and updates, but not "
                        "bit-identical (float summation order)", state_path, saved.get("world_size", 1),
                        dist.world_size)
    student = dist.wrap(model)  # after requires_grad and the resume: DDP syncs the bounds from rank 0

    def checkpoint() -> None:
        if state_path is None or not dist.is_main:
            return
        atomic_torch_save({
            "world_size": dist.world_size,
            "config": config.to_dict(), "bounds": _bounds_state(model), "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(), "sampler": sampler_state[0]() if sampler_state else None,
            "step": step, "losses": losses, "best": best,
        }, state_path)

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    start = time.perf_counter()
    bar = tqdm(total=config.iterations, initial=step, desc="DQC", unit="it", disable=not (progress and dist.is_main))
    try:
        # Registered once (no recompiles for hook changes); the student runs in its deploy mode.
        with _residual_group_outputs(model) as feats, deploy_simulation(model, quant_config(model).deploy):
            while step < config.iterations:
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate_at(step)
                lr = sample_lr(config.batch_size).to(device, non_blocking=True)
                if lr.shape[0] != rows.stop - rows.start:
                    raise ValueError(f"sample_lr({config.batch_size}) gave {lr.shape[0]} crops; this rank needs "
                                     f"{rows.stop - rows.start} (rows {rows.start}:{rows.stop} of the global batch)")
                feats.clear()
                with compiled_blocks(model, config.compile):  # per step: selection evaluates other sizes
                    with autocast, torch.no_grad(), quantization_disabled(model):
                        out_fp = model(lr).float()
                    feats_fp = [f.float() for f in feats]
                    feats.clear()
                    with autocast:
                        out_q = student(lr).float()
                    loss = distillation_loss(out_q, out_fp, [f.float() for f in feats], feats_fp, config,
                                             dist.world_size)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # DDP: the bounds' gradients averaged over the ranks here
                optimizer.step()
                _keep_ordered_(model)
                step += 1
                loss_value, stop = dist.end_step(loss)
                losses.append(loss_value)
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3e}")
                if dist.is_main and select is not None and (step % config.select_every == 0 or step == config.iterations):
                    score = select(model)
                    log.info("DQC step %d: selection PSNR %.3f dB", step, score)
                    if score > best[0]:
                        best = (score, step, _bounds_state(model))
                if step % config.checkpoint_every == 0:
                    checkpoint()
                if stop:  # Ctrl-C under torchrun: every rank stops after this same step
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if dist.is_main:
            log.warning("DQC interrupted at step %d", step)
        checkpoint()
        raise
    finally:
        bar.close()
        for p, requires_grad in frozen.items():
            p.requires_grad_(requires_grad)
    checkpoint()
    if select is not None and best[2] is not None:
        _load_bounds_(model, best[2])
        return DqcResult(losses, best[1], f"best PSNR on {select_label}", best[0], time.perf_counter() - start)
    return DqcResult(losses, step, "last", None, time.perf_counter() - start)


def _bounds_state(model: nn.Module) -> dict[str, tuple[float, float]]:
    return {name: (q.lower.item(), q.upper.item()) for name, q in quantizers(model).items()}


def _load_bounds_(model: nn.Module, state: dict[str, tuple[float, float]]) -> None:
    for name, q in quantizers(model).items():
        q.set_bounds_(*state[name])


@torch.no_grad()
def _keep_ordered_(model: nn.Module) -> None:
    """Keep ``lower < upper`` after a step: a collapsed range would make the step size zero.

    One check over all bounds (one device sync), then a fix of the rare crossed pair.
    """
    qs = list(quantizers(model).values())
    gaps = torch._foreach_sub([q.upper for q in qs], [q.lower for q in qs])  # a few fused kernels, not 384
    crossed = torch.stack(gaps).reshape(-1) <= 0
    if not crossed.any():
        return
    for q in (qs[i] for i in crossed.nonzero().reshape(-1).tolist()):
        if q.fixed_lower is not None:  # a pinned lower bound stays exactly where it is
            q.upper.copy_(q.lower + max(abs(q.fixed_lower) * 1e-4, 1e-6))
            continue
        mid = (q.lower + q.upper) / 2
        eps = torch.clamp(mid.abs() * 1e-4, min=1e-6)
        q.lower.copy_(mid - eps)
        q.upper.copy_(mid + eps)
