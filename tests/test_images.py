"""Tests for srcore.images: every PIL mode loads as uint8 RGB, broken files raise ImageReadError; load_photo keeps
orientation, alpha, grayscale, 16 bits and metadata."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from srcore.images import ImageReadError, load_photo, load_rgb, save_rgb, to_tensor, to_uint8


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _sub_filter(row: bytes, bpp: int) -> bytes:
    raw = np.frombuffer(row, dtype=np.uint8).astype(np.int32)
    out = raw.copy()
    out[bpp:] = (raw[bpp:] - raw[:-bpp]) % 256
    return bytes([1]) + out.astype(np.uint8).tobytes()


def write_png16(path: Path, array: np.ndarray) -> None:
    """Minimal 16-bit PNG writer (PIL cannot write 16-bit RGB). Rows alternate None/Sub filters."""
    h, w, c = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = []
    for i in range(h):
        row = array[i].astype(">u2").tobytes()
        rows.append(b"\x00" + row if i % 2 == 0 else _sub_filter(row, 2 * c))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _png_chunk(b"IEND", b"")
    )


def _expected16(v: np.ndarray) -> np.ndarray:
    return np.floor(v.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)


def test_rgb_png_roundtrip(tmp_path: Path, rgb: np.ndarray) -> None:
    path = save_rgb(tmp_path / "sub" / "dir" / "a.png", rgb)
    assert path.is_file()
    out = load_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (6, 9, 3)
    np.testing.assert_array_equal(out, rgb)
    # Atomic write leaves no temporary file behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.png"]


def test_save_overwrites_and_validates(tmp_path: Path, rgb: np.ndarray) -> None:
    save_rgb(tmp_path / "a.png", rgb)
    save_rgb(tmp_path / "a.png", rgb[::-1].copy())
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.png"), rgb[::-1])
    with pytest.raises(ValueError, match="uint8"):
        save_rgb(tmp_path / "b.png", rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        save_rgb(tmp_path / "b.png", rgb[:, :, :1])
    assert not (tmp_path / "b.png").exists()


def test_grayscale_l(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_la_and_rgba_drop_alpha(tmp_path: Path, rgb: np.ndarray) -> None:
    alpha = np.zeros(rgb.shape[:2], dtype=np.uint8)  # fully transparent: values must survive
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "rgba.png"), rgb)

    gray = rgb[:, :, 0]
    Image.fromarray(np.dstack([gray, alpha]), mode="LA").save(tmp_path / "la.png")
    out = load_rgb(tmp_path / "la.png")
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_palette(tmp_path: Path) -> None:
    im = Image.new("P", (5, 4))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 9))
    im.putdata([0, 1, 2, 1, 0] * 4)
    im.save(tmp_path / "p.png")
    out = load_rgb(tmp_path / "p.png")
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(out[0, 2], [0, 0, 255])


def test_gray16(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 385, 386], [1000, 30000, 65000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
    out = load_rgb(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (2, 5, 3)
    np.testing.assert_array_equal(out[:, :, 1], _expected16(values))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 1, 2])


@pytest.mark.parametrize("channels", [3, 4])
def test_rgb16_png_uses_full_precision(tmp_path: Path, channels: int) -> None:
    values = np.random.default_rng(2).integers(0, 65536, (5, 7, channels)).astype(np.uint16)
    values[0, 0, :3] = [200, 128, 129]  # high byte alone would give 0, 0, 0
    write_png16(tmp_path / "c16.png", values)
    out = load_rgb(tmp_path / "c16.png")
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, _expected16(values[:, :, :3]))
    np.testing.assert_array_equal(out[0, 0], [1, 0, 1])


def test_cmyk_jpeg_and_1x1(tmp_path: Path) -> None:
    Image.new("CMYK", (3, 2), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    out = load_rgb(tmp_path / "c.jpg")
    assert out.shape == (2, 3, 3) and out.min() > 240  # no ink = white
    Image.new("RGB", (1, 1), (7, 8, 9)).save(tmp_path / "one.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "one.png"), [[[7, 8, 9]]])


def _assert_read_error(path: Path) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        load_rgb(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert isinstance(info.value, ValueError)
    return info.value


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes())
    _assert_read_error(path)


def test_truncated_png(tmp_path: Path) -> None:
    noisy = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / "full.png"
    Image.fromarray(noisy).save(full)
    data = full.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    _assert_read_error(cut)


def test_empty_missing_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _assert_read_error(empty)
    err = _assert_read_error(tmp_path / "missing.png")
    assert "not found" in err.reason
    (tmp_path / "folder.png").mkdir()
    _assert_read_error(tmp_path / "folder.png")
    text = tmp_path / "notes.png"
    text.write_text("hello, not an image\n")
    _assert_read_error(text)


def test_tensor_roundtrip(rgb: np.ndarray) -> None:
    t = to_tensor(rgb)
    assert t.dtype == torch.float32 and t.shape == (1, 3, 6, 9)
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert float(t[0, 1, 2, 3]) == pytest.approx(rgb[2, 3, 1] / 255.0)
    np.testing.assert_array_equal(to_uint8(t), rgb)
    np.testing.assert_array_equal(to_uint8(t[0]), rgb)


def test_to_uint8_clamps_and_rounds() -> None:
    t = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 2.0, float("nan")]).view(1, 1, 7).expand(3, 1, 7)
    out = to_uint8(t)
    assert out.dtype == np.uint8 and out.shape == (1, 7, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 0, 2, 255, 255, 0])  # half to even
    with pytest.raises(ValueError, match="shape"):
        to_uint8(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="floating"):
        to_uint8(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(np.zeros((4, 4, 3), dtype=np.float32))


def write_header_bomb(path: Path, side: int = 100_000) -> None:
    """A 100-byte PNG whose header declares side x side pixels (10 billion by default)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0"))
                     + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_photo_applies_exif_orientation_like_pillow(tmp_path: Path, rgb: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o.png", exif=exif)  # PNG: lossless, so pixels compare exactly
    photo = load_photo(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        upright = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(photo.pixels, upright)
    written = Image.Exif()
    written.load(photo.exif)
    assert written[0x0112] == 1
    assert photo.alpha is None and photo.bit_depth == 8 and photo.notes == ()


def test_load_photo_keeps_alpha_gray_and_16_bits(tmp_path: Path, rgb: np.ndarray) -> None:
    alpha = np.random.default_rng(5).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(tmp_path / "rgba.png")
    photo = load_photo(tmp_path / "rgba.png")
    np.testing.assert_array_equal(photo.pixels, rgb)
    np.testing.assert_array_equal(photo.alpha, alpha)

    Image.fromarray(np.dstack([rgb[:, :, 0], alpha]), mode="LA").save(tmp_path / "la.png")
    photo = load_photo(tmp_path / "la.png")
    np.testing.assert_array_equal(photo.pixels, rgb[:, :, :1])
    np.testing.assert_array_equal(photo.alpha, alpha)

    wide = np.random.default_rng(6).integers(0, 65536, (5, 7, 4)).astype(np.uint16)
    write_png16(tmp_path / "c16.png", wide)
    photo = load_photo(tmp_path / "c16.png")
    assert photo.bit_depth == 16
    np.testing.assert_array_equal(photo.pixels, wide[:, :, :3])
    np.testing.assert_array_equal(photo.alpha, wide[:, :, 3])

    Image.fromarray(wide[:, :, 0]).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(load_photo(tmp_path / "g16.png").pixels, wide[:, :, :1])


def test_load_photo_expands_palette_and_cmyk_and_says_so(tmp_path: Path) -> None:
    im = Image.new("P", (5, 4))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * (768 - 6))
    im.putdata([0, 1, 1, 1, 0] * 4)
    im.save(tmp_path / "p.png", transparency=0)  # palette entry 0 transparent
    photo = load_photo(tmp_path / "p.png")
    assert photo.notes == ("palette image expanded to RGBA",)
    np.testing.assert_array_equal(photo.alpha[0], [0, 255, 255, 255, 0])
    np.testing.assert_array_equal(photo.pixels[0, 1], [0, 255, 0])

    Image.new("CMYK", (3, 2), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    photo = load_photo(tmp_path / "c.jpg")
    assert photo.pixels.shape == (2, 3, 3) and photo.pixels.min() > 240
    assert "CMYK converted to RGB" in photo.notes[0]


def test_load_photo_rejects_bombs_and_truncated_files(tmp_path: Path) -> None:
    write_header_bomb(tmp_path / "bomb.png")
    with pytest.raises(ImageReadError, match="bomb.png: DecompressionBombError"):
        load_photo(tmp_path / "bomb.png")
    noisy = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="cut.jpg: OSError: image file is truncated"):
        load_photo(tmp_path / "cut.jpg")
