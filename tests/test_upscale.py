"""`pipeline upscale` (streamed PNG, atomic output even on Ctrl-C), build folders, and the golden vectors the apps share."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import write_wave_images
from PIL import Image

from pipeline.artifacts import BuildFolderError, load_build
from pipeline.cli import main
from pipeline.evaluate import bicubic_upscaler, model_upscaler
from pipeline.golden import GOLDEN_PATH, golden_vectors, pack_argb, unpack_argb
from pipeline.upscale import upscale_file
from srcore.images import load_rgb, to_tensor, to_uint8
from srcore.model import build_model
from srcore.tiling import upscale_tiled


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny", 2).eval()


@pytest.fixture
def photo(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return next(write_wave_images(folder, 1, 45, 70, noise=0.05).glob("*.png"))


def test_streamed_png_equals_the_tiled_result(tiny, photo, tmp_path, one_thread):
    run = model_upscaler(tiny)
    report = upscale_file(run, photo, tmp_path / "sr.png", scale=2, tile=24, overlap=6, progress=False)
    expected = to_uint8(upscale_tiled(run, to_tensor(load_rgb(photo)), 2, 24, 6))
    np.testing.assert_array_equal(load_rgb(tmp_path / "sr.png"), expected)
    assert report.input_size == (45, 70) and report.output_size == (90, 140) and report.tiles == 3 * 4
    assert list(tmp_path.glob(".*partial*")) == []


def test_failure_leaves_no_output(photo, tmp_path):
    def broken(tile):
        raise RuntimeError("runtime crashed")

    with pytest.raises(RuntimeError, match="runtime crashed"):
        upscale_file(broken, photo, tmp_path / "sr.png", scale=2, tile=24, overlap=6, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_ctrl_c_mid_upscale_leaves_nothing(photo, tmp_path, suffix):
    """KeyboardInterrupt is no Exception: the clean-up must catch BaseException, or Ctrl-C leaves a partial file."""
    calls = []

    def interrupted(tile):
        calls.append(tile)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return bicubic_upscaler(2)(tile)

    with pytest.raises(KeyboardInterrupt):
        upscale_file(interrupted, photo, tmp_path / f"sr{suffix}", scale=2, tile=24, overlap=6, progress=False)
    assert len(calls) == 2 and [p.name for p in tmp_path.iterdir()] == ["in"]


def test_cli_errors_are_one_line(photo, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["upscale", str(corrupt), str(tmp_path / "sr.png"), "--tile", "16", "--quiet"]) == 2
    assert "corrupt.png" in capsys.readouterr().err
    assert main(["upscale", str(photo), str(tmp_path / "sr.gif"), "--quiet"]) == 2
    assert "the output format follows the extension" in capsys.readouterr().err
    assert main(["upscale", str(photo), str(tmp_path / "sr.png"), "--artifact", str(tmp_path)]) == 2
    assert "not a build folder" in capsys.readouterr().err
    assert not (tmp_path / "sr.png").exists()


def test_build_folder_errors(tmp_path):
    with pytest.raises(BuildFolderError, match="no manifest.json"):
        load_build(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BuildFolderError, match="not a valid build manifest"):
        load_build(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"target": "tflite", "artifact": "model.tflite", "tile": 64,
                                                        "scale": 4, "weight_bits": 4}))
    with pytest.raises(BuildFolderError, match="model.tflite named by"):
        load_build(tmp_path)


def _same(a, b) -> bool:
    """JSON values equal, floats to 1e-12 relative (the file went through text)."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_golden_vectors_file_is_what_the_pipeline_computes():
    """If this fails, the pipeline's tiling/packing changed: rerun `python -m pipeline.golden` and fix the apps."""
    assert _same(json.loads(GOLDEN_PATH.read_text()), json.loads(json.dumps(golden_vectors())))


def test_pixel_packing_round_trips_against_pillow():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    argb = np.array(Image.fromarray(rgb).convert("RGBA"), dtype=np.uint32)  # independent: Pillow's channel order
    ints = (argb[..., 3] << 24) | (argb[..., 0] << 16) | (argb[..., 1] << 8) | argb[..., 2]
    chw = pack_argb(ints)
    np.testing.assert_array_equal(chw, rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    np.testing.assert_array_equal(unpack_argb(chw), ints | 0xFF000000)
