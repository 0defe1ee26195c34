"""``build``: FP model + bounds file -> a verified deployment artifact folder (artifact + ``manifest.json``).

The folder is assembled in a hidden temporary sibling and renamed into place only after the
artifact has been lowered, read back and verified, so a failure or Ctrl-C never leaves a
half-written build behind (the temporary folder is removed). Without a bounds file the model is
calibrated first (DOBI, the 2DQuant initialisation; DQC needs a GPU to be practical and is run
with ``pipeline calibrate`` beforehand).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.bounds import Bounds, BoundsError, load_bounds
from calibration.config import QuantConfig
from pipeline.checkpoint import file_sha256, weights_sha256
from pipeline.evaluate import evaluate, fixed_shape_upscaler, model_upscaler
from pipeline.model import SwinIR
from targets import TargetError, get_target
from targets.base import deploy_model

__all__ = ["MANIFEST_VERSION", "BuildResult", "artifact_bytes", "build", "resolve_target", "summary_table"]

MANIFEST_VERSION = 1


@dataclass
class BuildResult:
    folder: Path
    manifest: dict[str, Any]


def artifact_bytes(path: Path) -> int:
    """Size of an artifact on disk: a file, or every file in a folder (e.g. an .mlpackage)."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def resolve_target(target: str, bits: int):
    """The backend for ``target`` if it can store ``bits``-bit weights (checked before any slow work).

    Raises:
        TargetError: unknown target, missing backend package or unsupported bits.
    """
    backend = get_target(target)
    if bits not in backend.bits:
        raise TargetError(f"target {target!r} stores {', '.join(map(str, backend.bits))}-bit weights, not {bits!r}")
    return backend


def build(
    model: SwinIR,
    weights_name: str,
    target: str,
    bits: int,
    out: str | os.PathLike,
    *,
    bounds: Bounds | None = None,
    bounds_path: str | os.PathLike | None = None,
    tile: int = 64,
    force: bool = False,
    calib_folders: list[str | os.PathLike] | None = None,
    score_on: str | os.PathLike | None = None,
    overlap: int | None = None,
) -> BuildResult:
    """Lower ``model`` with its bounds to ``target`` and write ``out/`` (artifact + manifest.json).

    Args:
        model: the FP SwinIR (not modified).
        weights_name: how the manifest names the weights.
        target: backend name (:data:`targets.BACKENDS`).
        bits: weight bit width; must match the bounds file and the backend.
        out: the folder to create; an existing one is replaced only with ``force``.
        bounds / bounds_path: the calibration result (a path is also hashed into the manifest);
            with neither, DOBI W<bits>A<bits> bounds are computed from ``calib_folders``.
        tile: fixed LR input side of the artifact.
        score_on: a benchmark folder (e.g. Set5) on which the PyTorch simulation of the artifact
            (fake-quantized weights, float activations, the artifact's tiles via
            :func:`pipeline.evaluate.fixed_shape_upscaler`) and, when the backend can execute it
            here (``runner``), the artifact itself are scored into the manifest.
        overlap: LR overlap of those tiles (default ``tile // 4``: 16 at the 64 px default).

    Raises:
        TargetError: unknown target, missing backend package, unsupported bits or tile.
        BoundsError: the bounds are for another model or another bit width.
        FileExistsError: ``out`` exists and ``force`` is False.
    """
    backend = resolve_target(target, bits)
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; choose another --out or pass --force to replace it")
    if bounds is None and bounds_path is not None:
        bounds = load_bounds(bounds_path)
    if bounds is None:
        from pipeline.calibrate import calibrate
        from pipeline.paths import calib_dir

        folders = calib_folders or [calib_dir()]
        bounds = calibrate(copy.deepcopy(model), "dobi", QuantConfig(bits, bits), folders,
                           weights_name=weights_name, progress=False).bounds
    if bounds.quant_config.weight_bits != bits:
        raise BoundsError(f"the bounds file quantizes weights to {bounds.quant_config.weight_bits} bits, "
                          f"but --bits {bits} was asked for")
    deploy, palettized = deploy_model(model, bounds)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        artifact = tmp / f"model{backend.extension}"
        described = backend.lower(deploy, palettized, tile, artifact)
        verification = backend.verify(artifact, palettized)
        if score_on is not None:
            overlap = tile // 4 if overlap is None else overlap
            simulation = fixed_shape_upscaler(model_upscaler(deploy), tile, model.scale)
            verification["simulation"] = _score(simulation, score_on, model.scale, tile, overlap)
            verification["simulation"]["what"] = "PyTorch fp32, fake-quantized weights, float activations"
            if hasattr(backend, "runner"):
                artifact_run = fixed_shape_upscaler(backend.runner(artifact), tile, model.scale)
                verification["artifact"] = _score(artifact_run, score_on, model.scale, tile, overlap)
                verification["artifact"]["what"] = backend.runtime
                verification["artifact"]["psnr_minus_simulation"] = (
                    verification["artifact"]["psnr"] - verification["simulation"]["psnr"])
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "target": backend.name,
            **described,
            "artifact": artifact.name,
            "artifact_bytes": artifact_bytes(artifact),
            "scale": model.scale,
            "tile": tile,
            "weight_bits": bits,
            "bits_per_tensor": {w.path: w.bits for w in palettized},
            "grids": {w.path: {"quantizers": list(w.quantizers), "lower": w.lowers.tolist(), "upper": w.uppers.tolist()}
                      for w in palettized},
            "weights": {"name": weights_name, "sha256": weights_sha256(model)},
            "bounds": {"file": str(bounds_path) if bounds_path else None,
                       "sha256": file_sha256(bounds_path) if bounds_path else None,
                       "method": bounds.method, "quant_config": bounds.quant_config.to_dict()},
            "tool_versions": backend.tool_versions(),
            "verification": verification,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(out, manifest)


def _score(upscaler, folder, scale: int, tile: int, overlap: int) -> dict[str, Any]:
    """PSNR/SSIM of ``upscaler`` on artifact-sized tiles of ``folder``."""
    (result,) = evaluate(upscaler, [folder], scale, tile=tile, overlap=overlap, progress=False)
    return {"dataset": result.dataset, "psnr": result.psnr, "ssim": result.ssim, "tile": tile, "overlap": overlap}


def summary_table(result: BuildResult) -> str:
    """The few lines ``pipeline build`` prints at the end."""
    m = result.manifest
    v = m["verification"]
    rows = [
        ("artifact", str(result.folder / m["artifact"])),
        ("target", f"{m['target']} ({m.get('deployment_target', '')})"),
        ("input", f"{m['input']['name']} {m['input']['shape']} {m['input']['dtype']}"),
        ("weights", f"{m['weights']['name']} (sha256 {m['weights']['sha256'][:12]})"),
        ("quantized linears", f"{v['palettized_linears']}/{v['quantized_linears']} palettized, "
                              f"indices {v['index_dtypes']}, tables == calibrated grid"),
        ("size", f"{m['artifact_bytes'] / 1e6:.2f} MB"),
    ]
    for key, label in (("simulation", "simulated PSNR"), ("artifact", "artifact PSNR")):
        if key in v:
            r = v[key]
            rows.append((label, f"{r['dataset']} {r['psnr']:.3f} dB / SSIM {r['ssim']:.4f} ({r['what']}; "
                                f"{r['tile']} px tiles, overlap {r['overlap']})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)
