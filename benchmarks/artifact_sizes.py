"""Artifact bytes by component for every runtime and bit width, against the floor and the FP32 artifact built the same way.

    python -m benchmarks.artifact_sizes --bounds 4=reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors \\
        3=reports/bounds/gpu-h200/x4-w3a3-2dquant.safetensors 2=reports/bounds/gpu-h200/x4-w2a2-dobi.safetensors \\
        --out reports/artifact_sizes.md

Each quantized row is a real ``pipeline build`` (lowered, read back and verified exactly, no scoring
or timing); its breakdown is the manifest's ``size_breakdown`` (:func:`targets.base.size_breakdown`).
The FP32 row of ExecuTorch and TFLite is the build's own FP32 baseline; Core ML's is the same
conversion with FP32 weights and compute (and FP16, the default precision, beside it). "Before" sizes
come from the manifests of the builds before issue 16 (``--previous``, reports/integer_targets_before_issue16.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from calibration.bounds import load_bounds
from pipeline.artifacts import artifact_bytes
from pipeline.build import BuildChecks, build
from pipeline.cost import quantized_weight_count
from srcore.checkpoint import file_sha256
from srcore.weights import load_model
from targets import CoreMLConfig, ExecuTorchConfig, TFLiteConfig, get_target, tool_versions
from targets.base import SIZE_COMPONENTS, export_copy, size_breakdown
from targets.config import Precision

CONFIGS = {"coreml": CoreMLConfig, "executorch": ExecuTorchConfig, "tflite": TFLiteConfig}


def floor_bytes(model, bits: int) -> int:
    """The quantized linears' weights at ``bits`` bits each, nothing else: what no format can go below."""
    return quantized_weight_count(model) * bits // 8


def coreml_float(model, tile: int, precision: Precision, path: Path) -> dict:
    """Core ML conversion of the FP model at ``precision`` (weights and compute), with its breakdown."""
    target = get_target(CoreMLConfig(tile=tile, compute_precision=precision, conv_weights="float"))
    target.lower(model, [], tile, path)
    return {"artifact_bytes": artifact_bytes(path),
            "size_breakdown": size_breakdown(artifact_bytes(path), target.stored_constants(path, []), export_copy(model, tile))}


def chart(rows: list[dict], path: Path) -> None:
    """Stacked bars of each row's components (KB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    labels = [r["label"] for r in rows]
    bottom = [0.0] * len(rows)
    for component in SIZE_COMPONENTS:
        values = [r["sizes"][component] / 1e3 for r in rows]
        ax.bar(labels, values, bottom=bottom, label=component)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("KB")
    ax.set_title("Artifact bytes by component (SwinIR-light x4, 64 px tile)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def reusable(folder: Path, name: str, bits: str, bounds: str, tile: int) -> dict | None:
    """The manifest of ``folder/<name>-w<bits>`` if it was built from ``bounds`` at ``tile`` with today's tools and
    today's default convolution storage."""
    path = folder / f"{name}-w{bits}" / "manifest.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    convs = m.get("convolutions") or {}  # no entry: built as floats; no "storage": before fp16 filters, float or int8
    stored = convs.get("storage", "int8" if convs.get("weights", "float").startswith("int8") else "float")
    same = (m["bounds"]["sha256"] == file_sha256(bounds) and m["tile"] == tile
            and stored == CONFIGS[name]().conv_weights.value  # what a build with default options stores today
            and m["tool_versions"] == get_target(name).tool_versions())
    return {**m, "reused": str(path.parent)} if same else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", nargs="+", required=True, metavar="BITS=FILE", help="one bounds file per bit width")
    parser.add_argument("--targets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--previous", type=Path, default=Path("reports/integer_targets_before_issue16.json"),
                        help="manifests of the builds before issue 16 (ExecuTorch/TFLite): reports/integer_targets.json "
                             "as benchmarks.integer_targets wrote it before the size work, kept unchanged")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="a folder of builds made in the same run by the same code (benchmarks.integer_targets "
                             "--builds): a build <target>-w<bits> there made from the same bounds file, tile and tool "
                             "versions is read instead of built again (its build time is then not shown)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model, info = load_model(None, 4)
    previous = json.loads(args.previous.read_text()) if args.previous.is_file() else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.targets:
            fp32 = None
            if name == "coreml":
                for precision in (Precision.FP32, Precision.FP16):
                    start = time.perf_counter()
                    entry = coreml_float(model, args.tile, precision, Path(tmp) / f"coreml-{precision.value}.mlpackage")
                    rows.append({"target": name, "label": f"{name} FP ({precision.value})", "bits": None,
                                 "bytes": entry["artifact_bytes"], "sizes": entry["size_breakdown"],
                                 "seconds": time.perf_counter() - start})
                    fp32 = fp32 or entry["artifact_bytes"]
            for item in args.bounds:
                bits, path = item.split("=", 1)
                start = time.perf_counter()
                m = reusable(args.reuse, name, bits, path, args.tile) if args.reuse else None
                if m is None:
                    m = build(model, load_bounds(path), CONFIGS[name](tile=args.tile), Path(tmp) / f"{name}-w{bits}",
                              checks=BuildChecks(baseline_cache=Path(tmp) / "baselines")).manifest
                if "baseline" in m["size_breakdown"] and fp32 is None:
                    fp32 = m["baseline"]["artifact_bytes"]
                    rows.append({"target": name, "label": f"{name} FP32", "bits": None, "bytes": fp32,
                                 "sizes": m["size_breakdown"]["baseline"], "seconds": None})
                before = previous.get(f"{name}-w{bits}", {})
                rows.append({"target": name, "label": f"{name} W{bits}", "bits": int(bits), "bytes": m["artifact_bytes"],
                             "reused": m.get("reused"),
                             "sizes": m["size_breakdown"]["artifact"],
                             "seconds": None if m.get("reused") else time.perf_counter() - start,
                             "verified": m["verification"]["index_dtypes"], "bounds": Path(path).name,
                             "before": before.get("artifact_bytes"),
                             "fp32_before": before.get("baseline", {}).get("artifact_bytes")})
            for r in rows:
                if r["target"] == name:
                    r["fp32"] = fp32
    tools = tool_versions(args.targets)
    lines = [
        "# Artifact sizes by component (issue 16)",
        "",
        f"- Command: `python -m benchmarks.artifact_sizes {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Weights: {info.describe()} (the shipped model is weak: these are sizes, not quality claims); "
        f"bounds: {', '.join(args.bounds)}",
        f"- Host: {platform.machine()} {platform.system()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"tools: {', '.join(f'{k} {v}' for k, v in sorted(tools.items()))}",
        f"- Input: one {args.tile}x{args.tile} LR tile. Every quantized row is a `pipeline build` whose stored weights "
        "were read back and matched the calibrated grid exactly (column 'stored as').",
        "- Components: `targets.base.size_breakdown` sorts every stored constant by what it holds (quantized linears' "
        "codes or indices and their scales or tables by the backend; others by value against the exported model); "
        "'graph and metadata' is the rest of the file (op list, names, alignment).",
        f"- Floor: the {quantized_weight_count(model):,} quantized linear weights at b bits and nothing else.",
        "- 'vs FP32': the FP32 artifact of the same runtime and graph layout / this one; 'before': the size of the same "
        f"build before issue 16's size work (`{args.previous}`; Core ML: see reports/coreml_build.md).",
        *(["- Read from this run's builds (`--reuse`, same bounds, tile and tools; no build time): "
           + ", ".join(sorted({Path(r['reused']).name for r in rows if r.get('reused')}))]
          if any(r.get("reused") for r in rows) else []),
        "",
        "| artifact | total KB | " + " | ".join(SIZE_COMPONENTS) + " | floor KB | vs FP32 | before KB (vs FP32 before) | stored as | build s |",
        "|---|" + "---|" * (len(SIZE_COMPONENTS) + 6),
    ]
    for r in rows:
        floor = f"{floor_bytes(model, r['bits']) / 1e3:.0f}" if r["bits"] else "–"
        before = "–"
        if r.get("before"):
            before = f"{r['before'] / 1e3:.0f} ({r['fp32_before'] / r['before']:.2f}x)"
        lines.append(f"| {r['label']} | **{r['bytes'] / 1e3:.0f}** | "
                     + " | ".join(f"{r['sizes'][c] / 1e3:.1f}" for c in SIZE_COMPONENTS)
                     + f" | {floor} | {r['fp32'] / r['bytes']:.2f}x | {before} | {r.get('verified', '–')} | "
                     + (f"{r['seconds']:.0f}" if r["seconds"] is not None else "–") + " |")
    png = args.out.with_suffix(".png")
    chart(rows, png)
    lines += ["", f"![bytes by component]({png.name})", ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
