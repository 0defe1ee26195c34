"""Y-channel PSNR/SSIM against an independent float64 reference written here in plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srcore.metrics import (
    ImageScore,
    gaussian_window_1d,
    psnr_y,
    rgb_to_y,
    ssim_y,
    summarize,
)

# ---------------------------------------------------------------------------------------------
# Independent reference (BasicSR calculate_psnr / calculate_ssim with test_y_channel=True),
# deliberately written differently from the library: 2-D kernel, sliding windows, no torch.
# ---------------------------------------------------------------------------------------------


def ref_y(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64) / 255.0
    return (np.dot(x, [65.481, 128.553, 24.966]) + 16.0) / 255.0 * 255.0


def ref_crop(img: np.ndarray, c: int) -> np.ndarray:
    return img[c : img.shape[0] - c, c : img.shape[1] - c]


def ref_psnr(sr: np.ndarray, hr: np.ndarray, c: int) -> float:
    a, b = ref_y(ref_crop(sr, c)), ref_y(ref_crop(hr, c))
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * np.log10(255.0 / np.sqrt(mse)))


def ref_kernel() -> np.ndarray:
    coords = np.arange(11, dtype=np.float64) - 5.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    k = np.exp(-(yy**2 + xx**2) / (2.0 * 1.5**2))
    return k / k.sum()


def ref_filter_valid(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(img, k.shape)
    return np.einsum("ijkl,kl->ij", win, k)


def ref_ssim(sr: np.ndarray, hr: np.ndarray, c: int) -> float:
    a, b = ref_y(ref_crop(sr, c)), ref_y(ref_crop(hr, c))
    k = ref_kernel()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = ref_filter_valid(a, k), ref_filter_valid(b, k)
    s11 = ref_filter_valid(a * a, k) - mu1**2
    s22 = ref_filter_valid(b * b, k) - mu2**2
    s12 = ref_filter_valid(a * b, k) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(m.mean())


# ---------------------------------------------------------------------------------------------
# Test images
# ---------------------------------------------------------------------------------------------


def random_pair(h: int, w: int, seed: int, noise: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    sr = np.clip(hr + rng.normal(0.0, noise, size=hr.shape), 0, 255).round().astype(np.uint8)
    return sr, hr


def structured_pair() -> tuple[np.ndarray, np.ndarray]:
    """Smooth gradients, edges and a checkerboard; the 'SR' is a shifted, blurred, darker copy."""
    h, w = 72, 90
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255.0 * xx / (w - 1)
    g = 127.5 + 120.0 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    b = np.where(((yy // 6) + (xx // 6)) % 2 == 0, 230.0, 20.0)
    b[20:50, 30:60] = 128.0  # flat square with sharp edges
    hr = np.stack([r, g, b], axis=-1).round().astype(np.uint8)
    blur = (np.roll(hr.astype(np.float64), 1, axis=1) + hr + np.roll(hr.astype(np.float64), 1, axis=0)) / 3.0
    sr = np.clip(blur * 0.97 + 2.0, 0, 255).round().astype(np.uint8)
    return sr, hr


CASES = [
    pytest.param(*random_pair(40, 52, seed=1), 0, id="random-40x52-c0"),
    pytest.param(*random_pair(64, 48, seed=2), 2, id="random-64x48-c2"),
    pytest.param(*random_pair(57, 83, seed=3, noise=3.0), 4, id="random-57x83-c4"),
    pytest.param(*random_pair(31, 29, seed=4, noise=40.0), 3, id="random-31x29-c3"),
    pytest.param(*structured_pair(), 0, id="structured-c0"),
    pytest.param(*structured_pair(), 4, id="structured-c4"),
]


# ---------------------------------------------------------------------------------------------
# Agreement with the reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sr", "hr", "crop"), CASES)
def test_psnr_matches_reference(sr: np.ndarray, hr: np.ndarray, crop: int) -> None:
    got = psnr_y(sr, hr, crop)
    assert isinstance(got, float)
    assert abs(got - ref_psnr(sr, hr, crop)) <= 1e-10


@pytest.mark.parametrize(("sr", "hr", "crop"), CASES)
def test_ssim_matches_reference(sr: np.ndarray, hr: np.ndarray, crop: int) -> None:
    got = ssim_y(sr, hr, crop)
    assert isinstance(got, float)
    assert abs(got - ref_ssim(sr, hr, crop)) <= 1e-9


def test_ssim_is_symmetric_and_below_one() -> None:
    sr, hr = structured_pair()
    assert ssim_y(sr, hr, 2) == pytest.approx(ssim_y(hr, sr, 2), abs=1e-12)
    assert ssim_y(sr, hr, 2) < 1.0


def test_rgb_to_y_formula_and_range() -> None:
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    y = rgb_to_y(img)
    assert y.dtype == np.float64 and y.shape == (1, 6)
    expected = [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966, 16 + (654.81 + 2571.06 + 748.98) / 255]
    np.testing.assert_allclose(y[0], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y, ref_y(img), rtol=0, atol=1e-12)


def test_gaussian_window_is_normalised_and_matches_2d_kernel() -> None:
    g = gaussian_window_1d()
    assert g.shape == (11,) and abs(g.sum() - 1.0) < 1e-15
    np.testing.assert_allclose(np.outer(g, g), ref_kernel(), rtol=0, atol=1e-16)


# ---------------------------------------------------------------------------------------------
# Known values
# ---------------------------------------------------------------------------------------------


def test_identical_images() -> None:
    _, hr = random_pair(40, 40, seed=5)
    assert psnr_y(hr, hr.copy(), 4) == math.inf
    assert ssim_y(hr, hr.copy(), 4) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_closed_form_psnr() -> None:
    rng = np.random.default_rng(6)
    hr = rng.integers(0, 255, size=(30, 34, 3), dtype=np.uint8)  # max 254: +1 cannot overflow
    sr = hr + np.uint8(1)
    dy = (65.481 + 128.553 + 24.966) / 255.0  # = 219 / 255
    expected = 10.0 * math.log10(255.0**2 / dy**2)
    assert psnr_y(sr, hr, 0) == pytest.approx(expected, abs=1e-10)
    assert psnr_y(sr, hr, 3) == pytest.approx(expected, abs=1e-10)
    assert expected == pytest.approx(20.0 * math.log10(255.0**2 / 219.0), abs=1e-12)  # 49.4527 dB


def test_constant_images_closed_form_ssim() -> None:
    a, b = 40, 200
    sr = np.full((20, 20, 3), a, np.uint8)
    hr = np.full((20, 20, 3), b, np.uint8)
    ya, yb = 16 + 219 * a / 255, 16 + 219 * b / 255
    c1 = (0.01 * 255) ** 2
    expected = (2 * ya * yb + c1) / (ya**2 + yb**2 + c1)  # no variance: only the luminance term
    assert ssim_y(sr, hr, 0) == pytest.approx(expected, abs=1e-9)


def test_crop_border_removes_border_differences() -> None:
    _, hr = random_pair(32, 36, seed=7)
    sr = hr.copy()
    sr[:2] = 255 - sr[:2]
    sr[:, -2:] = 255 - sr[:, -2:]
    assert psnr_y(sr, hr, 2) == math.inf
    assert ssim_y(sr, hr, 2) == pytest.approx(1.0, abs=1e-12)
    assert psnr_y(sr, hr, 1) < 30.0
    assert ssim_y(sr, hr, 1) < 1.0


def test_summarize_means_over_images() -> None:
    scores = [ImageScore("a", 30.0, 0.9), ImageScore("b", 32.0, 0.8), ImageScore("c", 31.0, 0.7)]
    mp, ms = summarize(scores)
    assert mp == pytest.approx(31.0) and ms == pytest.approx(0.8)
    assert summarize(iter(scores)) == (mp, ms)
    assert summarize([ImageScore("x", math.inf, 1.0), ImageScore("y", 30.0, 0.5)])[0] == math.inf


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_shape_mismatch() -> None:
    a = np.zeros((20, 20, 3), np.uint8)
    b = np.zeros((20, 21, 3), np.uint8)
    with pytest.raises(ValueError, match=r"same shape.*\(20, 20, 3\).*\(20, 21, 3\)"):
        psnr_y(a, b, 0)
    with pytest.raises(ValueError, match="same shape"):
        ssim_y(a, b, 0)


@pytest.mark.parametrize("fn", [psnr_y, ssim_y])
def test_dtype_and_channels(fn) -> None:
    ok = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8.*float32"):
        fn(ok.astype(np.float32), ok, 0)
    with pytest.raises(ValueError, match=r"HxWx3.*\(20, 20\)"):
        fn(ok[..., 0], ok[..., 0], 0)
    with pytest.raises(ValueError, match=r"HxWx3.*\(20, 20, 4\)"):
        fn(np.zeros((20, 20, 4), np.uint8), np.zeros((20, 20, 4), np.uint8), 0)
    with pytest.raises(ValueError, match="numpy.ndarray.*list"):
        fn([[0]], ok, 0)
    with pytest.raises(ValueError, match="crop_border.*-1"):
        fn(ok, ok, -1)
    with pytest.raises(ValueError, match="crop_border.*2.5"):
        fn(ok, ok, 2.5)


def test_rgb_to_y_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_y(np.zeros((4, 4, 3), np.float64))


def test_too_small_for_ssim() -> None:
    c = 3
    ok = np.zeros((2 * c + 11, 2 * c + 11, 3), np.uint8)
    assert ssim_y(ok, ok, c) == pytest.approx(1.0)
    small = np.zeros((2 * c + 11, 2 * c + 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"17x16.*crop_border=3.*17 px"):
        ssim_y(small, small, c)
    # PSNR only needs one pixel left after the crop.
    assert psnr_y(small, small, c) == math.inf
    tiny = np.zeros((6, 6, 3), np.uint8)
    with pytest.raises(ValueError, match="too small"):
        psnr_y(tiny, tiny, 3)


def test_summarize_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        summarize([])
