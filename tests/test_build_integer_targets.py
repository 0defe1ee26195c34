"""`pipeline build --target executorch|tflite` on the tiny model: lowered, read back, run and scored here.

One build per backend (module-scoped: ExecuTorch lowering costs ~30 s even for the tiny model), then
checks of what it stored, what it measured and how it fails.
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from conftest import assert_verify_checks_conv_grids, tiny_bounds, write_wave_images

from calibration.bounds import save_bounds
from calibration.primitives import dequantize, fake_quantize_per_token_int8, quantize
from calibration.quantizer import Role
from calibration.snapping import CONTAINERS, snap_bounds, snap_weight_bounds
from pipeline.build import BuildChecks, build
from pipeline.cli import main
from srcore.model import SwinTransformerBlock, WindowAttention, build_model
from targets import CoreMLConfig, ExecuTorchConfig, TargetError, TFLiteConfig, get_target
from targets.config import ConvWeights
from targets.tflite import _MIN_NARROW_ELEMENTS, pack_codes, unpack_codes

TILE = 16
BACKENDS = ("executorch", "tflite")
TILES = {"executorch": (TILE, 24), "tflite": (TILE, 24)}  # one method (ExecuTorch) or signature (TFLite) per tile side


# The 24 px graph's 9 windows run in 3 block chunks (TFLite: windows 0-3, 4-7, 8; ExecuTorch's shared pieces:
# 0-3, 4-7, 5-8, the last recomputing 3 windows so that every piece is the 16 px graph's 4 windows), the 16 px one's 4
# in one.
WINDOW_CHUNK = 4
# int32 shape and slice-index vectors (a few elements each) per tile size; each window chunk slices and reshapes its
# own piece of every block. A re-folded bias or mask (131 KB here) is far above it.
SHAPE_CONSTANT_BYTES = 2_000


def _chunks(tile: int) -> int:
    """How many pieces each Swin block of the ``tile`` px graph runs in (8 px windows, ``WINDOW_CHUNK`` at a time)."""
    return -(-(tile // 8) ** 2 // WINDOW_CHUNK)


def _config(backend: str, **options):
    config = ExecuTorchConfig if backend == "executorch" else TFLiteConfig
    return config(tile=TILE, tiles=TILES[backend], **{"window_chunk": WINDOW_CHUNK, **options})


@pytest.fixture(scope="module")
def tiny():
    """The tiny model with non-trivial LayerNorm affines (trained models have them; converters fold them)."""
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def bounds(tiny):
    return tiny_bounds(tiny, 4, TILE)


def _build(backend: str, tiny, bounds, tmp, int_grid: str | None = None, **checks):
    options = {"int_grid": int_grid} if int_grid else {}
    return build(tiny, bounds, _config(backend, **options), tmp / "out", checks=BuildChecks(**checks))


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """One FP32 baseline per backend, shared by the builds of both grid forms."""
    return tmp_path_factory.mktemp("baselines")


@pytest.fixture(scope="module", params=BACKENDS)
def built(request, tiny, bounds, baselines, tmp_path_factory):
    """The default (snapped-grid) build, scored and timed."""
    tmp = tmp_path_factory.mktemp(request.param)
    images = write_wave_images((tmp / "imgs").mkdir() or tmp / "imgs", count=2, height=40, width=24)
    return request.param, _build(request.param, tiny, bounds, tmp, score_on=images, threads=(1,), runs=3,
                                 baseline_cache=baselines)


@pytest.fixture(scope="module")
def built_exact(built, tiny, bounds, baselines, tmp_path_factory):
    """The same backend's exact-grid build (``int_grid="exact"``: offset rows), neither scored nor timed."""
    backend = built[0]
    return backend, _build(backend, tiny, bounds, tmp_path_factory.mktemp(backend), "exact", baseline_cache=baselines)


def _stored(backend: str, artifact) -> list[tuple[np.ndarray, np.ndarray]]:
    """(codes, scales) of every int4 weight, read with the backend's own reader."""
    if backend == "executorch":
        from targets.executorch import stored_weights

        return [(t["codes"], t["scales"]) for t in stored_weights(artifact)["forward"]]
    from ai_edge_litert.tools import flatbuffer_utils

    from targets.tflite import _fully_connected_weights

    fb = flatbuffer_utils.read_model(str(artifact))
    bits = {17: 4, 19: 2}  # TensorType INT4, INT2
    return [(unpack_codes(np.asarray(fb.buffers[t.buffer].data, np.uint8), int(np.prod(t.shape)), bits[t.type])
             .reshape(t.shape), np.asarray(t.quantization.scale, np.float32))
            for t in _fully_connected_weights(fb.subgraphs[0], fb) if t.type in bits]  # the default signature


def _expected_grid_weights(tiny, bounds, snapped: bool) -> dict[str, tuple[int, np.ndarray]]:
    """Per Linear: (row groups, its weight quantized/dequantized in float64 on the calibrated or int4-snapped grids).

    Independent of the build code: bounds from the file, rounded to float32 as stored, the grid in float64.
    """
    table = {}
    for name, linear in [(n, m) for n, m in tiny.named_modules() if isinstance(m, torch.nn.Linear)]:
        prefix, op = name.rsplit(".", 1)
        parts = ["q", "k", "v"] if op == "qkv" else [op]
        rows = linear.weight.detach().double().view(len(parts), -1, linear.in_features)
        expected = []
        for part, w in zip(parts, rows):
            entry = bounds.quantizers[f"{prefix}.{part}.weight"]
            lo, hi = entry.lower, entry.upper
            if snapped:
                lo, hi, _ = snap_bounds(lo, hi, 4, *CONTAINERS["int4"])
            lo, hi = torch.tensor(lo, dtype=torch.float32).double(), torch.tensor(hi, dtype=torch.float32).double()
            expected.append(dequantize(quantize(w, lo, hi, 4), lo, hi, 4))
        table[name] = (len(parts), torch.cat(expected).numpy())
    return table


def test_stored_int4_weights_are_the_snapped_calibrated_grid(built, tiny, bounds):
    backend, result = built
    stored = _stored(backend, result.folder / result.manifest["artifact"])
    assert len(stored) == sum(isinstance(m, torch.nn.Linear) for m in tiny.modules())
    assert result.manifest["integer_grid"]["int_grid"] == "snapped" and result.manifest["integer_grid"]["offset_rows"] == 0
    for name, (_, expected) in _expected_grid_weights(tiny, bounds, snapped=True).items():
        decoded = [c * s[:, None].astype(np.float64) for c, s in stored if c.shape == expected.shape]
        errors = [np.abs(d - expected).max() for d in decoded]
        assert min(errors) < 1e-6 * np.abs(expected).max(), name  # float32 scale times an integer code
    for codes, _ in stored:
        assert codes.min() >= -8 and codes.max() <= 7


def test_stored_int4_weights_plus_offset_rows_are_the_calibrated_grid_exactly(built_exact, tiny, bounds):
    """Exact form: each Linear stores ``rows + groups`` int4 rows; codes x scale plus its group's offset row
    decode to the calibrated (unsnapped) grid, which the snapped form would have moved."""
    backend, result = built_exact
    stored = _stored(backend, result.folder / result.manifest["artifact"])
    assert result.manifest["integer_grid"]["int_grid"] == "exact"
    snapped, moved = _expected_grid_weights(tiny, bounds, snapped=True), 0
    for name, (groups, expected) in _expected_grid_weights(tiny, bounds, snapped=False).items():
        rows, errors = expected.shape[0], []
        for codes, scales in stored:
            if codes.shape != (rows + groups, expected.shape[1]):
                continue
            offsets = codes[rows:] * scales[rows:, None].astype(np.float64)
            assert (offsets == offsets[:, :1]).all()  # one constant per offset row: c * sum(x)
            decoded = codes[:rows] * scales[:rows, None].astype(np.float64) + np.repeat(offsets[:, :1], rows // groups, 0)
            errors.append(np.abs(decoded - expected).max())
        assert min(errors) < 1e-6 * np.abs(expected).max(), name
        moved += np.abs(snapped[name][1] - expected).max() > 1e-3 * np.abs(expected).max()
    assert moved > 0  # on these bounds the snapped grid differs, so the check above tells the forms apart
    for codes, _ in stored:
        assert codes.min() >= -8 and codes.max() <= 7


def test_manifest_measures_fp_simulation_artifact_size_and_latency(built):
    backend, result = built
    m = json.loads((result.folder / "manifest.json").read_text())
    assert m == result.manifest and m["target"] == backend
    v = m["verification"]
    for key in ("fp", "simulation", "artifact"):
        assert np.isfinite(v[key]["psnr"]) and 0 < v[key]["ssim"] <= 1
    assert "dynamic int8 per token" in v["simulation"]["what"]
    assert abs(v["artifact"]["psnr_minus_simulation"]) < 0.05
    assert v["artifact"]["max_abs_diff_vs_simulation"]["max_abs"] < 1e-4  # same int8 activations, fp32 rounding apart
    assert m["integer_grid"]["int_grid"] == "snapped" and m["integer_grid"]["snapping"]["container"] == "int4"
    assert m["integer_grid"]["zero_point"] == 0 and m["integer_grid"]["codes_range"] == [-8, 7]
    assert m["integer_grid"]["max_decoded_minus_fake_quant_in_steps"] < 1e-4
    baseline = result.folder / m["baseline"]["artifact"]
    assert baseline.is_file() and m["baseline"]["artifact_bytes"] == baseline.stat().st_size
    assert m["artifact_bytes"] < m["baseline"]["artifact_bytes"]  # the same tile sizes, so the same graphs
    latency = m["latency"]["threads_1"]
    assert latency["artifact"]["runs"] == 3 and latency["artifact"]["median_ms"] > 0
    assert latency["speedup_vs_fp32"] == pytest.approx(
        latency["fp32_baseline"]["median_ms"] / latency["artifact"]["median_ms"])
    assert latency["artifact"]["peak_rss_mb"] > 0


def test_no_tensor_above_rank_4(built):
    """Artifact and FP32 baseline: window partition, bias, mask and pixel shuffle written in 4-D (GPU delegates)."""
    backend, result = built
    target = get_target(backend)
    for manifest, name in ((result.manifest, result.manifest["artifact"]),
                           (result.manifest["baseline"], result.manifest["baseline"]["artifact"])):
        assert manifest["graph"] == target.graph_summary(result.folder / name)
        assert manifest["graph"]["max_rank"] <= 4 and manifest["graph"]["above_rank_4"] == {}, (name, manifest["graph"])
        assert not manifest["graph"].get("gpu_delegate_rejects"), name  # TFLite: nothing LiteRT's GPU delegate refuses
    ops = result.manifest["graph"]["ops"]
    assert ops.get("XNNFullyConnected", ops.get("FULLY_CONNECTED", 0)) >= 16


def test_blocks_run_in_window_chunks(built, tiny):
    """Each graph's Swin blocks split into chunks of ``window_chunk`` windows (two batch matmuls each), and the
    artifact still equals its unchunked simulation at every size
    (``test_every_tile_size_runs_from_one_artifact_verified_and_scored``)."""
    backend, result = built
    blocks = sum(isinstance(m, WindowAttention) for m in tiny.modules())
    chunks = sum(_chunks(tile) for tile in TILES[backend])  # 1 + 2
    ops = result.manifest["graph"]["ops"]
    assert result.manifest["window_chunk"] == WINDOW_CHUNK
    # plus, once per graph, two for the shift mask: its patterns from their regions, each window's choice among them
    assert ops.get("XNNBatchMatrixMultiply", ops.get("BATCH_MATMUL")) == 2 * blocks * chunks + 2 * len(TILES[backend])


def test_every_linear_runs_in_the_backends_int4_kernel(built, tiny):
    backend, result = built
    m, linears = result.manifest, sum(isinstance(x, torch.nn.Linear) for x in tiny.modules())
    if backend == "executorch":  # XNNPACK partitions: nothing but the fp16 tables' widening runs outside them
        widened = 3 * len(TILES[backend])  # per method: the mask's two one-hots and the bias tables (export_graph)
        assert m["shared_pieces"] and m["xnnpack_partitions"] > 1  # the default: a partition per piece and stage
        assert m["ops_outside_xnnpack"] == {"dim_order_ops._to_dim_order_copy.default": widened}
    else:  # every Linear's FULLY_CONNECTED holds INT4 codes; the float ones expand all blocks' bias tables
        assert m["packed_fully_connected"] == linears
        assert m["verification"]["float_fully_connected"] == 2 * len(TILES[backend])  # per signature
    assert m["verification"]["palettized_linears"] == m["verification"]["quantized_linears"] == linears


def _deploy(tiny, bounds, int_grid: str, container: str = "int4"):
    """The build's deploy model and integer weights, by the same functions the build uses (convolutions as floats)."""
    from targets.base import deploy_model, on_integer_grid

    if int_grid == "snapped":
        bounds, _ = snap_weight_bounds(bounds, container)
    deploy, weights = deploy_model(tiny, bounds)
    deploy, weights, _ = on_integer_grid(deploy, weights, *CONTAINERS[container], exact=int_grid == "exact")
    return deploy, weights


def _convs(backend: str, deploy):
    """``deploy`` with the convolutions the backend's default build stores, and their int8 grids (none: floats)."""
    from targets.base import int8_convolutions

    if _config(backend).conv_weights is ConvWeights.INT8:
        deploy, grids, _ = int8_convolutions(deploy)
        return deploy, grids
    return deploy, []


@pytest.mark.parametrize("form", ["exact", "snapped"])
def test_the_artifact_runs_like_the_simulation_on_one_tile(form, built, built_exact, tiny, bounds):
    backend, result = built_exact if form == "exact" else built
    target = get_target(backend)
    deploy, _ = _convs(backend, _deploy(tiny, bounds, form)[0])
    x = torch.rand(1, 3, TILE, TILE, generator=torch.Generator().manual_seed(3))
    out = target.runner(result.folder / result.manifest["artifact"])(x)
    with torch.no_grad():
        simulated, float_acts = target.simulate(deploy)(x), deploy(x)
    sim_err, float_err = (out - simulated).abs().max().item(), (out - float_acts).abs().max().item()
    assert sim_err < 1e-4
    assert sim_err < float_err / 3  # the int8-activation simulation, not the float one, is what runs


@pytest.mark.parametrize("field", ["codes", "offsets"])
def test_verification_rejects_a_changed_code_or_offset(field, built_exact, tiny, bounds):
    import dataclasses

    backend, result = built_exact
    _, weights = _deploy(tiny, bounds, "exact")
    if field == "codes":
        codes = weights[0].codes.clone()
        codes[0, 0] = codes[0, 0] + 1 if codes[0, 0] < 7 else codes[0, 0] - 1
        weights[0] = dataclasses.replace(weights[0], codes=codes)
    else:
        weights[0] = dataclasses.replace(weights[0], offsets=weights[0].offsets * 1.001)
    with pytest.raises(TargetError, match="no weight in the artifact holds its codes"):
        get_target(backend).verify(result.folder / result.manifest["artifact"], weights)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clear_errors_before_any_slow_work(backend, tiny, bounds, tmp_path):
    config = {"executorch": ExecuTorchConfig, "tflite": TFLiteConfig}[backend]
    with pytest.raises(TargetError, match="not 8"):
        get_target(config(tile=TILE), 8)
    with pytest.raises(TargetError, match="multiple of the window size"):
        build(tiny, bounds, config(tile=12), tmp_path / "a")
    with pytest.raises(ValueError, match="runs and thread counts must be >= 1"):
        BuildChecks(threads=(0,))
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_corrupt_bounds_and_unsupported_bits(tmp_path, capsys):
    corrupt = tmp_path / "bounds.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    assert main(["build", "--target", "tflite", "--bits", "4", "--bounds", str(corrupt), "--out", str(tmp_path / "o")]) == 2
    assert "bounds" in capsys.readouterr().err
    assert main(["build", "--target", "executorch", "--bits", "8", "--out", str(tmp_path / "o")]) == 2
    assert "stores 2, 3, 4-bit weights, not 8" in capsys.readouterr().err
    assert main(["build", "--target", "coreml", "--bits", "4", "--int-grid", "exact", "--out", str(tmp_path / "o")]) == 2
    assert "--int-grid is an ExecuTorch/TFLite option" in capsys.readouterr().err
    assert main(["build", "--target", "coreml", "--bits", "4", "--bias-tables", "fp16", "--out", str(tmp_path / "o")]) == 2
    assert "--bias-tables is an ExecuTorch and TFLite option" in capsys.readouterr().err
    assert main(["build", "--target", "coreml", "--bits", "4", "--window-chunk", "16", "--out", str(tmp_path / "o")]) == 2
    assert "--window-chunk is an ExecuTorch and TFLite option" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    for bad in (0, -4, True, 2.5):
        with pytest.raises(ValueError, match="window_chunk must be a positive integer"):
            ExecuTorchConfig(window_chunk=bad)
    assert ExecuTorchConfig(window_chunk=None).window_chunk is None and TFLiteConfig(window_chunk=None).window_chunk is None
    assert ExecuTorchConfig().shared_pieces and not ExecuTorchConfig(window_chunk=None).shared_pieces  # with pieces
    assert ExecuTorchConfig().window_chunk == TFLiteConfig().window_chunk == 64
    with pytest.raises(ValueError, match="bias_tables must be one of"):
        TFLiteConfig(bias_tables="bf16")
    with pytest.raises(ValueError, match="int_grid must be one of"):
        ExecuTorchConfig(int_grid="nearest")
    with pytest.raises(ValueError, match="every tile in tiles must be an integer >= 8"):
        ExecuTorchConfig(tiles=(64, 4))
    assert ExecuTorchConfig(tile=96, tiles=(64, 192, 96)).sizes == (96, 64, 192)  # its own tile first, no repeat


def test_bounds_file_for_other_bits_is_refused(tiny, tmp_path, capsys):
    path = save_bounds(tiny_bounds(tiny, 3, TILE), tmp_path / "w3.safetensors")
    assert main(["build", "--target", "executorch", "--bits", "4", "--bounds", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "quantizes weights to 3 bits" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_snapping_moves_only_weight_grids_onto_integer_offsets(bounds):
    snapped, report = snap_weight_bounds(bounds, "int4")
    assert report["weight_grids"] == sum(q.role is Role.WEIGHT for q in bounds.quantizers.values())
    for name, q in snapped.quantizers.items():
        if q.role is Role.ACTIVATION:
            assert q == bounds.quantizers[name]
        else:
            step = (q.upper - q.lower) / (2**q.bits - 1)
            z = q.lower / step
            assert abs(z - round(z)) < 1e-6 and -8 <= round(z) and round(z) + 2**q.bits - 1 <= 7
    with pytest.raises(ValueError, match="unknown integer container"):
        snap_weight_bounds(bounds, "int3")


def test_int4_and_int2_packing_round_trips_and_matches_tflite_layout():
    codes = np.arange(-8, 8).repeat(3)[:-1]  # odd count: the last byte is half used
    packed = pack_codes(codes, 4)
    assert packed.dtype == np.uint8 and len(packed) == (len(codes) + 1) // 2
    assert packed[0] == (0x8 | (0x8 << 4))  # -8, -8: two's-complement nibbles, first in the low half
    np.testing.assert_array_equal(unpack_codes(packed, len(codes), 4), codes)
    codes = np.array([-2, -1, 0, 1, 1, -2])  # 6 codes: the second byte is half used
    packed = pack_codes(codes, 2)
    # LiteRT's UnpackPackedIntToInt8: four 2-bit fields per byte, the first in the lowest bits
    assert packed.tolist() == [0b01_00_11_10, 0b00_00_10_01]
    np.testing.assert_array_equal(unpack_codes(packed, len(codes), 2), codes)


def test_per_token_int8_matches_a_float64_reference():
    x = torch.randn(5, 7, 60, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 3, 7)[:, None]
    x[0, 0] = x[0, 0].abs()  # a row with no negative value: the range still includes 0
    ref = x.double()
    lo, hi = ref.amin(-1, keepdim=True).clamp(max=0), ref.amax(-1, keepdim=True).clamp(min=0)
    s = (hi - lo) / 255
    zp = torch.round(-128 - lo / s).clamp(-128, 127)
    expected = (torch.clamp(torch.round(ref / s) + zp, -128, 127) - zp) * s
    out = fake_quantize_per_token_int8(x)
    # XNNPACK's float32 arithmetic (multiplier 255 / range, step its reciprocal) against float64: a few ulps
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    assert (out - x).abs().max() <= s.max() / 2 + 1e-6  # at most half a step from the input


def test_upscale_runs_the_artifact_in_its_runtime_and_prints_its_tile_choice(built, tmp_path, capsys, caplog):
    """Without --tile the fastest measured size is chosen and printed; with --tile that size's method runs."""
    import re

    from pipeline.artifacts import load_build
    from srcore.images import load_rgb, to_tensor, to_uint8
    from srcore.tiling import default_overlap, upscale_tiled

    backend, result = built
    src = next(write_wave_images((tmp_path / "in").mkdir() or tmp_path / "in", 1, 60, 41).glob("*.png"))
    speeds = result.manifest["tile_speed"]["threads_1"]
    assert sorted(map(int, speeds)) == sorted(TILES[backend])
    for tile in (None, *TILES[backend]):
        out = tmp_path / f"sr-{tile}.png"
        with caplog.at_level("INFO", logger="pipeline.upscale"):
            assert main(["upscale", str(src), str(out), "--artifact", str(result.folder), "--quiet"]
                        + ([] if tile is None else ["--tile", str(tile)])) == 0
        used, overlap = map(int, re.search(r"tiles of (\d+) px \(overlap (\d+)\)", capsys.readouterr().out).groups())
        if tile is None:
            assert f"tile {used} px, the fastest of the artifact's sizes" in caplog.text
            assert all(f"{size} px: " in caplog.text for size in TILES[backend])  # every option, with time and memory
        assert used == (tile or used) and overlap == default_overlap(used)
        run = load_build(result.folder).upscaler(tile=used)
        expected = to_uint8(upscale_tiled(run, to_tensor(load_rgb(src)), 2, used, overlap))
        np.testing.assert_array_equal(load_rgb(out), expected)
    assert main(["upscale", str(src), str(tmp_path / "x.png"), "--artifact", str(result.folder), "--tile", "40"]) == 2


def test_worker_processes_run_the_artifact_to_the_same_image_and_are_timed(built, tmp_path, capsys):
    """``--workers 2``: tiles in two processes of one runtime thread each give the image of one process; the
    build's timing of that mode (``workers_n`` rows of ``tile_speed``) runs the same processes."""
    from srcore.images import load_rgb
    from targets.latency import tile_speeds

    backend, result = built
    src = next(write_wave_images((tmp_path / "in").mkdir() or tmp_path / "in", 1, 60, 41).glob("*.png"))
    for workers in ("1", "2"):
        assert main(["upscale", str(src), str(tmp_path / f"sr-{workers}.png"), "--artifact", str(result.folder),
                     "--workers", workers, "--tile", str(TILES[backend][0]), "--quiet"]) == 0
    assert ", 2 processes), peak memory (PSS)" in capsys.readouterr().out
    np.testing.assert_array_equal(load_rgb(tmp_path / "sr-2.png"), load_rgb(tmp_path / "sr-1.png"))
    tile = TILES[backend][0]
    speeds = tile_speeds(backend, result.folder / result.manifest["artifact"], (tile,), 2, (2,), runs=2, warmup=1)
    row = speeds["workers_2"][str(tile)]
    assert row["workers"] == 2 and row["median_ms"] > 0 and row["peak_rss_mb"] > speeds["threads_2"][str(tile)]["peak_rss_mb"]


def test_every_tile_size_runs_from_one_artifact_verified_and_scored(built, tiny):
    """One method (ExecuTorch) or signature (TFLite) per size, every one's int4 weights read back, one shared copy
    stored; the FP32 baseline is built the same way."""
    backend, result = built
    m = result.manifest
    assert m["tiles"] == list(TILES[backend])
    sizes = [str(t) for t in TILES[backend][1:]]
    assert sorted(m["verification"].get("tiles", {})) == sizes
    for size in sizes:
        entry = m["verification"]["tiles"][size]
        assert entry["simulation"]["tile"] == entry["artifact"]["tile"] == int(size)
        assert entry["artifact"]["max_abs_diff_vs_simulation"]["max_abs"] < 1e-4
    if backend == "executorch":
        from targets.executorch import stored_weights

        assert m["methods"] == {"16": "forward", "24": "tile_24"}
        assert m["verification"]["methods_verified"] == ["forward", "tile_24"]
        assert m["baseline"]["methods"] == m["methods"]  # the FP32 baseline is built the same way
        stored = stored_weights(result.folder / m["artifact"])
        assert sorted(stored) == ["forward", "tile_24"]
        held = {method: {t["codes"].tobytes() + t["scales"].tobytes() for t in tensors} for method, tensors in stored.items()}
        assert held["tile_24"] == held["forward"]  # the same grids (tile_24's attention ops: one per window chunk)
    else:
        assert m["signatures"] == m["verification"]["signatures_verified"] == ["serving_default", "tile_24"]
        assert m["graph"]["graphs"] == m["baseline"]["graph"]["graphs"] == 2
    linear_weights = sum(x.weight.numel() for x in tiny.modules() if isinstance(x, torch.nn.Linear))
    assert m["size_breakdown"]["artifact"]["linear weights"] <= 1.1 * linear_weights // 2  # one copy, not two


def test_profile_reports_latency_ratio_accuracy_ops_and_writes_chart(built, tmp_path):
    from pipeline.profile import profile_builds, write_report

    backend, result = built
    images = write_wave_images((tmp_path / "imgs").mkdir() or tmp_path / "imgs", count=1, height=24, width=24)
    report = profile_builds([result.folder], threads=(1,), runs=2, warmup=1, data=[images])
    (p,) = report["profiles"]
    entry = p["latency"]["threads_1"]
    assert entry["artifact"]["runs"] == 2 and entry["fp32_baseline"]["runs"] == 2
    assert entry["speedup_vs_fp32"] == pytest.approx(entry["fp32_baseline"]["median_ms"] / entry["artifact"]["median_ms"])
    flops = p["theoretical_flop_speedup"]
    assert flops["grid_bits"] == pytest.approx(flops["stored_bits"]) and flops["grid_bits"] > 3  # W4 in int4
    assert p["accuracy"][0]["dataset"] == "imgs" and np.isfinite(p["accuracy"][0]["psnr"])
    speeds = p["tile_speed"]["threads_1"]
    assert list(speeds) == [str(t) for t in TILES[backend]]
    for tile, r in speeds.items():  # time per tile over the output it adds past the overlap, x2 model
        added = (int(tile) - r["overlap"]) ** 2 * 4
        assert r["ms_per_output_mp"] == pytest.approx(r["median_ms"] * 1e6 / added) and r["peak_rss_mb"] > 0
    ops = entry["artifact"]["ops"]
    if backend == "executorch":  # ETDump: XNNPACK kernels by kind, the int4 GEMM among them
        assert any("QC4W" in o["op"] for o in ops) and all(o["median_ms"] >= 0 for o in ops)
    else:
        assert "no per-operator profiler" in ops
    paths = write_report(report, tmp_path / "out" / "profile", "test")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and all(p.stat().st_size > 0 for p in paths)
    assert "speed-up" in paths[1].read_text() and "ms per output MP" in paths[1].read_text()


def _stored_bytes(backend: str, t: torch.Tensor, fp16: bool = False) -> int:
    """Bytes of the constant ``t`` as ``backend`` stores it: TFLite's integer-valued ones (one-hots, mask) INT8."""
    as_int8 = (backend == "tflite" and t.numel() >= _MIN_NARROW_ELEMENTS and torch.equal(t, t.round())
               and -128 <= t.min() and t.max() <= 127)
    return t.numel() * (1 if as_int8 else 2 if fp16 else 4)


def _bias_table_bytes(backend: str, export, fp16: bool) -> int:
    """The relative-position bias tables of a frozen ``export`` (fp16 with ``fp16``) and their offsets' one-hot."""
    return _stored_bytes(backend, export.frozen_bias_tables, fp16) + _stored_bytes(backend, export.frozen_offsets)


@pytest.mark.parametrize("form", ["snapped", "exact"])
def test_size_breakdown_meets_the_component_budget(form, built, built_exact, tiny):
    """Bias tables and mask are stored as small tables (bias tables fp16; TFLite's integer-valued ones INT8,
    ExecuTorch's mask one-hots fp16), linears as int4; every byte is accounted for."""
    from targets.base import SIZE_COMPONENTS, export_copy

    backend, result = built_exact if form == "exact" else built
    for key, total in (("artifact", result.manifest["artifact_bytes"]),
                       ("baseline", result.manifest["baseline"]["artifact_bytes"])):
        sizes = result.manifest["size_breakdown"][key]
        assert list(sizes) == list(SIZE_COMPONENTS) and sum(sizes.values()) == total
        exports = [export_copy(tiny, tile) for tile in result.manifest["tiles"]]  # the baseline has the same sizes

        fp16 = key == "artifact"  # IntegerConfig.bias_tables: fp16 by default; the FP32 baseline's are fp32
        one_hots = backend == "executorch"  # export_graph keeps the mask's one-hots in fp16, in the baseline too
        tables = _bias_table_bytes(backend, exports[0], fp16)
        # Not the blocks x h x N x N expansion (131 KB here).
        # Every tile size shares the tables (stored once) and adds its own window one-hot to the mask.
        assert tables <= sizes["bias tables"] <= 1.5 * tables, key
        windows = sum(_stored_bytes(backend, e.frozen_mask_windows, one_hots) for e in exports)
        patterns = _stored_bytes(backend, exports[0].frozen_mask_regions, one_hots)
        assert windows + patterns <= sizes["shift mask"] <= 1.1 * (windows + len(exports) * patterns), key
        # Convolutions: ExecuTorch fp16 filters (ConvWeights.FP16), TFLite int8 codes plus fp32 channel scales.
        convs = [m for m in tiny.modules() if isinstance(m, torch.nn.Conv2d)]
        filters, channels = sum(c.weight.numel() for c in convs), sum(c.out_channels for c in convs)
        per_weight = 4 if key == "baseline" else {"executorch": 2, "tflite": 1}[backend]
        assert per_weight * filters <= sizes["convolutions"] <= per_weight * filters + 8 * channels, key
    # A re-folded bias (131 KB here) would land in "other constants" (test_lowered_artifact_has_no_redundant_bytes);
    # each tile size adds its own shape constants.
    other = result.manifest["size_breakdown"]["artifact"]["other constants"]
    assert other < SHAPE_CONSTANT_BYTES * len(result.manifest["tiles"])
    linears = [m for m in tiny.modules() if isinstance(m, torch.nn.Linear)]
    groups = [3 if m.out_features == 3 * m.in_features else 1 for m in linears]  # q/k/v: three grids
    offset_rows = sum(groups) if form == "exact" else 0
    assert result.manifest["integer_grid"]["offset_rows"] == offset_rows
    linear_weights = sum((m.out_features + g * (form == "exact")) * m.in_features for m, g in zip(linears, groups))
    sizes = result.manifest["size_breakdown"]["artifact"]
    assert linear_weights // 2 <= sizes["linear weights"] <= 1.1 * linear_weights // 2  # int4, two per byte
    assert sizes["linear scales and tables"] > 0


@pytest.mark.parametrize("lowered", ["executorch"], indirect=True)
def test_executorch_shared_pieces_are_stored_once_and_run_as_simulated(lowered, tiny):
    """Shared pieces (the default): each Swin-block piece is an XNNPACK graph of its own; the 24 px method's three
    pieces of a block (windows 0-3, 4-7 and 5-8, the last overlapping the second) and the 16 px method's one piece
    (4 windows) are the same bytes, stored once, and both methods run like the simulation (the same values as one
    partition per method)."""
    from targets.executorch import _decoded

    _, target, artifact, deploy, _, _, _ = lowered
    assert target.config.shared_pieces and target.config.window_chunk == WINDOW_CHUNK == 4  # 4 and 9 windows
    pte, graphs = _decoded(artifact)
    graphs = iter(graphs)  # one per delegate call, in plan order
    pieces = collections.defaultdict(list)  # method -> payload of each delegate call that holds a piece
    stages = collections.defaultdict(list)  # and of each that holds the ops between pieces
    for plan in pte.program.execution_plan:
        for delegate in plan.delegates:
            name, graph = next(graphs)
            assert name == plan.name
            data = pte.program.backend_delegate_data[delegate.processed.index].data
            if any(node["xnode_union_type"] == "XNNSoftmax" for node in graph["xnodes"]):
                pieces[name].append(data)
            else:
                stages[name].append(data)
    # The stages between pieces of equal blocks are equal bytes too, also where their nodes' debug handles
    # interleave with the pieces' (three pieces a block at 24 px; xnnpack_payloads.compacted numbers them by rank).
    assert all(len(set(stages[name])) < len(stages[name]) for name in ("forward", "tile_24")), {
        name: (len(payloads), len(set(payloads))) for name, payloads in stages.items()}
    blocks = sum(isinstance(m, SwinTransformerBlock) for m in tiny.modules())
    assert len(pieces["forward"]) == len(set(pieces["forward"])) == blocks  # one piece per block, distinct weights
    assert len(pieces["tile_24"]) == 3 * blocks and set(pieces["tile_24"]) == set(pieces["forward"])
    calls = sum(len(plan.delegates) for plan in pte.program.execution_plan)
    # ExecuTorch writes each distinct payload once (``_extract_delegate_payloads``; read back, one per call): each
    # block's pieces once
    assert len({bytes(data.data) for data in pte.program.backend_delegate_data}) <= calls - 3 * blocks
    # Each piece's slice of the shift mask (windows, 1, N, N) is made once for all shifted blocks (CSEPass),
    # not once per block: each is a value of ExecuTorch's planned memory between partitions.
    plan = next(plan for plan in pte.program.execution_plan if plan.name == "tile_24")
    tokens = tiny.config.window_size ** 2
    mask_pieces = [value.val.sizes[0] for value in plan.values if type(value.val).__name__ == "Tensor"
                   and list(value.val.sizes[1:]) == [1, tokens, tokens] and value.val.sizes[0] < 9]
    assert sorted(mask_pieces) == [4, 4, 4]
    with torch.no_grad():
        for tile in TILES["executorch"]:
            x = torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(5))
            assert (target.runner(artifact, tile=tile)(x) - target.simulate(deploy)(x)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="shared_pieces needs window_chunk"):
        ExecuTorchConfig(window_chunk=None, shared_pieces=True)


@pytest.mark.parametrize("lowered", ["executorch"], indirect=True)
def test_executorch_program_holds_no_constant_an_xnnpack_graph_could_hold(lowered):
    """Every constant an XNNPACK graph reads is inside that graph, not a tensor record of the program passed to each
    call (LayerNorms' affines, scalar operands: 686 records, about 60 KB, in the x4 128 px method); the program
    flatbuffer stores each equal vector once (smaller than ExecuTorch's own packing of the same program) and the
    segments start on 16 bytes, not 128."""
    import executorch.exir._serialize._program as pte_format
    from executorch.exir._serialize._flatbuffer_program import _flatbuffer_to_program, _program_to_flatbuffer

    from targets.pte_program import SEGMENT_ALIGNMENT, compacted_program

    _, _, artifact, _, _, _, _ = lowered
    data = artifact.read_bytes()
    header = pte_format._ExtendedHeader.from_bytes(data[8:])
    flatbuffer = data[:header.program_size]
    program = _flatbuffer_to_program(flatbuffer)
    for plan in program.execution_plan:
        constants = {i for i, value in enumerate(plan.values)
                     if type(value.val).__name__ == "Tensor" and value.val.data_buffer_idx}
        args = collections.defaultdict(set)  # instruction kind -> the values it reads
        for instruction in plan.chains[0].instructions:
            args[type(instruction.instr_args).__name__].update(instruction.instr_args.args)
        assert args["DelegateCall"] and not args["DelegateCall"] & constants, plan.name
        # What stays outside: the fp16 tables the portable runtime widens before the first graph (export_graph).
        assert constants and constants <= args["KernelCall"], plan.name
    plain = _program_to_flatbuffer(program).data  # ExecuTorch's packing of the same tables
    assert len(flatbuffer) < 0.9 * len(plain)
    assert _flatbuffer_to_program(plain) == program == _flatbuffer_to_program(compacted_program(plain))
    ends = sorted((s.offset, s.offset + s.size) for s in program.segments)
    assert all(start % SEGMENT_ALIGNMENT == 0 for start, _ in ends)
    assert all(start - end < SEGMENT_ALIGNMENT for (_, end), (start, _) in zip(ends, ends[1:]))


@pytest.mark.parametrize("lowered", ["executorch"], indirect=True)
def test_executorch_lowering_shortcuts_write_the_same_pte(lowered, monkeypatch, tmp_path):
    """Provenance records sharing their chains (targets.shared_provenance), XNNPACK's preprocessing once per
    distinct partition (targets.xnnpack_preprocess_cache), a method re-sorted in place after each partition
    cut out of it (targets.partition_cuts) and decomposed once where XNNPACK keeps every op it asked to keep
    (targets.edge_decompositions) write the .pte that ExecuTorch's own way writes, byte for byte, with fewer
    partitions preprocessed than lowered."""
    import contextlib

    from targets import executorch

    _, target, artifact, deploy, weights, convs, info = lowered
    assert info["xnnpack_partitions_preprocessed"] < info["xnnpack_partitions_lowered"]
    for shortcut in ("shared_node_provenance", "preprocess_equal_partitions_once", "cuts_sorted_in_place",
                     "one_decomposition_when_every_kept_op_passes"):
        monkeypatch.setattr(executorch, shortcut, lambda: contextlib.nullcontext({}))
    target.lower(deploy, weights, TILE, plain := tmp_path / "plain.pte", convs=convs)
    assert plain.read_bytes() == artifact.read_bytes()


@pytest.fixture(scope="module", params=BACKENDS)
def lowered(request, tiny, bounds, tmp_path_factory):
    """One lowering at every tile size, no build around it (no baseline, scoring or timing): what the cheap
    checks below and their mutants need, at a third of a build's cost."""
    backend = request.param
    deploy, weights = _deploy(tiny, bounds, "snapped")
    deploy, convs = _convs(backend, deploy)
    target, artifact = get_target(_config(backend)), tmp_path_factory.mktemp(backend) / f"model.{backend}"
    info = target.lower(deploy, weights, TILE, artifact, convs=convs)
    return backend, target, artifact, deploy, weights, convs, info


def test_lowered_artifact_has_no_redundant_bytes(lowered, tiny, tmp_path):
    """No second copy of the codes (.pte); no inner tensor names, empty quantization tables or integer-valued float32
    constants (.tflite).

    The PT2E quantizer's own int8 codes, scales and int64 zero points left in the program beside XNNPACK's
    packed copy were 6.5 KB of "other constants" here (770 KB at x4); litert-torch's module-path tensor
    names were 30 KB here (400 KB at x4). Both baselines and artifacts are written by the code checked here.
    """
    from targets.base import export_copy, size_breakdown

    backend, target, artifact, deploy, weights, _, _ = lowered
    exports = torch.nn.ModuleList([export_copy(deploy, tile) for tile in TILES[backend]])
    sizes = size_breakdown(artifact.stat().st_size, target.stored_constants(artifact, weights), exports)
    assert sizes["other constants"] < SHAPE_CONSTANT_BYTES * len(TILES[backend]), sizes
    tables = _bias_table_bytes(backend, exports[0], fp16=True)  # IntegerConfig.bias_tables: fp16 by default
    assert tables <= sizes["bias tables"] <= 1.5 * tables, sizes
    if backend == "tflite":
        from ai_edge_litert.tools import flatbuffer_utils

        def artifacts():
            """The artifact, then the baseline, lowered only once the artifact passed (a mutant fails sooner)."""
            yield artifact
            target.lower_baseline(tiny, TILE, baseline := tmp_path / "baseline.tflite")
            yield baseline

        for path in artifacts():
            flatbuffer = flatbuffer_utils.read_model(str(path))
            for graph in flatbuffer.subgraphs:  # one per tile size
                named = {i for i, t in enumerate(graph.tensors) if t.name}
                assert named == set(graph.inputs) | set(graph.outputs), path.name
                assert all(t.quantization is None or t.quantization.scale is not None for t in graph.tensors), path.name
                floats = [np.frombuffer(bytes(flatbuffer.buffers[t.buffer].data), np.float32).reshape(t.shape)
                          for t in graph.tensors
                          if t.type == 0 and t.buffer and flatbuffer.buffers[t.buffer].data is not None]  # FLOAT32
                integer_valued = [v.size for v in floats
                                  if v.size >= _MIN_NARROW_ELEMENTS and np.array_equal(v, np.round(v))]
                assert not integer_valued, path.name  # the mask and one-hots are INT8 codes behind a DEQUANTIZE
                # No constant broadcast over the window chunk's batch: each LayerNorm gamma once, not once per window
                # (737 KB at x4 when UnfoldedLayerNorm's input dependence kept the batch).
                rows = [v.reshape(-1, v.shape[-1]) for v in floats if v.ndim > 1]
                broadcast = [r.shape for r in rows if len(r) > 1 and (r == r[:1]).all()]
                assert not broadcast, (path.name, broadcast)
            # Equal vectors (zero points, shapes) are stored once: written the usual way, the file grows by at least
            # the repeated zero points.
            zero_points = [np.asarray(t.quantization.zeroPoint, np.int64) for graph in flatbuffer.subgraphs
                           for t in graph.tensors if t.quantization is not None]
            repeated = sum(z.nbytes for z in zero_points) - sum(len(b) for b in {z.tobytes() for z in zero_points})
            assert repeated > 0
            unshared = len(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))
            assert path.stat().st_size <= unshared - repeated, path.name


def test_lowered_graph_is_rank_4_and_every_method_is_read_back(lowered):
    """The lowered graph alone (``test_no_tensor_above_rank_4`` checks the built artifact and its baseline):
    no tensor above rank 4; ExecuTorch's verification reads back every tile method, not only the first."""
    backend, target, artifact, _, weights, convs, _ = lowered
    graph = target.graph_summary(artifact)
    assert graph["max_rank"] <= 4 and graph["above_rank_4"] == {}, graph
    verified = target.verify(artifact, weights, convs=convs)
    if backend == "executorch":
        assert verified["methods_verified"] == ["forward", "tile_24"]


def test_integer_targets_report_reads_the_build_manifest(built):
    """benchmarks.integer_targets summarises real manifests (their latency holds notes beside the thread counts)."""
    from benchmarks.integer_targets import summary

    backend, result = built
    (line,) = summary({f"{backend}-w4": result.manifest}, [backend])
    paired = result.manifest["latency"]["threads_1"]["paired_speedup_median"]
    assert line.startswith(f"- {backend}: int4 artifacts {paired:.2f}-{paired:.2f}x as fast as FP32 (paired, 1 threads")


def test_tflite_int8_convolutions_are_stored_exactly_and_run_as_simulated(tiny, bounds, baselines, tmp_path):
    """``conv_weights="int8"``: INT8 filters + per-channel scales behind a DEQUANTIZE, read back equal, run exactly."""
    from targets.base import int8_convolutions

    config = TFLiteConfig(tile=TILE, conv_weights="int8")
    result = build(tiny, bounds, config, tmp_path / "out", checks=BuildChecks(baseline_cache=baselines))
    m, artifact = result.manifest, result.folder / result.manifest["artifact"]
    convs = [mod for mod in tiny.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert m["convolutions"]["convolutions"] == m["verification"]["int8_convolutions"] == len(convs)
    assert m["graph"]["ops"]["DEQUANTIZE"] == (len(convs) * len(m["tiles"]) + m["integer_constants_int8"]
                                               + m["fp16_constants"])
    channels, codes = sum(c.out_channels for c in convs), sum(c.weight.numel() for c in convs)
    # an fp32 scale per channel, an int64 zero point per channel unless an equal vector is stored already
    assert codes + 4 * channels <= m["size_breakdown"]["artifact"]["convolutions"] <= codes + 12 * channels
    deploy, weights = _deploy(tiny, bounds, "snapped")
    deploy, grids, _ = int8_convolutions(deploy)
    target = get_target(config)
    x = torch.rand(1, 3, TILE, TILE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (target.runner(artifact)(x) - target.simulate(deploy)(x)).abs().max().item() < 1e-4
    assert_verify_checks_conv_grids(target, artifact, weights, grids)


def test_executorch_int8_convolutions_are_stored_exactly_and_run_as_simulated(tiny, bounds, baselines, tmp_path):
    """``conv_weights="int8"`` in ExecuTorch: every convolution an f32 x qc8w fully connected op over its 3x3
    patches (no XNNPACK convolution left, no input quantized), codes read back equal, every method equal to the
    simulation with the int8 filters and away from the one with float filters."""
    from targets.base import int8_convolutions

    config = _config("executorch", conv_weights="int8")  # the FP32 baseline of `built`, from the cache
    result = build(tiny, bounds, config, tmp_path / "out", checks=BuildChecks(baseline_cache=baselines))
    m, artifact = result.manifest, result.folder / result.manifest["artifact"]
    convs = [mod for mod in tiny.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert m["convolutions"]["convolutions"] == m["verification"]["int8_convolutions"] == len(convs)
    assert "XNNConv2d" not in m["graph"]["ops"] and m["verification"]["convolution_filters"] == {}
    linears = sum(isinstance(mod, torch.nn.Linear) for mod in tiny.modules())
    # one XNNPACK convert to int8 in front of each quantized Linear (once per window chunk), none for the convolutions
    assert m["graph"]["ops"]["XNNConvert"] == sum(linears * _chunks(tile) for tile in TILES["executorch"])
    codes, channels = sum(c.weight.numel() for c in convs), sum(c.out_channels for c in convs)
    assert codes + 4 * channels <= m["size_breakdown"]["artifact"]["convolutions"] <= codes + 8 * channels
    deploy, weights = _deploy(tiny, bounds, "snapped")
    deploy, grids, _ = int8_convolutions(deploy)
    target = get_target(config)
    float_filters = target.simulate(_deploy(tiny, bounds, "snapped")[0])
    with torch.no_grad():
        for tile in TILES["executorch"]:
            x = torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(4))
            out = target.runner(artifact, tile=tile)(x)
            assert (out - target.simulate(deploy)(x)).abs().max().item() < 1e-4
            assert (out - float_filters(x)).abs().max().item() > 1e-3  # the int8 filters are what runs
    assert_verify_checks_conv_grids(target, artifact, weights, grids)


def test_patch_convolution_equals_the_convolution_in_float64():
    """:class:`targets.xnnpack_convs.PatchConv` computes the 3x3 convolution it replaces (float64, odd sizes, no
    bias too) and refuses the convolutions it cannot write as patches."""
    from targets.xnnpack_convs import PatchConv, conv_codes, patch_codes

    torch.manual_seed(0)
    for bias in (True, False):
        conv = torch.nn.Conv2d(5, 7, 3, 1, 1, bias=bias).double()
        x = torch.randn(1, 5, 9, 13, dtype=torch.float64)
        assert (PatchConv(conv)(x) - conv(x)).abs().max().item() < 1e-12
    codes = torch.arange(7 * 5 * 9).reshape(7, 5, 3, 3)
    assert torch.equal(patch_codes(codes).reshape(7, 3, 3, 5).permute(0, 3, 1, 2), codes)
    assert np.array_equal(conv_codes(patch_codes(codes).numpy()), codes.numpy())  # the read-back's inverse
    for odd in (torch.nn.Conv2d(5, 7, 1), torch.nn.Conv2d(5, 7, 3, 2, 1), torch.nn.Conv2d(6, 6, 3, 1, 1, groups=2)):
        with pytest.raises(TargetError, match="only 3x3 convolutions of stride 1, padding 1"):
            PatchConv(odd)


def test_tflite_exact_2_bit_grids_are_stored_as_int2_and_run_as_simulated(tiny, baselines, tmp_path):
    """``--bits 2 --int-grid exact``: codes ``k - 2`` and the offset rows' +-1 fill INT2 (four per byte), read back
    equal to the calibrated grid and run in LiteRT as simulated; snapped 2-bit grids stay INT4."""
    bounds = tiny_bounds(tiny, 2, TILE)
    config = TFLiteConfig(tile=TILE, int_grid="exact")
    result = build(tiny, bounds, config, tmp_path / "out", checks=BuildChecks(baseline_cache=baselines))
    m, artifact = result.manifest, result.folder / result.manifest["artifact"]
    linears = [mod for mod in tiny.modules() if isinstance(mod, torch.nn.Linear)]
    assert m["stored_bits"] == 2 and m["integer_grid"]["container"] == "int2"
    assert m["verification"]["index_dtypes"] == {"INT2 (codes k+z, zero point 0)": len(linears)}
    groups = [3 if mod.out_features == 3 * mod.in_features else 1 for mod in linears]
    codes = sum((mod.out_features + g) * mod.in_features for mod, g in zip(linears, groups))
    assert codes // 4 <= m["size_breakdown"]["artifact"]["linear weights"] <= 1.1 * codes // 4  # four per byte
    stored = _stored("tflite", artifact)
    assert all(c.min() >= -2 and c.max() <= 1 for c, _ in stored) and len(stored) == len(linears)
    deploy, weights = _deploy(tiny, bounds, "exact", "int2")
    deploy, _ = _convs("tflite", deploy)
    x = torch.rand(1, 3, TILE, TILE, generator=torch.Generator().manual_seed(5))
    target = get_target(config)
    with torch.no_grad():
        assert (target.runner(artifact)(x) - target.simulate(deploy)(x)).abs().max().item() < 1e-4
    assert get_target(TFLiteConfig(tile=TILE)).container_for(2) == "int4"  # snapped: the grid would move


def test_baseline_cache_is_keyed_by_what_shapes_the_baseline(tiny, tmp_path, monkeypatch):
    """The FP32 baseline cache reuses a baseline only for the same graph layout: ``shared_pieces`` or
    ``window_chunk`` changed lowers again, another ``conv_weights`` (artifact only) does not."""
    from pipeline.build import _baseline

    lowered = []

    def lower_baseline(self, model, tile, path):
        lowered.append(self.config)
        path.write_bytes(b"pte")
        return {"lowered": len(lowered)}

    monkeypatch.setattr(type(get_target("executorch")), "lower_baseline", lower_baseline)
    configs = [_config("executorch"), _config("executorch", conv_weights="float"),
               _config("executorch", shared_pieces=False), _config("executorch", window_chunk=WINDOW_CHUNK + 1)]
    for config in configs:
        _baseline(get_target(config), tiny, TILE, tmp_path / "baseline.pte", tmp_path / "cache")
    assert lowered == [configs[0], configs[2], configs[3]]


def test_a_further_tile_size_is_timed_paired_against_the_baseline_at_that_size(built):
    """``targets.latency.measure`` at a non-primary tile runs that size's method or signature in the artifact and in
    the FP32 baseline (the baseline once ran its primary one and failed: benchmarks.upscale_photo's chunk table)."""
    from targets.latency import measure

    backend, result = built
    m = result.manifest
    r = measure(backend, result.folder / m["artifact"], TILES[backend][1], 1, runs=2, warmup=0,
                baseline=result.folder / m["baseline"]["artifact"])
    assert r["artifact"]["runs"] == r["fp32_baseline"]["runs"] == 2 and r["paired_speedup_median"] > 0


@pytest.mark.parametrize("conv_weights", ["fp16", "float"])
def test_executorch_simulation_holds_the_filters_as_the_artifact_stores_them(conv_weights, tiny):
    """ExecuTorch stores fp16 filters by default; its simulation must hold the same values (fp32 tensors)."""
    def filters(model):
        return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    simulated = get_target(ExecuTorchConfig(conv_weights=conv_weights)).simulate(tiny)
    assert all(not torch.equal(w.half().float(), w) for w in filters(tiny))  # rounding shows on every filter
    for original, held in zip(filters(tiny), filters(simulated), strict=True):
        assert held.dtype == torch.float32
        assert torch.equal(held, original.half().float() if conv_weights == "fp16" else original)


@pytest.mark.parametrize("lowered", ["executorch"], indirect=True)
def test_executorch_verify_reads_back_the_filters_precision(lowered):
    """The default .pte holds every filter in fp16; a config that stores them in fp32 refuses it, and a filter that
    fp16 does not hold exactly stops the lowering instead of being rounded silently."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from targets.executorch import conv_filter_types, fp16_conv_filters

    _, target, artifact, deploy, weights, convs, _ = lowered
    count = sum(isinstance(m, torch.nn.Conv2d) for m in deploy.modules())
    assert target.verify(artifact, weights, convs)["convolution_filters"] == {"fp16": count}
    assert all(types == ["xnn_datatype_fp16"] * count for types in conv_filter_types(artifact).values())
    with pytest.raises(TargetError, match=f"{count} of its {count} convolution filters are fp16"):
        get_target(_config("executorch", conv_weights="float")).verify(artifact, weights, convs)
    conv = torch.nn.Conv2d(3, 4, 3).eval()  # random filters: not fp16 values
    with fp16_conv_filters(), pytest.raises(TargetError, match="not exact in fp16"):
        to_edge_transform_and_lower(torch.export.export(conv, (torch.rand(1, 3, 8, 8),)),
                                    partitioner=[XnnpackPartitioner()])


@pytest.mark.parametrize("config", [CoreMLConfig, TFLiteConfig])
def test_fp16_filters_are_executorch_only(config):
    with pytest.raises(ValueError, match="conv_weights='fp16' is not a (coreml|tflite) option"):
        config(conv_weights="fp16")


@pytest.mark.parametrize("config", [ExecuTorchConfig, TFLiteConfig])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_simulation_holds_the_bias_tables_as_the_artifact_stores_them(config, precision, tiny):
    """The artifact stores fp16 tables by default; its simulation must round them the same way, or the two differ."""
    def tables(model):
        return [m.relative_position_bias_table for m in model.modules() if hasattr(m, "relative_position_bias_table")]

    simulated = get_target(config(bias_tables=precision)).simulate(tiny)
    assert any(not torch.equal(t.half().float(), t) for t in tables(tiny))  # rounding shows on these tables
    for original, held in zip(tables(tiny), tables(simulated), strict=True):
        assert torch.equal(held, original.half().float() if precision == "fp16" else original)
