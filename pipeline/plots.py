"""Calibration plots: how much of each tensor lies inside its bounds (2DQuant Fig. 5) and the DQC loss curve.

The coverage of a quantizer is the fraction of the tensor it sees in one FP forward over the
calibration batch that falls inside [lower, upper]; clipping the rest is the price paid for a
finer grid. Plotted per quantizer index, weights and activations apart, before and after DQC.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from calibration.qmodel import quantizers  # noqa: E402
from calibration.quantizer import Role  # noqa: E402

__all__ = ["bounds_coverage", "plot_calibration"]

BoundsTable = dict[str, tuple[float, float]]


@torch.no_grad()
def bounds_coverage(model: nn.Module, lr_batch: torch.Tensor, tables: dict[str, BoundsTable]) -> dict[str, dict[str, float]]:
    """Fraction of each quantizer's FP tensor inside each table's [lower, upper].

    Args:
        model: a quantized SwinIR; its own bounds are not changed.
        lr_batch: (B, 3, H, W) calibration crops.
        tables: label -> {quantizer name: (lower, upper)}.

    Returns:
        label -> {quantizer name: fraction in [0, 1]}.
    """
    coverage: dict[str, dict[str, float]] = {label: {} for label in tables}

    def record(quantizer, x: torch.Tensor) -> None:
        for label, table in tables.items():
            lower, upper = table[quantizer.name]
            coverage[label][quantizer.name] = ((x >= lower) & (x <= upper)).float().mean().item()

    qs = quantizers(model)
    for q in qs.values():
        q.calibrator = record
    try:
        model.eval()(lr_batch.to(next(model.parameters()).device))
    finally:
        for q in qs.values():
            q.calibrator = None
    return coverage


def plot_calibration(model: nn.Module, result, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``bounds_coverage.png`` and, after DQC, ``dqc_loss.png`` into ``out_dir``.

    Args:
        model: the calibrated quantized model.
        result: :class:`pipeline.calibrate.CalibrationResult`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qs = quantizers(model)
    final = {name: (q.lower.item(), q.upper.item()) for name, q in qs.items()}
    if result.dqc is None:
        tables = {result.bounds.method: final}
    else:
        tables = {"before DQC (DOBI)": result.init_bounds, "after DQC": final}
    coverage = bounds_coverage(model, result.calibration_batch, tables)
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharey=True)
    for ax, role in zip(axes, (Role.WEIGHT, Role.ACTIVATION)):
        names = [n for n, q in qs.items() if q.role is role]
        for label, values in coverage.items():
            ax.plot(range(len(names)), [100 * values[n] for n in names], ".", markersize=4, label=label)
        ax.set_title(f"{role.value} quantizers ({len(names)})")
        ax.set_xlabel("quantizer index (block order)")
        ax.set_ylabel("% of tensor inside [l, u]")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Bound coverage on the calibration batch: {result.bounds.quant_config.label}, {result.bounds.method}")
    fig.tight_layout()
    paths = [out_dir / "bounds_coverage.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    if result.dqc is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.semilogy(range(1, len(result.dqc.losses) + 1), result.dqc.losses, linewidth=0.8)
        ax.set_xlabel("DQC step")
        ax.set_ylabel(f"distillation loss ({result.bounds.settings['dqc']['loss_scaling']} scaling)")
        ax.set_title("DQC loss")
        ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        paths.append(out_dir / "dqc_loss.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
