"""``pipeline profile``: build artifacts measured in their own runtime on this host, against their FP32 baselines.

For each build folder: latency (warm-up, median, p90, min over N runs, peak memory) of the artifact
and of the FP32 artifact of the same backend and graph, interleaved in one fresh process per thread
count (:func:`targets.latency.versus_baseline`); every tile size the artifact runs, alone, in ms per
output megapixel net of the overlap a photo recomputes and peak memory (:func:`targets.latency.tile_speeds`,
what ``pipeline upscale`` chooses from); their ratio beside the paper's theoretical FLOP speed-up
(:func:`pipeline.cost.flop_speedup`), PSNR/SSIM of the artifact on benchmark folders, and the
runtime's per-operator breakdown where it has one (ExecuTorch ETDump). Results go to JSON, a
Markdown table and a PNG chart (latency and PSNR per bit width). Numbers are host numbers: the
same schema is what ``apps/android/profile_android.py`` fills from a phone.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

from pipeline.artifacts import artifact_bytes, load_build
from pipeline.cost import flop_speedup
from pipeline.evaluate import evaluate
from srcore.data import dataset_name
from srcore.model import build_model
from targets.latency import PEAK_RSS_WHAT, tile_speeds, versus_baseline

__all__ = ["SCHEMA_VERSION", "plot_profile", "profile_builds", "to_markdown"]

SCHEMA_VERSION = 1


def profile_build(folder: str | os.PathLike, threads: tuple[int, ...], runs: int, warmup: int,
                  data: list[Path], op_profile: bool = True) -> dict[str, Any]:
    """One build folder's profile record (see the module docstring)."""
    build = load_build(folder)
    if build.baseline is None:
        raise ValueError(f"{folder}: {build.target} builds have no FP32 baseline to compare with; "
                         "Core ML artifacts are profiled on a Mac (apps/ios/profile_coreml.py)")
    latency = versus_baseline(build.target, build.artifact, build.baseline, build.tile, threads, runs, warmup,
                              op_profile=op_profile)
    accuracy = []
    if data:
        upscaler = build.upscaler()
        for result in evaluate(upscaler, data, build.scale, tile=build.tile, overlap=build.tile // 4, progress=False):
            accuracy.append({"dataset": result.dataset, "psnr": result.psnr, "ssim": result.ssim,
                             "images": len(result.images)})
    model = build_model("light", build.scale)
    stored = build.manifest.get("stored_bits", build.bits)
    return {
        "build": str(folder),
        "runtime": {"target": build.target, "tools": build.manifest["tool_versions"], "host": "this machine",
                    "what": "host numbers (x86 CPU), not a phone"},
        "model": {"artifact": str(build.artifact), "artifact_bytes": artifact_bytes(build.artifact),
                  "baseline_bytes": artifact_bytes(build.baseline), "weights": build.manifest["weights"],
                  "weight_bits": build.bits, "stored_bits": stored, "input": build.manifest["input"]},
        "latency": latency,
        "tile_speed": tile_speeds(build.target, build.artifact, build.tiles, build.scale, threads, runs, warmup),
        "theoretical_flop_speedup": {
            "grid_bits": flop_speedup(model, build.bits, (build.tile, build.tile)),
            "stored_bits": flop_speedup(model, stored, (build.tile, build.tile)),
            "what": "2DQuant's ratio: Linear+BMM FLOPs scaled by bits/32, convs and the rest at 32 bits",
        },
        "accuracy": accuracy,
    }


def profile_builds(folders: list[str | os.PathLike], threads: tuple[int, ...] = (1, 2), runs: int = 10,
                   warmup: int = 3, data: list[Path] | None = None, op_profile: bool = True) -> dict[str, Any]:
    """Profile every build folder; ``data``: benchmark folders to score on (none: latency only)."""
    if runs < 1 or warmup < 0 or not threads or any(t < 1 for t in threads):
        raise ValueError(f"need runs >= 1, warmup >= 0 and thread counts >= 1; got {runs}, {warmup}, {list(threads)}")
    for folder in folders:  # every folder checked before the first slow measurement
        load_build(folder)
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"kind": "host", "machine": platform.machine(), "system": platform.system(),
                   "processor": platform.processor() or "unknown", "cores": os.cpu_count()},
        "settings": {"threads": list(threads), "runs": runs, "warmup": warmup,
                     "data": [dataset_name(d) for d in data or []]},
        "profiles": [profile_build(f, threads, runs, warmup, data or [], op_profile) for f in folders],
    }


def to_markdown(report: dict[str, Any], command: str) -> str:
    """The table ``pipeline profile`` prints: one row per build and thread count, then the top operators."""
    s = report["settings"]
    lines = ["# Artifact profile", "", f"- Command: `{command}`",
             f"- Device: {report['device']['kind']} ({report['device']['machine']}, {report['device']['cores']} cores); "
             f"median of {s['runs']} runs after {s['warmup']} warm-up runs; artifact and FP32 baseline interleaved in one "
             "fresh process per thread count (paired: median of the per-round ratios)",
             f"- Peak RSS, artifact (FP32 baseline): {PEAK_RSS_WHAT}",
             "", "| build | backend | bits (stored) | size MB (FP32) | threads | median ms | p90 ms | min ms | FP32 median ms "
             "| speed-up (paired) | FLOP speed-up (grid / stored bits) | peak RSS MB (FP32) | "
             + " | ".join(f"{d} PSNR / SSIM" for d in s["data"]) + " |",
             "|---" * (12 + len(s["data"])) + "|"]
    for p in report["profiles"]:
        m, flops = p["model"], p["theoretical_flop_speedup"]
        scores = " | ".join(f"{a['psnr']:.3f} / {a['ssim']:.4f}" for a in p["accuracy"])
        for key, entry in p["latency"].items():
            a, b = entry["artifact"], entry["fp32_baseline"]
            lines.append(f"| {Path(p['build']).name} | {p['runtime']['target']} | W{m['weight_bits']} ({m['stored_bits']}) | "
                         f"{m['artifact_bytes'] / 1e6:.2f} ({m['baseline_bytes'] / 1e6:.2f}) | {a['threads']} | "
                         f"{a['median_ms']:.1f} | {a['p90_ms']:.1f} | {a['min_ms']:.1f} | {b['median_ms']:.1f} | "
                         f"**{entry['speedup_vs_fp32']:.2f}x** ({entry['paired_speedup_median']:.2f}x) | {flops['grid_bits']:.2f}x / {flops['stored_bits']:.2f}x | "
                         f"{a['peak_rss_mb']:.0f} ({b['peak_rss_mb']:.0f}) | {scores} |")
    lines += ["", "Per tile size, artifact alone (ms per output MP: per tile over the output it adds past its overlap "
              "with the tiles before it, as in a large photo; peak RSS of a process running that size; 'n processes "
              "of 1': n worker processes of one thread each at once, per tile of their throughput, peak PSS of all):",
              "",
              "| build | threads | tile px (overlap) | median ms per tile | ms per output MP | peak RSS MB |",
              "|---|---|---|---|---|---|"]
    for p in report["profiles"]:
        for key, rows in p["tile_speed"].items():
            if key.startswith(("threads_", "workers_")):
                how = key.split("_")[1] + (" processes of 1" if key.startswith("workers_") else "")
                lines += [f"| {Path(p['build']).name} | {how} | {tile} ({r['overlap']}) | "
                          f"{r['median_ms']:.1f} | {r['ms_per_output_mp']:.0f} | {r['peak_rss_mb']:.0f} |"
                          for tile, r in rows.items()]
    for p in report["profiles"]:
        ops = next(iter(p["latency"].values()))["artifact"].get("ops")
        if isinstance(ops, list):
            lines += ["", f"Per operator, {Path(p['build']).name} (ETDump, first thread count, median per run):", "",
                      "| operator | instances | ms |", "|---|---|---|"]
            lines += [f"| {o['op']} | {o['instances']} | {o['median_ms']:.2f} |" for o in ops[:12]]
        elif ops:
            lines += ["", f"Per operator, {Path(p['build']).name}: {ops}"]
    return "\n".join(lines) + "\n"


def plot_profile(report: dict[str, Any], path: Path) -> Path:
    """Latency (artifact vs FP32, per thread count) and PSNR per build; ms per output MP against tile size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = report["profiles"]
    labels = [f"{p['runtime']['target']}\nW{p['model']['weight_bits']}" for p in profiles]
    keys = list(profiles[0]["latency"])
    fig, (left, right, tiles) = plt.subplots(1, 3, figsize=(8 + 1.6 * len(profiles), 4))
    width = 0.8 / (2 * len(keys))
    for i, key in enumerate(keys):
        threads = key.split("_")[1]
        for j, (which, hatch) in enumerate((("artifact", None), ("fp32_baseline", "//"))):
            offset = (2 * i + j - len(keys) + 0.5) * width
            values = [p["latency"][key][which]["median_ms"] for p in profiles]
            left.bar([x + offset for x in range(len(profiles))], values, width, hatch=hatch,
                     label=f"{'int4 artifact' if which == 'artifact' else 'FP32'}, {threads} thread(s)")
    left.set_xticks(range(len(profiles)), labels)
    left.set_ylabel("median latency per tile (ms)")
    left.legend(fontsize=7)
    for d, dataset in enumerate(report["settings"]["data"]):
        right.plot(labels, [p["accuracy"][d]["psnr"] for p in profiles], marker="o", label=dataset)
    right.set_ylabel("PSNR (dB), artifact in its runtime")
    if report["settings"]["data"]:
        right.legend(fontsize=7)
    for p, label in zip(profiles, labels):
        for key, rows in p["tile_speed"].items():
            if key.startswith(("threads_", "workers_")):
                how = f"{key.split('_')[1]} {'processes of 1 thread' if key.startswith('workers_') else 'thread(s)'}"
                tiles.plot([int(t) for t in rows], [r["ms_per_output_mp"] for r in rows.values()], marker="o",
                           label=f"{label.replace(chr(10), ' ')}, {how}")
    tiles.set_xlabel("LR tile side (px)")
    tiles.set_ylabel("ms per output megapixel (overlap counted)")
    tiles.legend(fontsize=7)
    fig.suptitle(f"{report['device']['kind']} {report['device']['machine']}: latency and accuracy per build")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out: Path, command: str) -> list[Path]:
    """``out.json``, ``out.md`` and ``out.png`` (``out`` without suffix)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".json"), out.with_suffix(".md")]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text(to_markdown(report, command))
    return paths + [plot_profile(report, out.with_suffix(".png"))]
