"""Peak memory of an ExecuTorch lowering against the graph's size: the partitioners' node sets vs bitsets.

    python -m benchmarks.lowering_memory --out reports/lowering_memory.md

Each row lowers, in a fresh process, an FP32 SwinIR-light graph for a 64 px tile (full width, one group of
``d`` Swin blocks, seeded random weights) to XNNPACK, its blocks whole or in pieces of 32 windows (twice
the nodes), once with the partitioners' own reachability sets and once with
:mod:`targets.dependency_bitsets`. It records the process's peak RSS, the lowering time and the .pte's
sha256: the bitsets must give the same bytes. With sets, the extra memory of the pieces grows as the
square of the graph; with bitsets it does not.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from targets.latency import json_from_child

DEPTHS = (2, 6, 12)
CHUNK = 32
TILE = 64


def child(depth: int, chunk: int, bitsets: bool) -> dict:
    """Lower one graph in this process; its peak RSS, lowering seconds and .pte sha256."""
    import torch

    import targets.executorch as executorch_target
    from srcore.model import SwinIR, SwinIRConfig
    from targets.base import quiet_tools
    from targets.latency import peak_rss_mb

    if not bitsets:  # the partitioners' own sets
        executorch_target.bitset_dependency_views = contextlib.nullcontext
    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(depths=(depth,), num_heads=(6,))).eval()
    graph = executorch_target.export_graph(model, TILE, chunk or None)
    with tempfile.TemporaryDirectory() as tmp, quiet_tools():
        artifact = Path(tmp) / "model.pte"
        info = executorch_target._lower_tiles({TILE: graph}, artifact)
        digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    return {"peak_rss_mb": round(peak_rss_mb()), "lowering_seconds": info["lowering_seconds"], "sha256": digest}


def run_child(depth: int, chunk: int, bitsets: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.lowering_memory", "--child", str(depth), str(chunk), str(int(bitsets))]
    return json_from_child(command, f"lowering d={depth} chunk={chunk}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the markdown report to write (required)")
    parser.add_argument("--child", nargs=3, type=int, metavar=("DEPTH", "CHUNK", "BITSETS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child[:2], bool(args.child[2]))))
        return
    if args.out is None:
        parser.error("--out is required")
    rows = []
    for depth in DEPTHS:
        runs = {(chunk, bitsets): run_child(depth, chunk, bitsets) for chunk in (0, CHUNK) for bitsets in (False, True)}
        print(depth, json.dumps({f"{c}-{b}": r for (c, b), r in runs.items()}), flush=True)
        rows.append((depth, runs))
    lines = [
        "# ExecuTorch lowering memory: the partitioners' node sets vs bitsets",
        "",
        f"- Command: `python -m benchmarks.lowering_memory {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Host: {platform.machine()} {platform.system()}, {os.cpu_count()} cores; executorch "
        f"{metadata.version('executorch')}, torch {metadata.version('torch')}",
        f"- Graph: FP32 SwinIR-light at a {TILE} px tile, one group of d Swin blocks (seeded random weights, not the "
        f"shipped model: this measures the lowering, not the model), whole or in pieces of {CHUNK} windows; one fresh "
        "process per cell, peak RSS of that process (Python, torch and the graph included).",
        "- 'sets': the partitioners' own `_DependencyViewer`; 'bitsets': `targets/dependency_bitsets.py` (what "
        "`pipeline build` uses).",
        "",
        "| blocks | whole, sets MB | pieces, sets MB | pieces cost, sets | whole, bitsets MB | pieces, bitsets MB "
        "| pieces cost, bitsets | lowering s (pieces: sets / bitsets) | same .pte |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for depth, runs in rows:
        sets_whole, sets_pieces = runs[(0, False)], runs[(CHUNK, False)]
        bits_whole, bits_pieces = runs[(0, True)], runs[(CHUNK, True)]
        same = sets_whole["sha256"] == bits_whole["sha256"] and sets_pieces["sha256"] == bits_pieces["sha256"]
        lines.append(
            f"| {depth} | {sets_whole['peak_rss_mb']} | {sets_pieces['peak_rss_mb']} "
            f"| **+{sets_pieces['peak_rss_mb'] - sets_whole['peak_rss_mb']}** | {bits_whole['peak_rss_mb']} "
            f"| {bits_pieces['peak_rss_mb']} | **+{bits_pieces['peak_rss_mb'] - bits_whole['peak_rss_mb']}** "
            f"| {sets_pieces['lowering_seconds']} / {bits_pieces['lowering_seconds']} | {'yes' if same else '**no**'} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
