"""Build folders made by the code of an earlier commit: the "before" side of a before/after report.

    python -m benchmarks.build_at_ref --ref 37f647e --targets executorch tflite coreml \\
        --bounds reports/bounds/gpu-h200/x4-w4a4-2dquant.safetensors --out build/before-issue17

A git worktree of ``--ref`` is made under ``build/`` (ignored) and that commit's own
``python -m pipeline build`` runs in it (its code only: ``PYTHONPATH`` is the worktree; the shared
data is found through ``SR2BIT_DATA``), neither scoring nor timing, so each folder holds what that
commit wrote for the shipped weights and the given bounds. Each folder's ``built_at_ref.json`` names
the commit and the command. Existing folders are kept (delete one to rebuild it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from srcore.paths import DATA_ENV_VAR, data_root

ROOT = Path(__file__).resolve().parents[1]


def worktree(ref: str) -> Path:
    """A checkout of ``ref`` under build/ (made once; git keeps it registered until ``git worktree prune``)."""
    commit = subprocess.run(["git", "rev-parse", "--short=12", ref], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    path = ROOT / "build" / f"code-{commit}"
    if not path.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="the commit whose code builds (e.g. the one before a change)")
    parser.add_argument("--targets", nargs="+", default=["executorch", "tflite", "coreml"])
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--bounds", type=Path, required=True, help="bounds file (read from this checkout)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <target>-w<bits> build folders")
    args = parser.parse_args(argv)
    code = worktree(args.ref)
    env = {**os.environ, "PYTHONPATH": str(code), DATA_ENV_VAR: str(data_root())}
    for target in args.targets:
        folder = (args.out / f"{target}-w{args.bits}").resolve()
        if folder.exists():
            print(f"{folder} exists: kept", flush=True)
            continue
        command = [sys.executable, "-m", "pipeline", "build", "--target", target, "--bits", str(args.bits),
                   "--bounds", str(args.bounds.resolve()), "--no-score", "--threads", "--out", str(folder)]
        print(f"{code.name}: {shlex.join(command[1:])}", flush=True)
        subprocess.run(command, cwd=code, env=env, check=True)
        (folder / "built_at_ref.json").write_text(json.dumps(
            {"ref": args.ref, "worktree": code.name, "command": shlex.join(["python", *command[1:]])}, indent=1) + "\n")


if __name__ == "__main__":
    main()
