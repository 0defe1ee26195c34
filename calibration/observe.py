"""Initialise every quantizer's bounds from one FP forward pass (MinMax, Percentile or DOBI).

As in the released 2DQuant code (https://arxiv.org/abs/2406.06649, §3.2 and its ``calibration()``),
each quantizer gets its statistics from a single fully-FP forward of the model on the calibration
batch (32 random 64x64 LR crops in the paper): quantizers are put in observer mode, so they set
their bounds from the tensor they see and pass it on unchanged. Unlike the released code, the model
runs in eval mode (its DropPath is active during calibration, a quirk).

The initialiser is chosen by the config type (:data:`INITIALIZERS`); adding a method means adding
an entry there, nothing else.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Callable

import torch
from torch import nn

from calibration.config import DobiConfig, InitConfig, MinMaxConfig, PercentileConfig
from calibration.dobi import dobi_init_
from calibration.minmax import minmax_init_
from calibration.percentile import percentile_init_
from calibration.qmodel import is_quantized, quant_config, quantizers
from calibration.quantizer import Quantizer, is_post_softmax

__all__ = ["INITIALIZERS", "calibrate_", "init_config"]

logger = logging.getLogger(__name__)

INITIALIZERS: dict[type, Callable[[Quantizer, torch.Tensor, object], None]] = {
    MinMaxConfig: minmax_init_,
    PercentileConfig: percentile_init_,
    DobiConfig: dobi_init_,
}
_BY_NAME = {cls.method: cls for cls in INITIALIZERS}


def init_config(method: str | InitConfig) -> InitConfig:
    """A method config from a config (returned as is) or a method name (its defaults)."""
    if isinstance(method, tuple(INITIALIZERS)):
        return method
    if isinstance(method, str) and method in _BY_NAME:
        return _BY_NAME[method]()
    raise ValueError(f"unknown bound initialisation {method!r}; allowed {sorted(_BY_NAME)} or one of their configs")


@torch.no_grad()
def calibrate_(model: nn.Module, method: str | InitConfig, lr_batch: torch.Tensor) -> nn.Module:
    """Set the bounds of every quantizer of a quantized ``model`` from one FP forward on ``lr_batch``.

    Args:
        model: a model after :func:`calibration.qmodel.quantize_`.
        method: ``"minmax"``, ``"percentile"``, ``"dobi"`` (defaults) or a :class:`MinMaxConfig`,
            :class:`PercentileConfig` or :class:`DobiConfig`.
        lr_batch: (B, 3, H, W) float LR images in [0, 1] (the paper: B = 32, 64x64 crops).

    With ``QuantConfig.zero_softmax_lower`` (the default), the lower bound of every post-softmax
    quantizer is pinned at exactly 0 (``Quantizer.fixed_lower``; DQC then leaves it there): a
    positive lower bound clips the masked probabilities of shifted windows up to it, so attention
    leaks across the mask. Otherwise it is calibrated like any other bound, as the released code does.

    Returns:
        ``model``, with every quantizer calibrated (training mode restored).

    Raises:
        ValueError: unknown method, no quantizers, a quantizer that saw no data, or a tensor with
            NaN/inf.
    """
    config = init_config(method)
    init = INITIALIZERS[type(config)]
    if not isinstance(lr_batch, torch.Tensor) or lr_batch.dim() != 4 or lr_batch.shape[1] != 3:
        raise ValueError(f"lr_batch must be a (B, 3, H, W) tensor, got {getattr(lr_batch, 'shape', type(lr_batch))}")
    table = quantizers(model)
    if not table:
        raise ValueError("model has no quantizers (call quantize_ first)")
    zero_softmax_lower = quant_config(model).zero_softmax_lower if is_quantized(model) else True
    seen: set[str] = set()
    calibrator = _SharedInputCalibrator(init, config, seen)
    was_training = model.training
    model.eval()
    for quantizer in table.values():
        quantizer.calibrator = calibrator
        quantizer.fixed_lower = 0.0 if zero_softmax_lower and is_post_softmax(quantizer) else None
    start = time.perf_counter()
    try:
        model(lr_batch)
    finally:
        for quantizer in table.values():
            quantizer.calibrator = None
        model.train(was_training)
    missing = [name for name in table if name not in seen]
    if missing:
        raise ValueError(f"{len(missing)} quantizers saw no data in the forward pass: {missing[:5]}")
    for name, quantizer in table.items():
        lo, hi = quantizer.lower.item(), quantizer.upper.item()
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"quantizer {name} got invalid bounds [{lo}, {hi}]")
    logger.info(
        "calibrated %d quantizers with %s on %s in %.1f s (%d shared inputs reused)",
        len(table),
        config.method,
        tuple(lr_batch.shape),
        time.perf_counter() - start,
        calibrator.reused,
    )
    return model


class _SharedInputCalibrator:
    """Calls the initialiser, reusing its result when the same tensor comes again with the same settings.

    The q, k and v input quantizers receive the identical LN1 output; searching it once instead of
    three times saves 2 of ~9 large searches per block. The cache holds weak references, so a
    freed tensor whose memory is reused is never mistaken for the old one.
    """

    def __init__(self, init: Callable, config: object, seen: set[str]):
        self.init, self.config, self.seen = init, config, seen
        self.cache: dict[int, tuple[weakref.ref, int, tuple, float, float]] = {}
        self.reused = 0

    def __call__(self, quantizer: Quantizer, x: torch.Tensor) -> None:
        key = (quantizer.bits, quantizer.role, quantizer.distribution, quantizer.fixed_lower, tuple(x.shape))
        hit = self.cache.get(id(x))
        if hit is not None and hit[0]() is x and hit[1] == x._version and hit[2] == key:
            quantizer.set_bounds_(hit[3], hit[4])
            self.reused += 1
        else:
            self.init(quantizer, x, self.config)
            self.cache = {i: entry for i, entry in self.cache.items() if entry[0]() is not None}
            self.cache[id(x)] = (weakref.ref(x), x._version, key, quantizer.lower.item(), quantizer.upper.item())
        self.seen.add(quantizer.name)
