"""Calibration orchestration: FP model + calibration images -> bounds file (MinMax, Percentile, DOBI, 2DQuant).

``2dquant`` is DOBI followed by DQC. The DOBI statistics come from one FP forward over
``num_crops`` seeded random LR crops (the paper: 32 crops of 64x64 from DF2K); DQC draws fresh
crops every step from the same folders with another seed. By default DQC keeps its last step
(no test-set leakage); ``select_on`` picks the best step on a benchmark folder instead, the
paper's protocol, and the bounds file records which.

Under ``torchrun`` every rank runs the (deterministic) DOBI, DQC is data-parallel
(:func:`calibration.dqc.distill_bounds_`), and the caller writes the bounds on rank 0 only.
"""

from __future__ import annotations

import copy
import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from calibration.bounds import Bounds, bounds_from_model
from calibration.config import (
    DobiConfig,
    InitConfig,
    MinMaxConfig,
    PercentileConfig,
    QuantConfig,
    coerce_enum,
)
from calibration.dqc import DqcConfig, DqcResult, distill_bounds_
from calibration.observe import calibrate_, init_config
from calibration.qmodel import quantize_, quantizers
from pipeline.evaluate import evaluate, model_upscaler
from srcore.data import CropSampler
from srcore.distributed import SINGLE, Distributed
from srcore.model import SwinIR

__all__ = ["CalibrationConfig", "CalibrationResult", "Method", "calibrate", "run_calibration"]

log = logging.getLogger(__name__)


class Method(enum.Enum):
    """How the bounds are found: the paper's baselines, DOBI alone, or 2DQuant (DOBI then DQC)."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    DOBI = "dobi"
    TWODQUANT = "2dquant"


_INIT_TYPES = {Method.MINMAX: MinMaxConfig, Method.PERCENTILE: PercentileConfig, Method.DOBI: DobiConfig,
               Method.TWODQUANT: DobiConfig}


@dataclass(frozen=True)
class CalibrationConfig:
    """Everything that decides the bounds, checked at construction.

    Args:
        method: :class:`Method` (or its value, e.g. ``"dobi"``).
        quant: bits of weights and activations, per-tensor overrides included (:class:`QuantConfig`).
        init: the bound initialisation (a MinMax/Percentile/DobiConfig matching ``method``;
            2DQuant initialises with DOBI); None: that method's defaults.
        dqc: DQC settings, required by 2DQuant (e.g. ``DQC_PRESETS["paper"]``) and refused otherwise.
        num_crops, crop_size: the statistics batch (the paper: 32 LR crops of 64 px).
        seed: seeds the statistics crops (``seed``) and the DQC crops (``seed + 1``).
    """

    method: Method
    quant: QuantConfig = QuantConfig()
    init: InitConfig | None = None
    dqc: DqcConfig | None = None
    num_crops: int = 32
    crop_size: int = 64
    seed: int = 0

    def __post_init__(self):
        coerce_enum(self, "method", Method)
        if not isinstance(self.quant, QuantConfig):
            raise ValueError(f"quant must be a QuantConfig, got {type(self.quant).__name__}")
        expected = _INIT_TYPES[self.method]
        if self.init is None:
            object.__setattr__(self, "init", init_config(expected.method))
        elif type(self.init) is not expected:
            raise ValueError(f"{self.method.value} initialises with a {expected.__name__}, got {type(self.init).__name__}")
        if (self.method is Method.TWODQUANT) != (self.dqc is not None):
            raise ValueError("2dquant needs a DqcConfig (e.g. DQC_PRESETS['paper'])" if self.dqc is None
                             else f"{self.method.value} has no DQC stage; drop dqc or use Method.TWODQUANT")
        for field, minimum in (("num_crops", 1), ("crop_size", 8), ("seed", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")


@dataclass
class CalibrationResult:
    bounds: Bounds
    model: SwinIR  # the quantized, calibrated copy (for coverage plots); the caller's model is untouched
    dqc: DqcResult | None
    calibration_batch: torch.Tensor  # the (num_crops, 3, p, p) statistics batch, for coverage plots
    init_bounds: dict[str, tuple[float, float]]  # bounds before DQC


def calibrate(model: SwinIR, config: CalibrationConfig, data: str | os.PathLike | list[str | os.PathLike],
              **options) -> Bounds:
    """The bounds of ``model`` under ``config``, from the LR images in ``data``; ``model`` is not changed.

    ``options`` are :func:`run_calibration`'s (``weights_name``, ``device``, ``run_dir``, ``select_on``,
    ``progress``, ``dist``).
    """
    return run_calibration(model, config, data, **options).bounds


def run_calibration(
    model: SwinIR,
    config: CalibrationConfig,
    data: str | os.PathLike | list[str | os.PathLike],
    *,
    weights_name: str | None = None,
    device: str | torch.device = "cpu",
    run_dir: str | os.PathLike | None = None,
    select_on: str | os.PathLike | None = None,
    progress: bool = True,
    dist: Distributed = SINGLE,
) -> CalibrationResult:
    """Quantize a copy of ``model`` and calibrate its bounds; returns them (not yet saved) with what plots need.

    Args:
        model: FP SwinIR; not modified (a copy on ``device`` is quantized).
        config: :class:`CalibrationConfig`.
        data: a folder, or folders, of LR calibration images (e.g. DF2K LR crops).
        weights_name: name of the FP weights recorded in the bounds file (default: the name
            :func:`srcore.weights.load_model` gave the model, else ``"unnamed"``).
        run_dir: DQC checkpoint folder (resumable), or None.
        select_on: benchmark folder for DQC model selection, or None to keep the last step.
        dist: this process's rank under torchrun: each rank distils on its rows of every DQC batch.
    """
    calib_folders = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    method, quant, init, dqc, seed = config.method.value, config.quant, config.init, config.dqc, config.seed
    num_crops, crop_size = config.num_crops, config.crop_size
    weights_name = weights_name or getattr(model, "weights_name", None) or "unnamed"
    model = copy.deepcopy(model)
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
            model, lambda n: dqc_sampler.sample_lr(n, dist.shard(n)), dqc, device=device, run_dir=run_dir,
            select=select, select_label=Path(select_on).name if select_on else "", progress=progress,
            sampler_state=(dqc_sampler.state_dict, dqc_sampler.load_state_dict), dist=dist,
        )
        settings["dqc"] = dqc.to_dict()
        settings["selection"] = result.selection
        settings["kept_step"] = result.kept_step
    bounds = bounds_from_model(
        model, method="dobi+dqc" if method == "2dquant" else init.method, settings=settings, seed=seed,
        weights_name=weights_name,
    )
    return CalibrationResult(bounds, model, result, batch, init_bounds)
