"""`pipeline build --target coreml`: exact lookup tables, the manifest, atomic output, clear errors (tiny model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_bounds

from calibration.bounds import BoundsError, load_bounds, save_bounds
from calibration.primitives import dequantize, quantize
from pipeline.build import BuildChecks, build
from pipeline.cli import main
from srcore.model import build_model
from targets import (
    CoreMLConfig,
    MissingDependency,
    TargetError,
    TFLiteConfig,
    get_target,
)

TILE = 16


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny", 2).eval()


def _bounds(model, bits):
    return tiny_bounds(model, bits, TILE)


@pytest.mark.parametrize("bits", [4, 3, 2])
def test_lookup_tables_are_the_calibrated_grid(tiny, tmp_path, bits):
    from coremltools.converters.mil.mil import types
    from coremltools.optimize._utils import lut_to_dense

    from targets.coreml import mil_program

    bounds = _bounds(tiny, bits)
    result = build(tiny, bounds, CoreMLConfig(tile=TILE), tmp_path / "out")
    program, _ = mil_program(result.folder / "model.mlpackage")
    luts = {op.name: op for op in program.functions["main"].operations  # parameters; others: compacted bias/mask
            if op.op_type == "constexpr_lut_to_dense" and op.name.startswith("p_")}
    linears = [(n, m) for n, m in tiny.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(luts) == len(linears) == result.manifest["verification"]["palettized_linears"]
    for name, linear in linears:
        # Independent of the build code: quantize each row group with its bounds-file entry.
        prefix, op = name.rsplit(".", 1)
        parts = ["q", "k", "v"] if op == "qkv" else [op]
        w = linear.weight.detach().view(len(parts), -1, linear.in_features)
        expected, grids = [], []
        for part, rows in zip(parts, w):
            entry = bounds.quantizers[f"{prefix}.{part}.weight"]
            lo, hi = torch.tensor(entry.lower), torch.tensor(entry.upper)
            expected.append(dequantize(quantize(rows, lo, hi, bits), lo, hi, bits))
            grids.append(lo + torch.arange(2**bits, dtype=torch.float64) * (float(hi) - float(lo)) / (2**bits - 1))
        (lut_op,) = [op for key, op in luts.items() if key.startswith("p_" + name.replace(".", "_") + "_weight")]
        dense = lut_to_dense(lut_op.indices.val, lut_op.lut.val, None)
        np.testing.assert_array_equal(dense, torch.cat(expected).numpy().astype(np.float16))
        table = lut_op.lut.val.reshape(len(parts), 2**bits).astype(np.float64)
        np.testing.assert_allclose(table, torch.stack(grids).numpy(), rtol=1e-3, atol=1e-6)  # fp16 table
        assert types.builtin_to_string(lut_op.indices.dtype) == f"uint{bits}"


def test_manifest_describes_the_artifact(tiny, tmp_path):
    bounds_file = save_bounds(_bounds(tiny, 4), tmp_path / "b.safetensors")
    result = build(tiny, load_bounds(bounds_file), CoreMLConfig(tile=TILE), tmp_path / "out")
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest == result.manifest
    for key in ("target", "deployment_target", "input", "output", "scale", "tile", "bits_per_tensor", "weights",
                "bounds", "artifact_bytes", "tool_versions", "verification", "grids", "compacted_constants"):
        assert key in manifest, key
    assert manifest["input"]["shape"] == [1, 3, TILE, TILE] and manifest["output"]["shape"] == [1, 3, 2 * TILE, 2 * TILE]
    assert manifest["input"]["dtype"] == manifest["output"]["dtype"] == "float16"  # read from the saved spec
    assert len(manifest["bits_per_tensor"]) == 16 and set(manifest["bits_per_tensor"].values()) == {4}
    assert len(manifest["bounds"]["sha256"]) == 64 and len(manifest["weights"]["sha256"]) == 64
    assert manifest["verification"]["index_dtypes"] == {"uint4": 16}
    assert manifest["artifact_bytes"] > manifest["verification"]["weight_bin_bytes"] > 0
    assert "coremltools" in manifest["tool_versions"]
    assert manifest["compacted_constants"]["constants"] == 0  # derived constants are small (the mask: token regions)


def test_no_tensor_above_rank_4(tiny, tmp_path):
    """Window partition, relative-position bias, mask and pixel shuffle stay 4-D (the Neural Engine's layout)."""
    result = build(tiny, _bounds(tiny, 4), CoreMLConfig(tile=TILE), tmp_path / "out")
    graph = result.manifest["graph"]
    assert graph == get_target("coreml").graph_summary(result.folder / result.manifest["artifact"])
    assert graph["max_rank"] <= 4 and graph["above_rank_4"] == {}, graph
    assert graph["ops"]["linear"] + graph["ops"].get("matmul", 0) >= 16, graph


def test_a_failed_build_leaves_nothing(tiny, tmp_path, monkeypatch):
    from targets.coreml import CoreMLTarget

    def broken(*args, **kwargs):
        raise RuntimeError("verification crashed")

    monkeypatch.setattr(CoreMLTarget, "verify", broken)
    with pytest.raises(RuntimeError, match="verification crashed"):
        build(tiny, _bounds(tiny, 4), CoreMLConfig(tile=TILE), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tiny, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        build(tiny, _bounds(tiny, 4), CoreMLConfig(tile=TILE), tmp_path / "out")


def test_clear_errors(tiny, tmp_path, capsys):
    from targets.coreml import CoreMLTarget

    bounds = _bounds(tiny, 4)
    with pytest.raises(TargetError, match="unknown target 'vulkan'; available: coreml, executorch, tflite"):
        get_target("vulkan")
    with pytest.raises(TargetError, match="not 5"):
        get_target(CoreMLConfig(tile=TILE), 5)
    path = save_bounds(bounds, tmp_path / "b" / "w4.safetensors")
    assert main(["build", "--target", "coreml", "--bits", "2", "--bounds", str(path), "--out", str(tmp_path / "a")]) == 2
    assert "quantizes weights to 4 bits" in capsys.readouterr().err
    torch.manual_seed(123)
    other = build_model("tiny", 2)
    with pytest.raises(BoundsError, match="bounds were made for weights tiny"):
        build(other, bounds, CoreMLConfig(tile=TILE), tmp_path / "a")
    with pytest.raises(TargetError, match="multiple of the window size"):
        build(tiny, bounds, CoreMLConfig(tile=12), tmp_path / "a")
    with pytest.raises(TargetError, match="takes a CoreMLConfig, got TFLiteConfig"):
        CoreMLTarget(TFLiteConfig())
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # only the bounds file written above


def test_missing_coremltools_is_named_with_the_install_command(tiny, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "coremltools" else real(name, *a))
    with pytest.raises(MissingDependency, match=r"pip install coremltools==9\.0"):
        build(tiny, _bounds(tiny, 4), CoreMLConfig(tile=TILE), tmp_path / "a")


def test_cli_reports_user_errors_without_a_traceback(tmp_path, capsys):
    assert main(["build", "--target", "vulkan", "--bits", "4", "--out", str(tmp_path / "x")]) == 2
    assert "unknown target 'vulkan'" in capsys.readouterr().err
    assert main(["build", "--target", "coreml", "--bits", "6", "--out", str(tmp_path / "x")]) == 2
    assert "not 6" in capsys.readouterr().err


def test_fixed_shape_runner_pads_small_tiles_and_crops_back():
    from pipeline.evaluate import fixed_shape_upscaler

    def nearest(x):  # a per-pixel upscaler: padding must not change the cropped result
        assert x.shape[-2:] == (16, 16), "the artifact only ever sees its own input shape"
        return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)

    run = fixed_shape_upscaler(nearest, 16, 2)
    x = torch.rand(1, 3, 10, 13)
    torch.testing.assert_close(run(x), x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not fit"):
        run(torch.rand(1, 3, 17, 8))


def test_mac_profiler_refuses_other_systems(tmp_path, capsys, monkeypatch):
    import platform
    import runpy
    import sys

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(sys, "argv", ["profile_coreml.py", str(tmp_path), "--data", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(Path(__file__).parents[1] / "apps" / "ios" / "profile_coreml.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert "only on macOS" in capsys.readouterr().err


def test_the_artifact_itself_scores_like_its_simulation(tiny, tmp_path):
    from conftest import write_wave_images

    from targets.base import deploy_model, int8_convolutions
    from targets.coreml import CoreMLTarget
    from targets.coreml_mil import MilInterpreter

    images = write_wave_images((tmp_path / "imgs").mkdir() or tmp_path / "imgs", count=2, height=56, width=40)
    bounds = _bounds(tiny, 4)
    result = build(tiny, bounds, CoreMLConfig(tile=TILE), tmp_path / "out", checks=BuildChecks(score_on=images))
    v = result.manifest["verification"]
    assert v["artifact"]["what"].startswith("MIL interpreter")
    assert abs(v["artifact"]["psnr_minus_simulation"]) < 0.05  # fp16 between ops, same tiles
    # The interpreter runs the saved program: on one tile it matches the fake-quant model to fp16 precision.
    deploy, _, _ = int8_convolutions(deploy_model(tiny, bounds)[0])  # what the default build stores
    x = torch.rand(1, 3, TILE, TILE, generator=torch.Generator().manual_seed(2))
    out = MilInterpreter(result.folder / "model.mlpackage")(lr=x.numpy())["sr"]
    with torch.no_grad():
        assert np.abs(out - deploy(x).numpy()).max() < 5e-3
    assert CoreMLTarget.runtime == v["artifact"]["what"]


def test_one_package_runs_several_tile_sizes(tiny, tmp_path):
    """``tiles``: a function per size beside ``main`` (the build's own), the weights stored once for all, each
    function verified and scored, and each the same program as a package built for that size alone."""
    from conftest import write_wave_images

    from targets.coreml_mil import MilInterpreter

    images = write_wave_images((tmp_path / "imgs").mkdir() or tmp_path / "imgs", count=1, height=40, width=40)
    bounds = _bounds(tiny, 4)
    result = build(tiny, bounds, CoreMLConfig(tile=TILE, tiles=(24,)), tmp_path / "out",
                   checks=BuildChecks(score_on=images))
    m, v = result.manifest, result.manifest["verification"]
    assert m["tiles"] == [TILE, 24] and m["functions"] == {"main": TILE, "tile_24": 24}
    assert v["functions"] == ["main", "tile_24"] and v["palettized_linears"] == 16
    assert abs(v["tiles"]["24"]["artifact"]["psnr_minus_simulation"]) < 0.05
    alone = {tile: build(tiny, bounds, CoreMLConfig(tile=tile), tmp_path / f"alone{tile}") for tile in (TILE, 24)}
    assert v["weight_bin_bytes"] == alone[TILE].manifest["verification"]["weight_bin_bytes"]  # shared, not doubled
    sizes = m["size_breakdown"]["artifact"]
    assert sum(sizes.values()) == m["artifact_bytes"]
    assert sizes["linear weights"] == alone[TILE].manifest["size_breakdown"]["artifact"]["linear weights"]
    assert m["artifact_bytes"] < 1.75 * alone[TILE].manifest["artifact_bytes"]
    package = result.folder / "model.mlpackage"
    for tile, single in alone.items():
        x = torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(tile)).numpy()
        expected = MilInterpreter(single.folder / "model.mlpackage")(lr=x)["sr"]
        assert np.array_equal(MilInterpreter(package, tile)(lr=x)["sr"], expected), tile
    with pytest.raises(TargetError, match="runs no 32 px tile"):
        MilInterpreter(package, 32)


def test_size_breakdown_meets_the_component_budget(tiny, tmp_path):
    """Bias tables and mask are stored small (tables, not their 24 x h x N x N expansion); every byte is accounted for."""
    from targets.base import SIZE_COMPONENTS, export_copy

    result = build(tiny, _bounds(tiny, 2), CoreMLConfig(tile=TILE), tmp_path / "out")
    sizes = result.manifest["size_breakdown"]["artifact"]
    assert list(sizes) == list(SIZE_COMPONENTS) and sum(sizes.values()) == result.manifest["artifact_bytes"]
    export = export_copy(tiny, TILE)
    assert sizes["bias tables"] == 2 * (export.frozen_bias_tables.numel() + export.frozen_offsets.numel())  # fp16
    mask_tables = export.frozen_mask_windows.numel() + export.frozen_mask_regions.numel()
    assert 0 < sizes["shift mask"] <= 2 * mask_tables  # fp16 zeros and ones, not the (nW, N, N) mask they make
    linear_weights = sum(w.numel() for n, w in tiny.named_parameters() if n.endswith(("qkv.weight", "proj.weight",
                                                                                         "fc1.weight", "fc2.weight")))
    assert sizes["linear weights"] == linear_weights * 2 // 8  # uint2 indices, nothing else
    convs = [m for m in tiny.modules() if isinstance(m, torch.nn.Conv2d)]  # int8 codes + an fp16 scale per channel
    assert sizes["convolutions"] == sum(c.weight.numel() + 2 * c.out_channels for c in convs)
    # Compacted program: 63 KB of graph and metadata before small constants went inline (blob headers and padding)
    # and zero biases were dropped, 36 KB after.
    assert sizes["other constants"] < 16_000 and sizes["graph and metadata"] < 45_000, sizes


def test_int8_convolutions_are_stored_exactly_and_scored_as_simulated(tiny, tmp_path):
    """``conv_weights="int8"``: every convolution is int8 codes x fp16 channel scales, read back equal, half the bytes."""
    from conftest import assert_verify_checks_conv_grids, write_wave_images

    from targets.base import deploy_model, int8_convolutions

    images = write_wave_images((tmp_path / "imgs").mkdir() or tmp_path / "imgs", count=2, height=40, width=32)
    bounds = _bounds(tiny, 4)
    result = build(tiny, bounds, CoreMLConfig(tile=TILE, conv_weights="int8"), tmp_path / "out",
                   checks=BuildChecks(score_on=images))
    m = result.manifest
    convs = [mod for mod in tiny.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert m["convolutions"]["convolutions"] == len(convs) == m["verification"]["int8_convolutions"]
    channels = sum(c.out_channels for c in convs)
    assert m["size_breakdown"]["artifact"]["convolutions"] == sum(c.weight.numel() for c in convs) + 2 * channels
    assert abs(m["verification"]["artifact"]["psnr_minus_simulation"]) < 0.05  # the simulation holds the int8 weights
    # The read-back check compares codes and scales: a grid that differs by one code or one scale is refused.
    deploy, weights = deploy_model(tiny, bounds)
    _, grids, _ = int8_convolutions(deploy)
    package, target = result.folder / m["artifact"], get_target(CoreMLConfig(tile=TILE, conv_weights="int8"))
    assert_verify_checks_conv_grids(target, package, weights, grids)


def test_channel_grid_is_int8_with_fp16_scales_and_idempotent():
    from targets.base import channel_grid

    weight = torch.randn(6, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight[2] = 0  # an all-zero channel
    weight[4] *= 1e-5  # a scale below fp16's smallest normal number: coarse, rounded up, no code clipped
    g = channel_grid("conv", weight)
    assert g.codes.dtype == torch.int8 and int(g.codes.abs().max()) == 127
    assert torch.equal(g.scales, g.scales.half().float())
    peak = weight.abs().amax(dim=(1, 2, 3))
    nonzero = peak > 0
    # Independent float64 reference: each code within one step of w / s, each 3x3 kernel's codes summing to within
    # 0.5 of its exact sum, codes moved off the nearest integer only as many as that needs; the step is max |w| / 127.
    s = g.scales.double().view(-1, 1, 1, 1)
    error = weight / s - g.codes.double()
    assert (error.abs() < 1).all() and (error.sum(dim=(2, 3)).abs() <= 0.5 + 1e-6).all()
    moved = (error.abs() > 0.5 + 1e-9).sum(dim=(2, 3))
    assert (moved <= torch.round((weight / s - torch.round(weight / s)).sum(dim=(2, 3))).abs()).all()
    assert (moved > 0).any()  # the random kernels do need moves: nearest rounding alone would not keep the sums
    assert (g.scales.double()[nonzero] >= peak[nonzero] / 127).all()
    normal = [0, 1, 3, 5]  # fp16 scales in the normal range: within fp16's precision of max |w| / 127
    assert torch.allclose(g.scales.double()[normal], peak[normal] / 127, rtol=2**-10)
    assert not g.codes[2].any()
    again = channel_grid("conv", g.weight)
    assert torch.equal(again.codes, g.codes) and torch.equal(again.scales, g.scales)


def test_program_compaction_is_lossless_and_shrinks_the_program(tiny, tmp_path):
    """Merged constants, short names, small constants inline and no zero biases: the saved program computes bit for
    bit the same, in far fewer bytes, and the package holds nothing else."""
    from targets.base import deploy_model
    from targets.coreml import _compact_program, _is_zero
    from targets.coreml_mil import MilInterpreter

    deploy, weights = deploy_model(tiny, _bounds(tiny, 3))
    packages = {}
    for compact in (False, True):
        packages[compact] = tmp_path / f"compact-{compact}.mlpackage"
        summary = get_target(CoreMLConfig(tile=TILE, compact_constants=compact, conv_weights="float")).lower(
            deploy, weights, TILE, packages[compact])
    assert summary["program_bytes"]["after"] < 0.6 * summary["program_bytes"]["before"]
    for package in packages.values():  # no side files (MLModel.save of a converted model adds a 111 KB debug map here)
        assert sorted(f.name for f in package.rglob("*") if f.is_file()) == ["Manifest.json", "model.mlmodel", "weight.bin"]
    x = torch.rand(1, 3, TILE, TILE, generator=torch.Generator().manual_seed(3)).numpy()
    outs = {compact: MilInterpreter(package)(lr=x)["sr"] for compact, package in packages.items()}
    assert np.array_equal(outs[True], outs[False])
    get_target(CoreMLConfig(tile=TILE)).verify(packages[True], weights)  # each Linear's table is still found by name
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    spec.ParseFromString((packages[True] / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes())
    block = spec.mlProgram.functions["main"].block_specializations["CoreML8"]
    values = [op.attributes["val"].SerializeToString() for op in block.operations
              if op.type == "const" and op.attributes["val"].HasField("immediateValue")]
    assert len(values) == len(set(values))  # one const per distinct small value
    blobs = [op.outputs[0].type.tensorType for op in block.operations
             if op.type == "const" and op.attributes["val"].HasField("blobFileValue")]
    assert blobs and all(np.prod([d.constant.size for d in t.dimensions]) >= 256 for t in blobs)  # small ones inline
    consts = {op.outputs[0].name: op.attributes["val"] for op in block.operations if op.type == "const"}
    biases = [op.inputs["bias"].arguments[0].name if "bias" in op.inputs else None
              for op in block.operations if op.type == "linear"]
    zero_biases = sum(isinstance(m, torch.nn.Linear) and not m.bias.any() for m in tiny.modules())  # untrained: all
    assert biases.count(None) == zero_biases + 2  # plus coremltools' own: the (one) bias expansion's two
    assert not any(_is_zero(consts[name]) for name in biases if name is not None)
    before = spec.ByteSize()
    _compact_program(spec.mlProgram)
    assert spec.ByteSize() == before  # nothing left to merge or shorten
