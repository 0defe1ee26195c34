"""Core ML's fp16 headroom: measured on calibration crops, recorded in the manifest, warned about, and fp32 ops on request."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bounds, write_wave_images

from pipeline.build import BuildChecks, build, summary_table
from srcore.model import build_model
from targets import CoreMLConfig
from targets.coreml import FP16_MAX, fp16_headroom

TILE = 16


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("tiny", 2).eval()


def test_headroom_matches_a_direct_computation_and_scales_as_the_arithmetic_says():
    model, crops = _model(), torch.rand(2, 3, TILE, TILE, generator=torch.Generator().manual_seed(0))
    base = fp16_headroom(model, crops)
    # Independent of the hooks: the first LayerNorm's input is the embedded image itself.
    with torch.no_grad():
        tokens = model.conv_first((crops - model.mean) * model.config.img_range)
    first = tokens.flatten(2).transpose(1, 2).pow(2).sum(-1).max().item()
    assert base["layer_norm_sum_of_squares"]["max"] >= first - 1e-4
    assert base["min_margin"] == min(base[k]["margin"] for k in ("layer_norm_sum_of_squares", "attention_logit",
                                                                   "activation"))
    assert base["attention_logit"]["margin"] == pytest.approx(FP16_MAX / base["attention_logit"]["max"])
    with torch.no_grad():  # 30x the embedding: the first LayerNorm's input grows 30x, its sum of squares 900x
        model.conv_first.weight.mul_(30)
        model.conv_first.bias.mul_(30)
    louder = fp16_headroom(model, crops)
    assert louder["layer_norm_sum_of_squares"]["max"] == pytest.approx(900 * first, rel=1e-4)


def test_build_records_the_headroom_and_warns_below_4x(tmp_path, caplog):
    model = _model()
    calib = write_wave_images((tmp_path / "calib").mkdir() or tmp_path / "calib", count=2, height=24, width=24)
    bounds = tiny_bounds(model, 4, TILE)
    artifact = build(model, bounds, CoreMLConfig(tile=TILE), tmp_path / "ok", checks=BuildChecks(probe_on=calib))
    headroom = artifact.manifest["probe"]["fp16_headroom"]
    assert headroom["crops"] == [8, 3, TILE, TILE] and headroom["min_margin"] > 4
    assert artifact.manifest["probe"]["warning"] is None
    assert "fp16 headroom" in summary_table(artifact).splitlines()[-1]
    with torch.no_grad():  # an input embedding 300x too loud: LayerNorm sums of squares beyond 65504 / 4
        model.conv_first.weight.mul_(300)
        model.conv_first.bias.mul_(300)
    bounds = tiny_bounds(model, 4, TILE)
    with caplog.at_level("WARNING", logger="pipeline.build"):
        loud = build(model, bounds, CoreMLConfig(tile=TILE), tmp_path / "loud", checks=BuildChecks(probe_on=calib))
    assert loud.manifest["probe"]["fp16_headroom"]["min_margin"] < 4
    assert "fp16 headroom is only" in loud.manifest["probe"]["warning"]
    assert any("fp32_ops" in r.getMessage() for r in caplog.records)


def test_fp32_ops_keep_layer_norm_and_softmax_in_fp32(tmp_path):
    from coremltools.converters.mil.mil import types

    from targets.coreml_mil import mil_program

    model = _model()
    artifact = build(model, tiny_bounds(model, 4, TILE), CoreMLConfig(tile=TILE, fp32_ops=("layer_norm", "softmax")),
                     tmp_path / "out")
    program, _ = mil_program(artifact.folder / "model.mlpackage")
    ops = list(program.functions["main"].operations)
    dtypes = {op.op_type: types.builtin_to_string(op.outputs[0].dtype) for op in ops
              if op.op_type in ("layer_norm", "softmax", "linear")}
    assert dtypes == {"layer_norm": "fp32", "softmax": "fp32", "linear": "fp16"}
    assert artifact.manifest["fp32_ops"] == ["layer_norm", "softmax"]
    with pytest.raises(ValueError, match="fp32_ops must be a subset"):
        CoreMLConfig(fp32_ops=("gelu",))
