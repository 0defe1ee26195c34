"""``build``: FP model + bounds file -> a verified deployment artifact folder (artifact + ``manifest.json``).

The folder is assembled in a hidden temporary sibling and renamed into place only after the
artifact has been lowered, read back and verified, so a failure or Ctrl-C never leaves a
half-written build behind (the temporary folder is removed, a replaced folder restored).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from calibration.bounds import Bounds
from calibration.deploy import deploy_mode_mismatch
from calibration.qmodel import is_quantized
from calibration.quantizer import Quantizer
from calibration.snapping import CONTAINERS, snap_weight_bounds
from pipeline.artifacts import Artifact, artifact_bytes
from pipeline.evaluate import evaluate, fixed_shape_upscaler, model_upscaler
from srcore.checkpoint import file_sha256, weights_sha256
from srcore.data import CropSampler, load_benchmark
from srcore.images import to_tensor
from srcore.model import SwinIR, mirror_pad
from targets import TargetConfig, get_target
from targets.base import deploy_model, export_copy, int8_convolutions, on_integer_grid, size_breakdown, with_offset_rows
from targets.config import ConvWeights, IntGrid
from targets.latency import tile_speeds, versus_baseline

__all__ = ["MANIFEST_VERSION", "BuildChecks", "build", "summary_table"]

MANIFEST_VERSION = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildChecks:
    """What the build measures besides the read-back verification it always does.

    Args:
        score_on: a benchmark folder (e.g. Set5) on which the FP model, the PyTorch simulation of
            the artifact (its tiles via :func:`pipeline.evaluate.fixed_shape_upscaler`) and, when the
            backend runs here, the artifact itself are scored into the manifest; None: no scoring.
        overlap: LR overlap of those tiles (default ``tile // 4``: 16 at the 64 px default).
        threads, runs: for a backend with an FP32 baseline (ExecuTorch, TFLite), the artifact and
            the baseline are timed (median of ``runs`` after warm-up) with each thread count, each in
            a fresh process; ``threads=()`` skips timing. Then every tile size alone, per thread count
            and, for each count n > 1, in n worker processes of one thread (``tile_speed``: ms per tile
            and per output megapixel, peak memory; what ``pipeline upscale`` chooses a tile size and way from).
        baseline_cache: a folder where FP32 baselines are kept and reused (keyed by backend, tool
            versions, the export code, weights and tile); None lowers the baseline every time.
        probe_on: a folder of LR calibration images; ``probe_crops`` seeded crops of the tile size
            go through the backend's :meth:`~targets.base.Target.probe` (Core ML: fp16 headroom).
    """

    score_on: str | os.PathLike | None = None
    overlap: int | None = None
    threads: tuple[int, ...] = ()
    runs: int = 10
    baseline_cache: str | os.PathLike | None = None
    probe_on: str | os.PathLike | None = None
    probe_crops: int = 8

    def __post_init__(self):
        object.__setattr__(self, "threads", tuple(self.threads))
        if self.runs < 1 or any(count < 1 for count in self.threads):
            raise ValueError(f"runs and thread counts must be >= 1, got runs={self.runs}, threads={list(self.threads)}")


def build(model: SwinIR, bounds: Bounds, config: TargetConfig, out: str | os.PathLike, *, force: bool = False,
          checks: BuildChecks = BuildChecks()) -> Artifact:
    """Lower ``model`` with its ``bounds`` to the backend ``config`` names and write ``out/`` (artifact + manifest.json).

    The folder is assembled in a hidden sibling and renamed into place only once the artifact has
    been lowered, read back and verified; with ``force`` an existing ``out`` is kept until then.

    Args:
        model: the FP SwinIR (not modified; a model that still holds quantizers is refused).
        bounds: its bounds file (:func:`pipeline.api.calibrate` or :meth:`Bounds.load`); the weight
            bits come from it.
        config: the backend and its options (:class:`targets.CoreMLConfig`, ``ExecuTorchConfig``, ``TFLiteConfig``).
        out: the folder to create; an existing one is replaced only with ``force``.
        checks: scoring and timing (:class:`BuildChecks`; default: none beyond the read-back).

    Raises:
        TargetError: missing backend package, bits the backend cannot store, or a bad tile.
        BoundsError: the bounds are for another model.
        ValueError: ``model`` holds quantizers (pass the FP model).
        FileExistsError: ``out`` exists and ``force`` is False.
    """
    if is_quantized(model) or any(isinstance(m, Quantizer) for m in model.modules()):
        raise ValueError("build needs the FP model, but this one holds quantizers (it was quantized in place); pass "
                         "the model as loaded: pipeline.api.calibrate(...) returns bounds and leaves the model unchanged")
    bits = bounds.quant_config.weight_bits
    backend = get_target(config, bits)
    mismatch = deploy_mode_mismatch(bounds, backend.deploy_mode)
    if mismatch:
        log.warning("%s", mismatch)
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; choose another --out or pass --force to replace it")
    integer_grid = None
    container = backend.container_for(bits) if backend.container is not None else None
    exact = container is not None and config.int_grid is IntGrid.EXACT
    if container is not None and not exact:
        bounds, integer_grid = snap_weight_bounds(bounds, container)
    deploy, palettized = deploy_model(model, bounds)
    if container is not None:
        deploy, palettized, integer = on_integer_grid(deploy, palettized, *CONTAINERS[container], exact=exact)
        integer_grid = {"int_grid": config.int_grid.value, "container": container, "snapping": integer_grid, **integer}
    convs, conv_weights = [], {"weights": "float, in the artifact's precision"}
    if config.conv_weights is ConvWeights.FP16:
        conv_weights = {"weights": "fp16 filters, widened to the graph's fp32 when the runtime loads the program"}
    elif config.conv_weights is ConvWeights.INT8:
        deploy, convs, conv_weights = int8_convolutions(deploy)
    tile, tiles = config.tile, config.sizes

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        artifact = tmp / f"model{backend.extension}"
        described = backend.lower(deploy, palettized, tile, artifact, convs=convs)
        verification = backend.verify(artifact, palettized, convs=convs)
        described["graph"] = backend.graph_summary(artifact)  # ops by type, highest tensor rank (delegates: <= 4)
        exported = nn.ModuleList([with_offset_rows(export_copy(deploy, size), palettized) for size in tiles])
        sizes = {"artifact": size_breakdown(artifact_bytes(artifact), backend.stored_constants(artifact, palettized),
                                            exported)}
        baseline = None
        if backend.has_baseline:
            baseline = tmp / f"baseline_fp32{backend.extension}"
            described["baseline"] = {"artifact": baseline.name,
                                     **_baseline(backend, model, tile, baseline, checks.baseline_cache)}
            described["baseline"]["artifact_bytes"] = artifact_bytes(baseline)
            described["baseline"]["graph"] = backend.graph_summary(baseline)
            sizes["baseline"] = size_breakdown(artifact_bytes(baseline), backend.stored_constants(baseline, []),
                                               nn.ModuleList([export_copy(model, size) for size in tiles]))
        if checks.score_on is not None:
            verification.update(_scores(backend, model, deploy, artifact, checks.score_on, tiles, checks.overlap))
        probe = None
        if checks.probe_on is not None:
            sampler = CropSampler(lr_folders=[str(checks.probe_on)], scale=model.scale, lr_size=tile, seed=0)
            probe = {"on": Path(checks.probe_on).name, **backend.probe(deploy, sampler.sample_lr(checks.probe_crops))}
            if probe["warning"]:
                log.warning("%s", probe["warning"])
        latency = tile_speed = None
        if baseline and checks.threads:
            latency = _latency(backend.name, artifact, baseline, tile, checks.threads, checks.runs)
            tile_speed = tile_speeds(backend.name, artifact, tiles, model.scale, checks.threads, checks.runs)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "target": backend.name,
            **described,
            "artifact": artifact.name,
            "artifact_bytes": artifact_bytes(artifact),
            "size_breakdown": {"what": "bytes by component (targets.base.size_breakdown)", **sizes},
            "scale": model.scale,
            "tile": tile,
            "tiles": list(tiles),
            "weight_bits": bits,
            "integer_grid": integer_grid,
            "convolutions": {"storage": config.conv_weights.value, **conv_weights},
            "latency": latency,
            "tile_speed": tile_speed,
            "bits_per_tensor": {w.path: w.bits for w in palettized},
            "grids": {w.path: {"quantizers": list(w.quantizers), "lower": w.lowers.tolist(), "upper": w.uppers.tolist()}
                      for w in palettized},
            "weights": {"name": bounds.weights_name, "sha256": weights_sha256(model)},
            "bounds": {"file": bounds.source, "sha256": file_sha256(bounds.source) if bounds.source else None,
                       "method": bounds.method, "quant_config": bounds.quant_config.to_dict()},
            "deploy_mode": {"target": backend.deploy_mode.value, "bounds": bounds.quant_config.deploy.value,
                            "warning": mismatch},
            "tool_versions": backend.tool_versions(),
            "verification": verification,
            "probe": probe,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact(out, manifest)


def _replace_folder(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out``; an old ``out`` is set aside first and removed only after."""
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    if out.exists():
        out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        if old.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _baseline(backend, model: SwinIR, tile: int, path: Path, cache: str | os.PathLike | None) -> dict[str, Any]:
    """Lower the FP32 baseline into ``path``, or copy it from ``cache`` when the same one was lowered before."""
    if cache is None:
        return backend.lower_baseline(model, tile, path)
    # The export and lowering code: the model and every module of the targets package (a backend lowers through
    # its helpers, e.g. ExecuTorch's XNNPACK payload compaction and piecewise partitioner).
    code = [inspect.getfile(SwinIR), *sorted(str(p) for p in Path(inspect.getfile(get_target)).parent.glob("*.py"))]
    key = hashlib.sha256(json.dumps({
        "target": backend.name, "tools": backend.tool_versions(), "weights": weights_sha256(model), "tile": tile,
        "tiles": list(backend.config.sizes), "window_chunk": getattr(backend.config, "window_chunk", None),
        "shared_pieces": getattr(backend.config, "shared_pieces", False),
        "code": [file_sha256(path) for path in code],
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


def _scores(backend, model: SwinIR, deploy, artifact: Path, folder, tiles: tuple[int, ...],
            overlap: int | None) -> dict[str, Any]:
    """PSNR/SSIM on ``folder`` of the FP model, the deploy-mode simulation and (if it runs here) the artifact.

    At the build's own tile (``tiles[0]``) all three; at each further tile size the artifact runs,
    the simulation and the artifact again, under ``tiles``. ``overlap``: None for a quarter of each tile.
    """
    simulation = backend.simulate(deploy)
    scores: dict[str, Any] = {}
    for tile in tiles:
        score = functools.partial(_score, folder=folder, scale=model.scale, tile=tile,
                                  overlap=tile // 4 if overlap is None else overlap)
        entry = {"simulation": {**score(fixed_shape_upscaler(model_upscaler(simulation), tile, model.scale)),
                                "what": backend.simulation}}
        if backend.runtime is not None:
            run = backend.runner(artifact, tile=tile)
            entry["artifact"] = {**score(fixed_shape_upscaler(run, tile, model.scale)), "what": backend.runtime}
            entry["artifact"]["psnr_minus_simulation"] = entry["artifact"]["psnr"] - entry["simulation"]["psnr"]
            entry["artifact"]["max_abs_diff_vs_simulation"] = _max_tile_difference(
                run, model_upscaler(simulation), tile, folder, model.scale)
        if tile == tiles[0]:
            scores.update(fp={**score(fixed_shape_upscaler(model_upscaler(model), tile, model.scale)),
                              "what": "PyTorch fp32, the FP model (no quantization)"}, **entry)
        else:
            scores.setdefault("tiles", {})[str(tile)] = entry
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


def summary_table(result: Artifact) -> str:
    """The few lines ``pipeline build`` prints at the end."""
    m = result.manifest
    v = m["verification"]
    rows = [
        ("artifact", str(result.folder / m["artifact"])),
        ("target", f"{m['target']} ({m.get('deployment_target', '')})"),
        ("input", f"{m['input']['name']} {m['input']['shape']} {m['input']['dtype']}"),
        ("tile sizes", ", ".join(f"{t} px" for t in m.get("tiles", [m["tile"]])) + " (LR; `pipeline upscale` picks one)"),
        ("weights", f"{m['weights']['name']} (sha256 {m['weights']['sha256'][:12]})"),
        ("quantized linears", f"{v['palettized_linears']}/{v['quantized_linears']} palettized, "
                              f"stored as {v['index_dtypes']}, == calibrated grid (read back)"),
        ("convolutions", m.get("convolutions", {}).get("weights", "float")
         + (" == channel grids (read back)" if v.get("int8_convolutions") else "")),
        ("size", f"{m['artifact_bytes'] / 1e6:.2f} MB"),
    ]
    sizes = m.get("size_breakdown", {})
    for key, label in (("artifact", "size by component"), ("baseline", "fp32 baseline by component")):
        if key in sizes:
            rows.append((label, ", ".join(f"{name} {count / 1e3:.1f} KB" for name, count in sizes[key].items() if count)))
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
    for size, entry in v.get("tiles", {}).items():
        if "artifact" in entry:
            a = entry["artifact"]
            rows.append((f"at {size} px", f"artifact {a['dataset']} {a['psnr']:.3f} dB, - simulation "
                                          f"{a['psnr_minus_simulation']:+.4f} dB, max |diff| "
                                          f"{a['max_abs_diff_vs_simulation']['max_abs_8bit_levels']:.2f} of 255"))
    headroom = (m.get("probe") or {}).get("fp16_headroom")
    if headroom:
        worst = min((k for k, v in headroom.items() if isinstance(v, dict)), key=lambda k: headroom[k]["margin"])
        rows.append(("fp16 headroom", f"{headroom['min_margin']:.1f}x below 65504 ({worst.replace('_', ' ')} "
                                      f"{headroom[worst]['max']:.4g}, on {headroom['crops'][0]} calibration crops)"))
    for key, entry in (m.get("latency") or {}).items():
        if key.startswith("threads_"):
            rows.append((f"latency, {key.split('_')[1]} thread(s)",
                         f"{entry['artifact']['median_ms']:.1f} ms vs fp32 {entry['fp32_baseline']['median_ms']:.1f} ms "
                         f"({entry['speedup_vs_fp32']:.2f}x; paired {entry['paired_speedup_median']:.2f}x)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)
