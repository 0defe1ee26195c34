"""What a user chooses per backend: one frozen, validated config class each, importable without the backend's package.

``build(model, bounds, CoreMLConfig(tile=64), out)`` picks the backend from the config's type, so a
backend name and its options cannot disagree, and a missing ``coremltools`` is reported only when
that backend is used (:func:`targets.get_target`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from calibration.config import coerce_enum

__all__ = ["CoreMLConfig", "ExecuTorchConfig", "Precision", "TFLiteConfig", "TargetConfig"]


FP32_OPS = ("layer_norm", "softmax")  # the Core ML ops that may stay fp32 inside an fp16 program


class Precision(enum.Enum):
    """Core ML's compute precision between ops (activations, convolutions, biases)."""

    FP16 = "fp16"
    FP32 = "fp32"


@dataclass(frozen=True)
class TargetConfig:
    """Options every backend takes.

    Args:
        tile: the fixed LR input side of the artifact (a multiple of the model's window size, 8
            for SwinIR-light); images of any size run through it in overlapping tiles.
    """

    backend: ClassVar[str]
    tile: int = 64

    def __post_init__(self):
        if isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < 8:
            raise ValueError(f"tile must be an integer >= 8 (a multiple of the window size), got {self.tile!r}")


@dataclass(frozen=True)
class CoreMLConfig(TargetConfig):
    """Core ML ML program (.mlpackage, iOS 18 / macOS 15).

    Args:
        compute_precision: precision between ops; fp16 is what the Neural Engine runs.
        compact_constants: store the large derived constants (expanded relative-position bias,
            shift mask) as exact lookup tables; lossless, checked after the fact.
        fp32_ops: MIL op types kept in fp32 inside an fp16 program (``"layer_norm"``, ``"softmax"``):
            the ops whose intermediates (sum of squares, logits) come closest to fp16's 65504.
    """

    backend: ClassVar[str] = "coreml"
    compute_precision: Precision = Precision.FP16
    compact_constants: bool = True
    fp32_ops: tuple[str, ...] = ()

    def __post_init__(self):
        super().__post_init__()
        coerce_enum(self, "compute_precision", Precision)
        if not isinstance(self.compact_constants, bool):
            raise ValueError(f"compact_constants must be True or False, got {self.compact_constants!r}")
        if isinstance(self.fp32_ops, str) or not set(self.fp32_ops) <= set(FP32_OPS):
            raise ValueError(f"fp32_ops must be a subset of {FP32_OPS}, got {self.fp32_ops!r}")
        object.__setattr__(self, "fp32_ops", tuple(self.fp32_ops))


@dataclass(frozen=True)
class ExecuTorchConfig(TargetConfig):
    """ExecuTorch program (.pte) with the XNNPACK delegate: int4 weight codes, dynamic int8 activations."""

    backend: ClassVar[str] = "executorch"


@dataclass(frozen=True)
class TFLiteConfig(TargetConfig):
    """LiteRT / TFLite flatbuffer (.tflite): INT4 FULLY_CONNECTED weights (hybrid kernels)."""

    backend: ClassVar[str] = "tflite"


CONFIGS: dict[str, type[TargetConfig]] = {c.backend: c for c in (CoreMLConfig, ExecuTorchConfig, TFLiteConfig)}
