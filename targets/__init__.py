"""sr2bit deployment targets: one module per backend behind one small interface (:mod:`targets.base`).

A backend module defines a module-level ``TARGET`` (:class:`targets.base.Target`). Backends are
imported only when asked for, so a missing optional dependency (coremltools, executorch, litert)
is a clear :class:`MissingDependency` for that backend alone, never an import error elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.util

from targets.base import MissingDependency, Target, TargetError

__all__ = ["BACKENDS", "MissingDependency", "Target", "TargetError", "get_target"]

# target name -> (module, Python packages it needs, pip requirement to print when one is missing)
BACKENDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "coreml": ("targets.coreml", ("coremltools",), "coremltools==9.0"),
    "executorch": ("targets.executorch", ("executorch", "torchao"), "executorch==1.5.1"),
    "tflite": ("targets.tflite", ("litert_torch", "ai_edge_litert"), "litert-torch==0.10.0 ai-edge-litert==2.3.0"),
}


def get_target(name: str) -> Target:
    """The backend called ``name``.

    Raises:
        TargetError: no such backend (the known ones are listed).
        MissingDependency: the backend's package is not installed (the pip command is given).
    """
    if name not in BACKENDS:
        raise TargetError(f"unknown target {name!r}; available: {', '.join(sorted(BACKENDS))}")
    module, packages, requirement = BACKENDS[name]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingDependency(
            f"target {name!r} needs {', '.join(missing)}, which is not installed: pip install {requirement}"
        )
    return importlib.import_module(module).TARGET
