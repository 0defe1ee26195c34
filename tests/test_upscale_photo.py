"""`pipeline upscale` as a photo tool: orientation, alpha, grayscale, metadata, formats, 16 bits, bad input.

Cheap upscalers only (MATLAB bicubic, nearest neighbour) and images of a few dozen pixels.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from test_images import write_header_bomb, write_png16

from pipeline.cli import main
from pipeline.evaluate import bicubic_upscaler
from pipeline.upscale import AlphaMethod, UpscaleConfig, upscale_file
from srcore.images import to_tensor, to_uint8
from srcore.imresize import imresize
from srcore.tiling import upscale_tiled

TILE, OVERLAP = 16, 8  # several tiles and bands on 24x36 images; overlap/4 = 2 px covers the bicubic support


def _nearest(tile: torch.Tensor) -> torch.Tensor:
    """x2 pixel repetition: exact at any bit depth, so 16-bit outputs can be compared sample for sample."""
    return tile.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


@pytest.fixture
def rgb() -> np.ndarray:
    yy, xx = np.mgrid[0:24, 0:36] / 36
    return (np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (2 * xx + c * yy)) for c in range(3)], -1) * 255).astype(np.uint8)


def _bicubic_tiled(rgb: np.ndarray) -> np.ndarray:
    return to_uint8(upscale_tiled(bicubic_upscaler(2), to_tensor(rgb), 2, TILE, OVERLAP))


def _up(src, dst, upscaler=None, **config):
    return upscale_file(upscaler or bicubic_upscaler(2), src, dst, 2, TILE, OVERLAP, progress=False,
                        config=UpscaleConfig(**config))


def test_exif_rotated_jpeg_comes_out_upright_with_orientation_1(rgb, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # phone held upright: stored sideways, displayed rotated 90 deg clockwise
    exif.get_ifd(0x8769).update({0xA002: 36, 0xA003: 24})  # PixelXDimension, PixelYDimension
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    report = _up(tmp_path / "phone.jpg", tmp_path / "up.png")
    assert report.input_size == (36, 24) and report.output_size == (72, 48)
    with Image.open(tmp_path / "phone.jpg") as im:
        upright = np.rot90(np.asarray(im), -1)
    with Image.open(tmp_path / "up.png") as out:
        np.testing.assert_array_equal(np.asarray(out), _bicubic_tiled(upright))
        written = out.getexif()
    assert written[0x0112] == 1 and written.get_ifd(0x8769) == {0xA002: 48, 0xA003: 72}


@pytest.mark.parametrize("method", list(AlphaMethod))
def test_rgba_hole_stays_transparent_and_the_rest_opaque(rgb, tmp_path, method):
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[8:16, 12:24] = 0  # the transparent hole
    alpha[:, 30:] = 128  # half transparent strip: upscaled, not snapped
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")

    def brightened(tile):  # a model that never outputs exactly 0 or 1, so snapping is visible
        return bicubic_upscaler(2)(tile) * 0.9 + 0.05

    _up(tmp_path / "rgba.png", tmp_path / "up.png", upscaler=brightened, alpha=method)
    with Image.open(tmp_path / "up.png") as out:
        assert out.mode == "RGBA"
        sr = np.asarray(out)
    sr_alpha = sr[:, :, 3]
    assert (sr_alpha[20:28, 28:44] == 0).all()  # SR pixels whose LR 5x5 neighbourhood is all in the hole
    assert (sr_alpha[:8, :52] == 255).all() and (sr_alpha[:, :52].min(), sr_alpha[:, :52].max()) == (0, 255)
    assert abs(int(sr_alpha[24, 66]) - (128 if method is AlphaMethod.BICUBIC else 0.9 * 128 + 13)) <= 1
    if method is AlphaMethod.BICUBIC:
        expected = np.rint(np.clip(imresize(alpha / 255.0, 2), 0, 1) * 255)
        assert np.abs(sr_alpha - expected).max() <= 1  # MATLAB bicubic, float then rounded once


def test_grayscale_stays_grayscale_and_gray_alpha_too(rgb, tmp_path):
    gray = rgb[:, :, 1]
    Image.fromarray(gray).save(tmp_path / "g.png")
    _up(tmp_path / "g.png", tmp_path / "g2.png")
    with Image.open(tmp_path / "g2.png") as out:
        assert out.mode == "L"
        np.testing.assert_array_equal(np.asarray(out), _bicubic_tiled(np.dstack([gray] * 3))[:, :, 0])
    Image.fromarray(np.dstack([gray, np.full_like(gray, 200)])).save(tmp_path / "la.png")
    _up(tmp_path / "la.png", tmp_path / "la2.png")
    with Image.open(tmp_path / "la2.png") as out:
        assert out.mode == "LA" and (np.asarray(out)[:, :, 1] == 200).all()


def test_palette_is_expanded_and_reported(tmp_path):
    Image.new("P", (12, 10), 3).save(tmp_path / "p.png")
    report = _up(tmp_path / "p.png", tmp_path / "p2.png")
    assert report.notes == ("palette image expanded to RGB",)
    with Image.open(tmp_path / "p2.png") as out:
        assert out.mode == "RGB" and out.size == (24, 20)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_icc_profile_and_exif_are_carried_over(rgb, tmp_path, suffix):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0100], exif[0x0101] = 36, 24  # ImageWidth, ImageLength
    Image.fromarray(rgb).save(tmp_path / "in.png", icc_profile=srgb, exif=exif)
    report = _up(tmp_path / "in.png", tmp_path / f"out{suffix}")
    assert report.notes == ()
    with Image.open(tmp_path / f"out{suffix}") as out:
        assert out.info["icc_profile"] == srgb
        written = out.getexif()
    assert (written[0x010F], written[0x0100], written[0x0101]) == ("PhoneMaker", 72, 48)


def test_cmyk_jpeg_becomes_rgb_and_its_cmyk_profile_is_not_copied(tmp_path):
    cmyk_icc = bytes(16) + b"CMYK" + bytes(108)  # header only: the colour-space field is what decides
    Image.new("CMYK", (20, 10), (0, 200, 200, 0)).save(tmp_path / "c.jpg", icc_profile=cmyk_icc)
    report = _up(tmp_path / "c.jpg", tmp_path / "c.png")
    assert "CMYK converted to RGB" in report.notes[0] and "CMYK colour profile" in report.notes[1]
    with Image.open(tmp_path / "c.png") as out:
        assert out.mode == "RGB" and "icc_profile" not in out.info
        r, g, b = np.asarray(out)[10, 20]
    assert r > 200 and g < 100 and b < 100  # magenta + yellow ink = red


def test_jpeg_quality_and_webp_lossless_or_lossy(rgb, tmp_path):
    Image.fromarray(rgb).save(tmp_path / "in.png")
    _up(tmp_path / "in.png", tmp_path / "ref.png")
    with Image.open(tmp_path / "ref.png") as ref:
        expected = np.asarray(ref)
    _up(tmp_path / "in.png", tmp_path / "lossless.webp")
    with Image.open(tmp_path / "lossless.webp") as out:
        np.testing.assert_array_equal(np.asarray(out), expected)
    _up(tmp_path / "in.png", tmp_path / "lossy.webp", quality=30)
    with Image.open(tmp_path / "lossy.webp") as out:
        assert not np.array_equal(np.asarray(out), expected)
    _up(tmp_path / "in.png", tmp_path / "q95.jpg")
    _up(tmp_path / "in.png", tmp_path / "q20.jpg", quality=20)
    assert (tmp_path / "q20.jpg").stat().st_size < (tmp_path / "q95.jpg").stat().st_size
    with Image.open(tmp_path / "q95.jpg") as out:
        assert np.abs(np.asarray(out).astype(int) - expected).mean() < 2


def test_unstreamed_output_above_max_memory_is_refused_up_front(tmp_path):
    Image.new("RGB", (400, 400)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"800x800 JPEG output needs about 2 MB .* above --max-memory 1 MB"):
        _up(tmp_path / "big.png", tmp_path / "big.jpg", max_memory_mb=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_16_bit_png_out_with_bit_depth_16_else_8_bit_with_a_note(tmp_path):
    wide = np.random.default_rng(0).integers(0, 65536, (10, 14, 4)).astype(np.uint16)
    write_png16(tmp_path / "c16.png", wide)
    nearest = {"upscaler": _nearest, "alpha": AlphaMethod.MODEL}  # alpha through the (exact) model too
    report = _up(tmp_path / "c16.png", tmp_path / "out16.png", bit_depth=16, **nearest)
    assert report.notes == ()
    expected = wide.repeat(2, axis=0).repeat(2, axis=1)
    write_png16(tmp_path / "expected.png", expected)  # this writer's file is checked against PIL in test_images
    assert _png16_samples(tmp_path / "out16.png") == _png16_samples(tmp_path / "expected.png")

    report = _up(tmp_path / "c16.png", tmp_path / "out8.png", **nearest)
    assert report.notes == ("16-bit input written as 8-bit (--bit-depth 16 keeps 16 bits in a PNG)",)
    with Image.open(tmp_path / "out8.png") as out:
        assert out.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(out), np.rint(expected / 257).astype(np.uint8))


def _png16_samples(path) -> bytes:
    """Decoded 16-bit samples through pypng, an independent reader."""
    import png

    width, height, rows, info = png.Reader(filename=str(path)).read()
    assert info["bitdepth"] == 16
    return b"".join(np.asarray(row, dtype=">u2").tobytes() for row in rows)


def _bad_inputs(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "good.png")
    Image.fromarray(rgb).save(tmp_path / "full.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:600])
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    write_header_bomb(tmp_path / "bomb.png")
    Image.fromarray(np.dstack([rgb, rgb[:, :, 0]])).save(tmp_path / "rgba.png")
    (tmp_path / "a_file").write_text("")
    return {
        "truncated": (["truncated.jpg", "out.png"], "(?i)truncated.jpg: OSError: .*truncated"),
        "corrupt": (["corrupt.png", "out.png"], "cannot read image .*corrupt.png"),
        "unsupported input": (["notes.txt", "out.png"], "notes.txt: UnidentifiedImageError"),
        "bomb": (["bomb.png", "out.png"], "bomb.png: DecompressionBombError: Image size \\(10000000000 pixels\\)"),
        "same path": (["good.png", "good.png"], "is the input; choose another output name"),
        "unwritable": (["good.png", "a_file/sub/out.png"], "cannot write .*a_file/sub/out.png: .*a_file is a file, "),
        "unsupported output": (["good.png", "out.gif"], "the output format follows the extension"),
        "alpha to jpeg": (["rgba.png", "out.jpg"], "JPEG cannot hold the alpha channel"),
        "16 bits to jpeg": (["good.png", "out.jpg", "--bit-depth", "16"], "--bit-depth 16 needs a .png output"),
    }


@pytest.mark.parametrize("case", ["truncated", "corrupt", "unsupported input", "bomb", "same path", "unwritable",
                                  "unsupported output", "alpha to jpeg", "16 bits to jpeg"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(rgb, tmp_path, capsys, case):
    files, message = _bad_inputs(tmp_path, rgb)[case]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert main(["upscale", *(str(tmp_path / f) if i < 2 else f for i, f in enumerate(files)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err), err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before



def test_lossless_webp_keeps_colour_under_transparent_pixels(rgb, tmp_path):
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[4:20, 4:30] = 0
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    _up(tmp_path / "rgba.png", tmp_path / "out.png")
    _up(tmp_path / "rgba.png", tmp_path / "out.webp")
    with Image.open(tmp_path / "out.png") as png_out, Image.open(tmp_path / "out.webp") as webp_out:
        np.testing.assert_array_equal(np.asarray(webp_out), np.asarray(png_out))


def test_permission_denied_is_one_clear_error(rgb, tmp_path, monkeypatch):
    """As root nothing is read-only, so the refusal of the file system is simulated."""
    Image.fromarray(rgb).save(tmp_path / "in.png")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr("pathlib.Path.mkdir", denied)
    with pytest.raises(ValueError, match=r"cannot write .*out.png \(in .*locked\): Permission denied"):
        _up(tmp_path / "in.png", tmp_path / "locked" / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]
