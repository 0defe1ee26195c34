"""The shipped reference model: present, small, strict-loading, and its card matches `pipeline eval`."""

from __future__ import annotations

import re

from pipeline.cli import main
from srcore.weights import MODEL_ZOO, shipped_name, shipped_weights_path


def _card_psnr(dataset: str) -> float:
    card = (MODEL_ZOO / f"{shipped_name(4)}.md").read_text()
    match = re.search(rf"^\| {dataset} \| x4 \| ([0-9.]+) \| ([0-9.]+) \|$", card, re.MULTILINE)
    assert match, f"no {dataset} row in the model card"
    return float(match.group(1))


def test_shipped_weights_are_small():
    assert shipped_weights_path(4).stat().st_size < 4 * 1024 * 1024


def test_default_eval_uses_shipped_model_and_matches_card(data_dir, capsys):
    """Full-size check: `pipeline eval --scale 4` (no --weights) on Set5 reproduces the card's number."""
    assert main(["eval", "--scale", "4", "--data", str(data_dir / "benchmark/Set5"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"weights: {shipped_name(4)} (shipped, x4" in out
    row = next(line for line in out.splitlines() if line.startswith("| Set5 |"))
    assert float(row.split("|")[4]) == _card_psnr("Set5")
