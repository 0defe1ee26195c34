"""The contract every backend follows, and what it receives: the model's weights on their calibrated grids.

A target gets a *deploy model* (the FP SwinIR with every quantized Linear weight replaced by its
fake-quantized value, activations in floating point) plus one :class:`PalettizedWeight` per
quantized Linear (its grid bounds, per row group), and must store those weights so that they
decode to exactly the fake-quantized values. ``lower`` writes the artifact, ``verify`` reads it
back and checks it; :func:`pipeline.build.build` does the rest (temp folder, manifest, rename).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from calibration.bounds import Bounds, apply_bounds_
from calibration.primitives import fake_quantize, grid
from calibration.qmodel import QuantLinear, QuantQKV

__all__ = ["MissingDependency", "PalettizedWeight", "Target", "TargetError", "deploy_model"]


class TargetError(ValueError):
    """A build request a backend cannot satisfy (unknown target, unsupported bits or tile)."""


class MissingDependency(TargetError):
    """The backend's optional Python package is not installed."""


@dataclass(frozen=True)
class PalettizedWeight:
    """One FP Linear's weight on its calibrated grids.

    ``attn.qkv`` holds q, k and v, each with its own quantizer: three equal row groups with their
    own [l, u]. Every other quantized Linear has one group.

    Attributes:
        path: the Linear's module path in the FP model, e.g. ``layers.0.residual_group.blocks.0.attn.qkv``.
        weight: (out, in) float32 fake-quantized weight (every value on its group's grid).
        lowers, uppers: (groups,) float32 bounds, in row order.
        bits: bit width of the grid (2^bits entries).
        quantizers: the bounds-file names of the groups' quantizers.
    """

    path: str
    weight: torch.Tensor
    lowers: torch.Tensor
    uppers: torch.Tensor
    bits: int
    quantizers: tuple[str, ...]

    @property
    def groups(self) -> int:
        return len(self.quantizers)

    def grids(self) -> torch.Tensor:
        """(groups, 2^bits) lookup tables ``l + k (u - l) / (2^bits - 1)``, exactly as the quantizer computes them."""
        return torch.stack([grid(lo, hi, self.bits) for lo, hi in zip(self.lowers, self.uppers)])


def deploy_model(model: nn.Module, bounds: Bounds) -> tuple[nn.Module, list[PalettizedWeight]]:
    """A plain copy of ``model`` whose quantized Linear weights are their fake-quantized values.

    Args:
        model: the FP SwinIR (not modified).
        bounds: its bounds file (checked against the model: weights hash, architecture, names).

    Returns:
        ``(deploy, weights)``: an eval-mode FP32 SwinIR with no quantizer modules, and one
        :class:`PalettizedWeight` per quantized Linear in model order.

    Raises:
        calibration.bounds.BoundsError: the bounds belong to another model.
    """
    quantized = apply_bounds_(copy.deepcopy(model).eval(), bounds)
    weights = []
    for path, module in quantized.named_modules():
        if isinstance(module, QuantQKV):
            parts = [module.q, module.k, module.v]
        elif isinstance(module, QuantLinear) and module.rows is None:
            parts = [module]
        else:
            continue
        with torch.no_grad():
            rows = [fake_quantize(p.linear_weight(), p.weight_quant.lower, p.weight_quant.upper, p.weight_quant.bits)
                    for p in parts]
        quants = [p.weight_quant for p in parts]
        weights.append(PalettizedWeight(
            path=path, weight=torch.cat(rows).detach().float().cpu(),
            lowers=torch.stack([q.lower.detach() for q in quants]).float().cpu(),
            uppers=torch.stack([q.upper.detach() for q in quants]).float().cpu(),
            bits=quants[0].bits, quantizers=tuple(q.name for q in quants),
        ))
    deploy = copy.deepcopy(model).eval()
    with torch.no_grad():
        for w in weights:
            deploy.get_submodule(w.path).weight.copy_(w.weight)
    return deploy, weights


class Target(Protocol):
    """One backend. ``bits``: the weight bit widths it stores exactly; ``extension``: the artifact's suffix."""

    name: str
    extension: str
    bits: tuple[int, ...]

    def lower(self, deploy: nn.Module, weights: list[PalettizedWeight], tile: int, artifact: Path) -> dict[str, Any]:
        """Write the artifact for a fixed (1, 3, tile, tile) input; return what the manifest should say about it."""

    def verify(self, artifact: Path, weights: list[PalettizedWeight]) -> dict[str, Any]:
        """Read the artifact back and check every stored weight against ``weights``; raise if one differs."""

    def tool_versions(self) -> dict[str, str]:
        """Versions of the packages that produced the artifact."""

    # Optional: ``runner(artifact) -> (LR tile -> SR tile)`` executing the artifact on this host, and
    # ``runtime``, a line saying what executes it; the build then scores the artifact itself.
