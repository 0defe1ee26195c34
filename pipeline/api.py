"""sr2bit from Python: the names a user needs, importable from one place.

    from pipeline.api import CalibrationConfig, ExecuTorchConfig, Method, QuantConfig, build, calibrate, load_model

    model, _ = load_model(None, scale=4)                       # the shipped x4 weights (or a .pth/.safetensors)
    bounds = calibrate(model, CalibrationConfig(Method.DOBI, QuantConfig(4, 4)), "calib/DF2K_LR_bicubic/X4")
    bounds.save("x4-w4.safetensors")                            # Bounds.load(...) reads it back
    artifact = build(model, bounds, ExecuTorchConfig(tile=64), "build/x4-w4")
    sr = artifact.run(lr_tile)                                  # (1, 3, 64, 64) in [0, 1] -> (1, 3, 256, 256)

``calibrate`` leaves the model unchanged; ``build`` refuses a model that holds quantizers. Every
config is a frozen dataclass checked when it is made. The README's "From Python" section shows the
same lines, and tests/test_api.py runs them.
"""

from calibration.bounds import Bounds
from calibration.config import (
           DobiConfig,
           DobiVariant,
           MinMaxConfig,
           PercentileConfig,
           QuantConfig,
)
from calibration.dqc import DQC_PRESETS, DqcConfig
from pipeline.artifacts import Artifact, load_build
from pipeline.build import BuildChecks, build
from pipeline.calibrate import CalibrationConfig, Method, calibrate
from srcore.weights import load_model
from targets.config import CoreMLConfig, ExecuTorchConfig, Precision, TFLiteConfig

__all__ = ["DQC_PRESETS", "Artifact", "Bounds", "BuildChecks", "CalibrationConfig", "CoreMLConfig", "DobiConfig",
           "DobiVariant", "DqcConfig", "ExecuTorchConfig", "Method", "MinMaxConfig", "PercentileConfig", "Precision",
           "QuantConfig", "TFLiteConfig", "build", "calibrate", "load_build", "load_model"]
