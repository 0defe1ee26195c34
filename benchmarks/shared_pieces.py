"""ExecuTorch with equal Swin-block pieces stored once (``shared_pieces``) against one partition per method.

    python -m pipeline build --target executorch --bits 4 --bounds B --shared-pieces --out build/pieces-w4
    python -m pipeline build --target executorch --bits 4 --bounds B --no-shared-pieces --no-score --out build/onepart-w4
    python -m benchmarks.shared_pieces --pieces build/pieces-w4 --one-partition build/onepart-w4 \\
        --out reports/shared_pieces.md

Sizes from both build manifests; latency paired at each tile size the artifacts share (fresh processes, runs
interleaved, :func:`targets.latency.versus_baseline` with the one-partition .pte as the baseline).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path

from pipeline.artifacts import load_build
from targets.latency import versus_baseline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pieces", type=Path, required=True, help="build folder made with --shared-pieces")
    parser.add_argument("--one-partition", type=Path, required=True, help="the same build with --no-shared-pieces")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    pieces, plain = load_build(args.pieces), load_build(args.one_partition)
    lines = [
        "# ExecuTorch: equal Swin-block pieces stored once (`--shared-pieces`) vs one partition per method",
        "",
        f"- Command: `python -m benchmarks.shared_pieces {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- Host: {platform.machine()} Linux, the builds' weights: {pieces.manifest['weights']['name']} "
        f"(sha256 {pieces.manifest['weights']['sha256'][:12]}); sizes, not quality claims.",
        "",
        "| build | .pte bytes | graph and metadata bytes | XNNPACK calls in the larger method | graphs stored |",
        "|---|---|---|---|---|",
    ]
    for label, build in (("shared pieces", pieces), ("one partition per method", plain)):
        m = build.manifest
        lines.append(f"| {label} (`{build.folder}`) | {m['artifact_bytes']:,} | "
                     f"{m['size_breakdown']['artifact']['graph and metadata']:,.0f} | {m['xnnpack_partitions']} | "
                     f"{m.get('xnnpack_graphs_stored', '-')} |")
    lines += ["", "| tile px | threads | shared pieces median ms | one partition median ms | one / shared, paired | "
              "peak RSS MB (shared / one) |", "|---|---|---|---|---|---|"]
    for tile in pieces.manifest["tiles"]:
        table = versus_baseline("executorch", pieces.artifact, plain.artifact, tile, tuple(args.threads), runs=args.runs)
        for count in args.threads:
            r = table[f"threads_{count}"]
            lines.append(f"| {tile} | {count} | {r['artifact']['median_ms']:.1f} | {r['fp32_baseline']['median_ms']:.1f} | "
                         f"**{r['paired_speedup_median']:.3f}x** | {r['artifact']['peak_rss_mb']:.0f} / "
                         f"{r['fp32_baseline']['peak_rss_mb']:.0f} |")
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
