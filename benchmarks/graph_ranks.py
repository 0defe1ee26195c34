"""Ops and tensor ranks of each artifact before and after the rank-4 rewrite (issue 17 goal 4).

    python -m benchmarks.build_at_ref --ref 37f647e --targets executorch tflite coreml \\
        --bounds reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors --out build/before-issue17
    python -m benchmarks.graph_ranks --before build/before-issue17 --after build/integer build/coreml \\
        --out reports/graph_ranks.md

Every ``<target>-w4`` build folder under ``--before`` is paired with the one of the same name under
the ``--after`` folders; both are read with this checkout's ``Target.graph_summary`` (the file's
own ops and tensor shapes, nothing re-exported), artifact and FP32 baseline alike. What the
runtimes refuse is cited in docs/runtime_limits/rank_limits.md: LiteRT's GPU delegate rejects every
op on a tensor of rank >= 5, TRANSPOSE above op version 4 and SLICE outside 3-D/4-D (its own code;
LiteRT's bundled analyzer does not run these checks, so it is not used); Core ML allows rank <= 5
and Apple documents the Neural Engine's layout as 4-D; XNNPACK allows rank <= 6.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

from pipeline.artifacts import load_build
from targets import get_target


def summaries(folder: Path) -> dict[str, dict]:
    """Graph summaries of a build folder's artifact and, when it has one, its FP32 baseline."""
    build = load_build(folder)
    target = get_target(build.target)
    found = {"artifact": target.graph_summary(build.artifact)}
    if build.baseline is not None:
        found["fp32 baseline"] = target.graph_summary(build.baseline)
    return found


def _cell(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="folder of build folders made by the older code")
    parser.add_argument("--after", type=Path, nargs="+", required=True, help="folders of build folders made now")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows, record = [], {}
    for before in sorted(p for p in args.before.iterdir() if (p / "manifest.json").is_file()):
        after = next((folder / before.name for folder in args.after if (folder / before.name / "manifest.json").is_file()),
                     None)
        if after is None:
            raise SystemExit(f"no build folder named {before.name} under {', '.join(map(str, args.after))}")
        old, new = summaries(before), summaries(after)
        record[before.name] = {"before": {"folder": str(before), **old}, "after": {"folder": str(after), **new}}
        for kind in old:
            for when, graph in (("before", old[kind]), ("after", new[kind])):
                graphs = f" in {graph['graphs']} graphs (one per tile size)" if graph.get("graphs", 1) > 1 else ""
                rows.append(f"| {before.name} {kind} | {when} | {sum(graph['ops'].values())}{graphs} | {graph['max_rank']} | "
                            f"{_cell(graph['above_rank_4'])} | {_cell(graph.get('gpu_delegate_rejects', {})) if 'gpu_delegate_rejects' in graph else '-'} |")
    command = f"python -m benchmarks.graph_ranks {shlex.join(sys.argv[1:] if argv is None else argv)}"
    refs = {p.name: json.loads((p / "built_at_ref.json").read_text())["ref"]
            for p in args.before.iterdir() if (p / "built_at_ref.json").is_file()}
    lines = [
        "# Tensor ranks before and after the rank-4 rewrite (issue 17 goal 4)",
        "",
        f"- Command: `{command}`",
        f"- Before: build folders made by the code of commit {', '.join(sorted(set(refs.values()))) or '?'} "
        "(`python -m benchmarks.build_at_ref`); after: this checkout's builds. Weights and bounds: each manifest "
        "(the shipped x4 model; sizes and graphs, not quality claims).",
        f"- Host: {platform.machine()} {platform.system()}; read with each target's `graph_summary` from the files.",
        "- Rules (docs/runtime_limits/rank_limits.md, from the runtimes' code): LiteRT's GPU delegate rejects every op "
        "on a tensor of rank >= 5 (model_builder.cc:3062), TRANSPOSE above op version 4 (:2773) and SLICE whose input "
        "is not 3-D/4-D (gpu_compatibility.cc:968); Core ML allows rank <= 5 (program.py:160) and Apple gives the "
        "Neural Engine's layout as 4-D (no published per-op list); XNNPACK allows rank <= 6 (xnnpack.h:35). LiteRT's "
        "bundled analyzer does not run the delegate's checks (it calls every model compatible), so it is not used.",
        "",
        "| artifact | code | ops | highest tensor rank | ops on a tensor above rank 4 | LiteRT GPU delegate would reject |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "graphs": record}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
