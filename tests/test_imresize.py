"""Tests for srcore.imresize: bit-exact against every shipped benchmark LR file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from srcore.images import load_rgb
from srcore.imresize import imresize, mod_crop, resize_weights

SETS = ("Set5", "Set14")
SCALES = (2, 3, 4)


def _stems(data_dir: Path, name: str) -> list[str]:
    stems = sorted(p.stem for p in (data_dir / "benchmark" / name / "HR").glob("*.png"))
    assert stems, f"no HR images in {data_dir / 'benchmark' / name / 'HR'}"
    return stems


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("scale", SCALES)
def test_bit_exact_against_benchmark_lr(data_dir: Path, name: str, scale: int) -> None:
    root = data_dir / "benchmark" / name
    stems = _stems(data_dir, name)
    assert len(stems) == {"Set5": 5, "Set14": 14}[name]
    mismatches = []
    for stem in stems:
        hr = load_rgb(root / "HR" / f"{stem}.png")  # bridge/man may be grayscale: load_rgb -> RGB
        expected = load_rgb(root / "LR_bicubic" / f"X{scale}" / f"{stem}x{scale}.png")
        out = imresize(mod_crop(hr, scale), 1 / scale)
        if out.shape != expected.shape:
            mismatches.append(f"{stem}: shape {out.shape} != {expected.shape}")
        elif not np.array_equal(out, expected):
            diff = np.abs(out.astype(int) - expected.astype(int))
            mismatches.append(f"{stem}: {int((diff > 0).sum())} px differ, max {int(diff.max())}")
    assert not mismatches, f"{name} x{scale} not bit-exact: " + "; ".join(mismatches)


def test_worked_example() -> None:
    row = np.array([[0, 100, 200, 255]], dtype=np.uint8)[..., None]
    np.testing.assert_array_equal(imresize(row, 0.5)[..., 0], [[48, 229]])
    np.testing.assert_allclose(imresize(row.astype(np.float64), 0.5)[..., 0], [[48.203125, 229.296875]])


def test_weights_rows_sum_to_one_and_are_cached() -> None:
    w, idx = resize_weights(256, 64, 0.25)
    assert w.shape == idx.shape and w.shape[0] == 64
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert idx.min() >= 0 and idx.max() < 256
    assert resize_weights(256, 64, 0.25)[0] is w


def test_upscale_shape_and_constant() -> None:
    const = np.full((5, 7, 3), 123, dtype=np.uint8)
    up = imresize(const, 3)
    assert up.dtype == np.uint8 and up.shape == (15, 21, 3)
    assert (up == 123).all()
    gray = np.full((4, 6, 1), 9, dtype=np.uint8)
    down = imresize(gray, 0.5)
    assert down.shape == (2, 3, 1) and (down == 9).all()
    assert imresize(np.zeros((4, 6), np.uint8), 2).shape == (8, 12)


def test_float_input_close_to_uint8_path() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:48, 0:40]
    smooth = (127.5 + 100 * np.sin(yy / 7.0)[..., None] * np.cos(xx[..., None] / 5.0 + np.arange(3))).round()
    smooth = smooth.astype(np.uint8)
    for img, scales in ((noise, (0.25, 1 / 3, 0.5)), (smooth, (0.25, 0.5, 2.0, 3.0))):
        for scale in scales:
            as_uint8 = imresize(img, scale)
            as_float = imresize(img.astype(np.float32), scale)
            assert as_float.dtype == np.float64 and as_float.shape == as_uint8.shape
            # The uint8 path rounds (and clips) after each pass: within about one grey level.
            # (Upscaling noise is excluded: its first-pass overshoot is clipped in uint8.)
            diff = np.abs(np.clip(as_float, 0, 255) - as_uint8)
            assert diff.max() <= 1.5 and diff.mean() <= 0.5, (scale, diff.max(), diff.mean())


def test_mod_crop_and_bad_arguments() -> None:
    img = np.zeros((10, 13, 3), dtype=np.uint8)
    assert mod_crop(img, 4).shape == (8, 12, 3)
    assert mod_crop(img, 1).shape == (10, 13, 3)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="scale"):
            mod_crop(img, bad)  # type: ignore[arg-type]
    for bad_scale in (0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            imresize(img, bad_scale)
    with pytest.raises(ValueError, match="dtype"):
        imresize(img.astype(np.int32), 0.5)
    with pytest.raises(ValueError, match="empty"):
        imresize(np.zeros((0, 4, 3), np.uint8), 0.5)
    assert imresize(img, 0.01).shape == (1, 1, 3)  # ceil(0.01 * 10) == 1, like MATLAB
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((2, 2, 2, 2), np.uint8), 0.5)


def test_training_crop_is_fast() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    imresize(crop, 0.25)  # warm the weight cache
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        out = imresize(crop, 0.25)
    per_call = (time.perf_counter() - start) / runs
    assert out.shape == (64, 64, 3)
    assert per_call < 0.02, f"imresize 256->64 took {per_call * 1e3:.1f} ms"  # ~3 ms; slack for busy CI
