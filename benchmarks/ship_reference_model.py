"""Ship a trained run as the package's default model: weights + a model card whose numbers are measured here.

    python -m benchmarks.ship_reference_model --run-dir runs/swinir-light-x4-cpu --scale 4 \
        --hardware "2-core x86_64 CPU, no GPU"

Copies ``<run-dir>/best.safetensors`` to ``srcore/model_zoo/swinir-light-x<s>-sr2bit.safetensors``
and writes the card next to it from the run's checkpoint config and log, plus Set5/Set14 scores
computed by the same ``evaluate`` call that ``python -m pipeline eval --scale <s>`` makes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from pipeline.evaluate import evaluate, model_upscaler
from srcore.data import list_images
from srcore.paths import REPO_ROOT, benchmark_dir
from srcore.weights import MODEL_ZOO, load_model, shipped_name


def _wall_time_s(log: list[dict]) -> float:
    """Training wall time; logs written before wall time was carried across resumes restart at 0 per session."""
    total = 0.0
    for record, following in zip(log, log[1:] + [None]):
        if following is None or following["wall_s"] < record["wall_s"]:
            total += record["wall_s"]
    return total


def _starting_point(name: str, init: str, scale: int) -> tuple[str, str]:
    """(shell line that recreates the fine-tuning start as ``runs/<name>-start.safetensors``, its params sha256).

    Why: the start is usually the previously shipped file, which shipping overwrites, so the card
    must not name that path: it restores the committed version from git (or, for a file git does
    not hold unchanged, names the params sha256 the start must have).
    """
    path = Path(init).resolve()
    _, info = load_model(path, scale)
    rel = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else None
    git = ["git", "-C", str(REPO_ROOT)]
    commit = rel and subprocess.run([*git, "log", "-1", "--format=%h", "--", rel], capture_output=True, text=True).stdout.strip()
    clean = commit and subprocess.run([*git, "diff", "--quiet", "HEAD", "--", rel]).returncode == 0
    if clean:
        return f"git show {commit}:{rel} > runs/{name}-start.safetensors", info.sha256
    return f"# put the start (params sha256 {info.sha256}, not in git) at runs/{name}-start.safetensors", info.sha256


def _card(name: str, config: dict, log: list[dict], results, info, hardware: str, note: str,
          start: tuple[str, str] | None) -> str:
    last = log[-1]
    vals = [r for r in log if "val_psnr" in r]
    best = max(vals, key=lambda r: r["val_psnr"]) if vals else None
    folders = [Path(f) for f in config["hr_folders"]]
    counts = ", ".join(f"{f.name} ({len(list_images(f, recursive=True))})" for f in folders)
    scale = config["scale"]
    train_cmd = (
        f"python -m pipeline train-fp --run-dir runs/{name} --scale {scale} --steps {config['steps']} "
        f"--batch-size {config['batch_size']} --patch {config['lr_patch']} --lr {config['learning_rate']} "
        f"--warmup {config['warmup_steps']} --seed {config['seed']}"
        + "".join(f" --{flag}" for flag in ("bf16", "compile") if config.get(flag))
        + (f" --init-weights runs/{name}-start.safetensors" if start else "")
        + " --hr " + " ".join(f"$SR2BIT_DATA/train/{f.name}" for f in folders)
    )
    rows = "\n".join(f"| {r.dataset} | x{r.scale} | {r.psnr:.2f} | {r.ssim:.4f} |" for r in results)
    restore = f"{start[0]}\n" if start else ""
    return f"""# {name}

SwinIR-light x{scale} (embed 60, depths 6x4, heads 6, window 8, pixelshuffledirect) trained by sr2bit.
**Not the official SwinIR-light model** (that one scores 32.45 dB on Set5 x4); use `--weights official` for it.

| | |
|---|---|
| weights | `{name}.safetensors`, fp32 params only, params sha256 `{info.sha256}` |
| training data | HR crops from {counts} (`../shared/data/train`; no benchmark image) |
| LR | made on the fly with the MATLAB-compatible bicubic (`srcore.imresize`) |
| starting point | {f"`{Path(config['init_weights']).name}` as it was then, params sha256 `{start[1][:12]}` (fine-tuned)" if start else "random init"} |
| steps | {last['step']} of {config['steps']} (batch {config['batch_size']}, LR patch {config['lr_patch']}, HR patch {config['lr_patch'] * scale}) |
| optimiser | Adam lr {config['learning_rate']} (warm-up {config['warmup_steps']}, cosine to {config['min_learning_rate']}), betas {tuple(config['betas'])}, grad clip {config['grad_clip']}, L1 loss, seed {config['seed']} |
| hardware | {hardware} |
| wall time | {_wall_time_s(log) / 60:.0f} min (up to the last logged step of each session) |
| note | {note or "-"} |
| kept checkpoint | {f"step {best['step']}, best Set5 validation PSNR {best['val_psnr']:.2f} dB (Set5 is also a test set: its number is optimistic by selection)" if best else "last step"} |

## Scores (Y channel, border = scale, uint8 output, mirror padding; `python -m pipeline eval --scale {scale}`)

| dataset | scale | PSNR (dB) | SSIM |
|---|---|---|---|
{rows}

Reference points at x4: bicubic 28.43 / 26.09 dB (Set5 / Set14), official SwinIR-light 32.45 / 28.77 dB.

## Reproduce

```bash
{restore}{train_cmd}
python -m benchmarks.ship_reference_model --run-dir runs/{name} --scale {scale} --hardware "..."
```

Host that measured these scores: {platform.machine()} {platform.system()}, torch {torch.__version__}.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="train-fp run folder (best.safetensors, last.pt, log.jsonl)")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    parser.add_argument("--hardware", required=True, help="what the run trained on, for the card")
    parser.add_argument("--note", default="", help="anything else the card must say about the run")
    args = parser.parse_args(argv)

    name = shipped_name(args.scale)
    config = torch.load(args.run_dir / "last.pt", map_location="cpu", weights_only=False)["config"]
    log = [json.loads(line) for line in (args.run_dir / "log.jsonl").read_text().splitlines()]
    start = _starting_point(name, config["init_weights"], args.scale) if config.get("init_weights") else None
    target = MODEL_ZOO / f"{name}.safetensors"  # read the start (often this file) before overwriting it
    MODEL_ZOO.mkdir(exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(args.run_dir / "best.safetensors", tmp)
    tmp.replace(target)
    model, info = load_model(None, args.scale)
    results = evaluate(model_upscaler(model), [benchmark_dir("Set5"), benchmark_dir("Set14")], args.scale)
    card = _card(name, config, log, results, info, args.hardware, args.note, start)
    (MODEL_ZOO / f"{name}.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
