"""sr2bit deployment targets: one module per backend behind one interface (:class:`targets.base.Target`).

A backend is chosen by its config (:mod:`targets.config`: ``CoreMLConfig``, ``ExecuTorchConfig``,
``TFLiteConfig``) or its name. Backend modules are imported only when asked for, so a missing
optional dependency (coremltools, executorch, litert) is a clear :class:`MissingDependency` for
that backend alone, never an import error elsewhere: that is why :func:`get_target` imports them
with ``importlib`` instead of at the top of this file.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

from targets.base import MissingDependency, Target, TargetError
from targets.config import (
    CONFIGS,
    CoreMLConfig,
    ExecuTorchConfig,
    Precision,
    TargetConfig,
    TFLiteConfig,
)

__all__ = ["BACKENDS", "CoreMLConfig", "ExecuTorchConfig", "MissingDependency", "Precision", "TFLiteConfig", "Target",
           "TargetConfig", "TargetError", "get_target", "tool_versions"]

# target name -> (module.Class, Python packages it needs, pip requirement to print when one is missing)
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "coreml": ("targets.coreml.CoreMLTarget", ("coremltools",), "coremltools==9.0"),
    "executorch": ("targets.executorch.ExecuTorchTarget", ("executorch", "torchao"), "executorch==1.5.1"),
    "tflite": ("targets.tflite.TFLiteTarget", ("litert_torch", "ai_edge_litert"),
               "litert-torch==0.10.0 ai-edge-litert==2.3.0"),
}


def get_target(target: str | TargetConfig, bits: int | None = None) -> Target:
    """The backend for a config (with its options) or a name (with default options).

    Args:
        target: a :class:`TargetConfig` or a backend name.
        bits: when given, the backend must store ``bits``-bit weights (checked before any slow work).

    Raises:
        TargetError: no such backend (the known ones are listed), or unsupported bits.
        MissingDependency: the backend's package is not installed (the pip command is given).
    """
    config = target if isinstance(target, TargetConfig) else None
    name = config.backend if config is not None else target
    if name not in BACKENDS:
        raise TargetError(f"unknown target {name!r}; available: {', '.join(sorted(BACKENDS))}")
    path, packages, requirement = BACKENDS[name]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingDependency(
            f"target {name!r} needs {', '.join(missing)}, which is not installed: pip install {requirement}"
        )
    module, cls = path.rsplit(".", 1)
    backend = getattr(importlib.import_module(module), cls)(config or CONFIGS[name]())
    if bits is not None and bits not in backend.bits:
        raise TargetError(f"target {name!r} stores {', '.join(map(str, backend.bits))}-bit weights, not {bits!r}")
    return backend


def tool_versions(targets: Iterable[str]) -> dict[str, str]:
    """The package versions the named backends run with, merged into one mapping (for a report's header)."""
    versions: dict[str, str] = {}
    for name in targets:
        versions.update(get_target(name).tool_versions())
    return versions
