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
import functools
import hashlib
import inspect
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.bounds import Bounds, BoundsError, load_bounds
from calibration.config import QuantConfig
from calibration.snapping import CONTAINERS, snap_weight_bounds
from pipeline.evaluate import evaluate, fixed_shape_upscaler, model_upscaler
from srcore.checkpoint import file_sha256, weights_sha256
from srcore.data import load_benchmark
from srcore.images import to_tensor
from srcore.model import SwinIR, mirror_pad
from targets import TargetError, get_target
from targets.base import deploy_model, on_integer_grid
from targets.latency import versus_baseline

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
    threads: tuple[int, ...] = (1, 2),
    runs: int = 10,
    baseline_cache: str | os.PathLike | None = None,
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
            The FP model is scored the same way, as the reference.
        overlap: LR overlap of those tiles (default ``tile // 4``: 16 at the 64 px default).
        threads, runs: for a backend that runs here and has an FP32 baseline (ExecuTorch, TFLite),
            the artifact and the baseline are timed (median of ``runs`` after warm-up) with each
            thread count, each in a fresh process; ``threads=()`` skips timing.
        baseline_cache: a folder where FP32 baselines are kept and reused (keyed by backend, tool
            versions, the export code, weights and tile); None lowers the baseline every time.

    Raises:
        TargetError: unknown target, missing backend package, unsupported bits or tile.
        BoundsError: the bounds are for another model or another bit width.
        FileExistsError: ``out`` exists and ``force`` is False.
    """
    backend = resolve_target(target, bits)
    if runs < 1 or any(count < 1 for count in threads):
        raise ValueError(f"runs and thread counts must be >= 1, got runs={runs}, threads={list(threads)}")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; choose another --out or pass --force to replace it")
    if bounds is None and bounds_path is not None:
        bounds = load_bounds(bounds_path)
    if bounds is None:
        from pipeline.calibrate import calibrate
        from srcore.paths import calib_dir

        folders = calib_folders or [calib_dir()]
        bounds = calibrate(copy.deepcopy(model), "dobi", QuantConfig(bits, bits), folders,
                           weights_name=weights_name, progress=False).bounds
    if bounds.quant_config.weight_bits != bits:
        raise BoundsError(f"the bounds file quantizes weights to {bounds.quant_config.weight_bits} bits, "
                          f"but --bits {bits} was asked for")
    snapping = integer = None
    if getattr(backend, "container", None):
        bounds, snapping = snap_weight_bounds(bounds, backend.container)
    deploy, palettized = deploy_model(model, bounds)
    if snapping:
        deploy, palettized, integer = on_integer_grid(deploy, palettized, *CONTAINERS[backend.container])

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        artifact = tmp / f"model{backend.extension}"
        described = backend.lower(deploy, palettized, tile, artifact)
        verification = backend.verify(artifact, palettized)
        baseline = None
        if hasattr(backend, "lower_baseline"):
            baseline = tmp / f"baseline_fp32{backend.extension}"
            described["baseline"] = {"artifact": baseline.name, **_baseline(backend, model, tile, baseline, baseline_cache)}
            described["baseline"]["artifact_bytes"] = artifact_bytes(baseline)
        if score_on is not None:
            overlap = tile // 4 if overlap is None else overlap
            verification.update(_scores(backend, model, deploy, artifact, score_on, tile, overlap))
        latency = _latency(backend.name, artifact, baseline, tile, threads, runs) if baseline and threads else None
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "target": backend.name,
            **described,
            "artifact": artifact.name,
            "artifact_bytes": artifact_bytes(artifact),
            "scale": model.scale,
            "tile": tile,
            "weight_bits": bits,
            "integer_grid": {"snapping": snapping, **integer} if snapping else None,
            "latency": latency,
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


def _baseline(backend, model: SwinIR, tile: int, path: Path, cache: str | os.PathLike | None) -> dict[str, Any]:
    """Lower the FP32 baseline into ``path``, or copy it from ``cache`` when the same one was lowered before."""
    if cache is None:
        return backend.lower_baseline(model, tile, path)
    key = hashlib.sha256(json.dumps({
        "target": backend.name, "tools": backend.tool_versions(), "weights": weights_sha256(model), "tile": tile,
        "code": [file_sha256(inspect.getfile(m)) for m in (type(backend), SwinIR)],
    }, sort_keys=True).encode()).hexdigest()[:20]
    cached = Path(cache) / f"baseline-{backend.name}-{key}{backend.extension}"
    described = cached.with_suffix(".json")
    if cached.is_file() and described.is_file():
        shutil.copyfile(cached, path)
        return {**json.loads(described.read_text()), "reused_from": str(cached)}
    info = backend.lower_baseline(model, tile, path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Write, then rename, artifact before description: a half-written entry is never read.
    partial = cached.with_name(f".{cached.name}.{os.getpid()}")
    shutil.copyfile(path, partial)
    os.replace(partial, cached)
    partial = described.with_name(f".{described.name}.{os.getpid()}")
    partial.write_text(json.dumps(info))
    os.replace(partial, described)
    return info


def _scores(backend, model: SwinIR, deploy, artifact: Path, folder, tile: int, overlap: int) -> dict[str, Any]:
    """PSNR/SSIM on ``folder`` of the FP model, the deploy-mode simulation and (if it runs here) the artifact."""
    score = functools.partial(_score, folder=folder, scale=model.scale, tile=tile, overlap=overlap)
    simulation = backend.simulate(deploy) if hasattr(backend, "simulate") else deploy
    scores = {
        "fp": {**score(fixed_shape_upscaler(model_upscaler(model), tile, model.scale)),
               "what": "PyTorch fp32, the FP model (no quantization)"},
        "simulation": {**score(fixed_shape_upscaler(model_upscaler(simulation), tile, model.scale)),
                       "what": getattr(backend, "simulation", "PyTorch fp32, fake-quantized weights, float activations")},
    }
    if hasattr(backend, "runner"):
        run = backend.runner(artifact)
        scores["artifact"] = {**score(fixed_shape_upscaler(run, tile, model.scale)), "what": backend.runtime}
        scores["artifact"]["psnr_minus_simulation"] = scores["artifact"]["psnr"] - scores["simulation"]["psnr"]
        scores["artifact"]["max_abs_diff_vs_simulation"] = _max_tile_difference(
            run, model_upscaler(simulation), tile, folder, model.scale)
    return scores


def _max_tile_difference(artifact_run, simulation_run, tile: int, folder, scale: int) -> dict[str, float]:
    """Largest |artifact - simulation| over the first artifact-sized tile of every image (output in [0, 1])."""
    worst = 0.0
    for pair in load_benchmark(folder, scale):
        lr = mirror_pad(to_tensor(pair.lr), tile)[..., :tile, :tile]
        worst = max(worst, (artifact_run(lr) - simulation_run(lr)).abs().max().item())
    return {"max_abs": worst, "max_abs_8bit_levels": worst * 255}


def _latency(target: str, artifact: Path, baseline: Path, tile: int, threads, runs: int) -> dict[str, Any]:
    return {"input": [1, 3, tile, tile],
            "how": "median of timed runs after warm-up; artifact and baseline interleaved, one fresh process per thread count",
            **versus_baseline(target, artifact, baseline, tile, threads, runs)}


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
                              f"stored as {v['index_dtypes']}, == calibrated grid (read back)"),
        ("size", f"{m['artifact_bytes'] / 1e6:.2f} MB"),
    ]
    if m.get("baseline"):
        base = m["baseline"]["artifact_bytes"]
        rows.append(("fp32 baseline size", f"{base / 1e6:.2f} MB (artifact is {base / m['artifact_bytes']:.2f}x smaller)"))
    for key, label in (("fp", "FP PSNR"), ("simulation", "simulated PSNR"), ("artifact", "artifact PSNR")):
        if key in v:
            r = v[key]
            rows.append((label, f"{r['dataset']} {r['psnr']:.3f} dB / SSIM {r['ssim']:.4f} ({r['what']}; "
                                f"{r['tile']} px tiles, overlap {r['overlap']})"))
    if "artifact" in v and "max_abs_diff_vs_simulation" in v["artifact"]:
        d = v["artifact"]["max_abs_diff_vs_simulation"]
        rows.append(("artifact - simulation", f"{v['artifact']['psnr_minus_simulation']:+.4f} dB, max |diff| "
                                              f"{d['max_abs']:.2e} ({d['max_abs_8bit_levels']:.2f} of 255)"))
    for key, entry in (m.get("latency") or {}).items():
        if key.startswith("threads_"):
            rows.append((f"latency, {key.split('_')[1]} thread(s)",
                         f"{entry['artifact']['median_ms']:.1f} ms vs fp32 {entry['fp32_baseline']['median_ms']:.1f} ms "
                         f"({entry['speedup_vs_fp32']:.2f}x; paired {entry['paired_speedup_median']:.2f}x)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)
