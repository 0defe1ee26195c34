"""Calibration orchestration: FP model + calibration images -> bounds file (MinMax, Percentile, DOBI, 2DQuant).

``2dquant`` is DOBI followed by DQC. The DOBI statistics come from one FP forward over
``num_crops`` seeded random LR crops (the paper: 32 crops of 64x64 from DF2K); DQC draws fresh
crops every step from the same folders with another seed. By default DQC keeps its last step
(no test-set leakage); ``select_on`` picks the best step on a benchmark folder instead, the
paper's protocol, and the bounds file records which.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from calibration.bounds import Bounds, bounds_from_model
from calibration.config import DobiConfig, InitConfig, QuantConfig
from calibration.dqc import DqcConfig, DqcResult, distill_bounds_
from calibration.observe import calibrate_, init_config
from calibration.qmodel import quantize_, quantizers
from pipeline.evaluate import evaluate, model_upscaler
from srcore.data import CropSampler
from srcore.model import SwinIR

__all__ = ["METHODS", "CalibrationResult", "calibrate"]

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "dobi", "2dquant")


@dataclass
class CalibrationResult:
    bounds: Bounds
    dqc: DqcResult | None
    calibration_batch: torch.Tensor  # the (num_crops, 3, p, p) DOBI batch, for coverage plots
    init_bounds: dict[str, tuple[float, float]]  # bounds before DQC


def calibrate(
    model: SwinIR,
    method: str,
    quant: QuantConfig,
    calib_folders: list[str | os.PathLike],
    *,
    weights_name: str,
    init: InitConfig | None = None,
    dqc: DqcConfig | None = None,
    num_crops: int = 32,
    crop_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    run_dir: str | os.PathLike | None = None,
    select_on: str | os.PathLike | None = None,
    progress: bool = True,
) -> CalibrationResult:
    """Quantize ``model`` in place and calibrate its bounds; returns the bounds (not yet saved).

    Args:
        model: FP SwinIR (eval mode); it is quantized in place (weights are not copied or changed).
        method: one of :data:`METHODS`.
        quant: bits of weights and activations.
        calib_folders: folders of LR calibration images (e.g. DF2K LR crops).
        weights_name: name of the FP weights, recorded in the bounds file.
        init: bound initialisation config for ``minmax``/``percentile``/``dobi`` (defaults if None);
            ``2dquant`` uses DOBI (``init`` must then be a DobiConfig or None).
        dqc: DQC config for ``2dquant`` (required there).
        num_crops, crop_size: the DOBI statistics batch.
        seed: seeds the DOBI crops (``seed``) and the DQC crops (``seed + 1``).
        run_dir: DQC checkpoint folder (resumable), or None.
        select_on: benchmark folder for DQC model selection, or None to keep the last step.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed {METHODS}")
    init = init_config(init or ("dobi" if method == "2dquant" else method))
    if method == "2dquant" and not isinstance(init, DobiConfig):
        raise ValueError(f"2dquant initialises with DOBI, got {type(init).__name__}")
    if method == "2dquant" and dqc is None:
        raise ValueError("2dquant needs a DqcConfig")
    model.to(device).eval()
    quantize_(model, quant)
    sampler = CropSampler(lr_folders=[str(f) for f in calib_folders], scale=model.scale, lr_size=crop_size, seed=seed)
    batch = sampler.sample_lr(num_crops)
    log.info("initialising %d-crop bounds with %s", num_crops, type(init).__name__)
    calibrate_(model, init, batch.to(device))
    init_bounds = {name: (q.lower.item(), q.upper.item()) for name, q in quantizers(model).items()}
    settings = {"init": init.to_dict(), "num_crops": num_crops, "crop_size": crop_size,
                "calib_folders": [Path(f).name for f in calib_folders]}
    result = None
    if method == "2dquant":
        dqc_sampler = CropSampler(lr_folders=[str(f) for f in calib_folders], scale=model.scale,
                                  lr_size=dqc.lr_patch, seed=seed + 1)
        select = None
        if select_on is not None:
            def select(m):
                (res,) = evaluate(model_upscaler(m, device), [select_on], model.scale, progress=False)
                return res.psnr
        result = distill_bounds_(
            model, dqc_sampler.sample_lr, dqc, device=device, run_dir=run_dir, select=select,
            select_label=Path(select_on).name if select_on else "", progress=progress,
            sampler_state=(dqc_sampler.state_dict, dqc_sampler.load_state_dict),
        )
        settings["dqc"] = dqc.to_dict()
        settings["selection"] = result.selection
        settings["kept_step"] = result.kept_step
    bounds = bounds_from_model(
        model, method="dobi+dqc" if method == "2dquant" else init.method, settings=settings, seed=seed,
        weights_name=weights_name,
    )
    return CalibrationResult(bounds, result, batch, init_bounds)
