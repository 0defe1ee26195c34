"""PSNR and SSIM on the Y channel, computed exactly as the SwinIR / 2DQuant / BasicSR evaluation.

Super-resolution papers (SwinIR, 2DQuant and the tables they copy from) report PSNR and SSIM on
the luma channel only, after cropping ``scale`` pixels at every border, with SSIM from Wang et
al. (2004) as implemented in BasicSR (``basicsr.metrics.psnr_ssim``).  Using the same recipe is
the only way our numbers are comparable with the paper's Table 3: other choices (RGB PSNR, no
border crop, a uniform SSIM window, the [16, 235] luma rounded to integers, ...) shift PSNR by
tenths of a dB, which is the size of the differences being measured between bit widths.

The convention, step by step:

1. Inputs are ``uint8`` HxWx3 **RGB** arrays: the SR output already clamped to [0, 1], scaled by
   255 and rounded to ``uint8`` (as the reference test scripts do), and the HR ground truth.
2. Crop ``crop_border`` (= the scale factor) pixels at each of the four borders.
3. Convert to BT.601 luma on the [0, 255] scale without rounding:
   ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (BasicSR ``to_y_channel``).
4. PSNR: ``10 log10(255^2 / MSE)`` in float64; ``inf`` for identical images.
5. SSIM: 11x11 Gaussian window with sigma 1.5 (normalised outer product of the 1-D Gaussian),
   'valid' filtering (BasicSR filters with ``cv2.filter2D`` and drops 5 px at each border, which
   is the same thing), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, mean of the SSIM map.
6. A data set's score is the mean over its images of the per-image PSNR and SSIM
   (:func:`summarize`), not the PSNR of the pooled MSE.

Everything is float64; BasicSR computes the luma in float32 then promotes to float64, which
moves PSNR by about 1e-5 dB, far below the two decimals that papers print.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "ImageScore",
    "rgb_to_y",
    "psnr_y",
    "ssim_y",
    "gaussian_window_1d",
    "summarize",
]

SSIM_WINDOW = 11
"""Side of the SSIM Gaussian window, in pixels."""
SSIM_SIGMA = 1.5
"""Standard deviation of the SSIM Gaussian window, in pixels."""
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2
_Y_COEFFS = (65.481, 128.553, 24.966)


@dataclass
class ImageScore:
    """Scores of one image.

    Attributes:
        name: image identifier (usually the file stem).
        psnr: Y-channel PSNR in dB (``inf`` for a perfect reconstruction).
        ssim: Y-channel SSIM, at most 1.
    """

    name: str
    psnr: float
    ssim: float


def _check_rgb_uint8(img: object, what: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{what} must be a numpy.ndarray of dtype uint8 and shape HxWx3, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{what} must have dtype uint8 (values 0..255), got dtype {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what} must have shape HxWx3 (RGB), got shape {img.shape}")
    return img


def _check_crop_border(crop_border: object) -> int:
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)):
        raise ValueError(f"crop_border must be an int >= 0, got {crop_border!r}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    return int(crop_border)


def _check_pair(sr: object, hr: object, crop_border: object, min_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate an (SR, HR) pair and return them cropped, with the crop."""
    sr = _check_rgb_uint8(sr, "sr")
    hr = _check_rgb_uint8(hr, "hr")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got sr {sr.shape} and hr {hr.shape}")
    cb = _check_crop_border(crop_border)
    h, w = sr.shape[:2]
    if h - 2 * cb < min_size or w - 2 * cb < min_size:
        raise ValueError(
            f"image of {h}x{w} px is too small for crop_border={cb}: each side must be at least "
            f"2*crop_border + {min_size} = {2 * cb + min_size} px"
        )
    if cb:
        sr = sr[cb:-cb, cb:-cb]
        hr = hr[cb:-cb, cb:-cb]
    return sr, hr, cb


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image on the [0, 255] scale, unrounded (BasicSR ``to_y_channel``).

    Args:
        img: ``uint8`` array of shape (H, W, 3), RGB order.

    Returns:
        float64 array of shape (H, W): ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``,
        in [16, 235].
    """
    img = _check_rgb_uint8(img, "img")
    x = img.astype(np.float64)
    r, g, b = _Y_COEFFS
    return 16.0 + (r * x[..., 0] + g * x[..., 1] + b * x[..., 2]) / 255.0


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """Y-channel PSNR after cropping ``crop_border`` px at each border.

    Args:
        sr: super-resolved image, ``uint8`` (H, W, 3) RGB.
        hr: ground truth, ``uint8`` (H, W, 3) RGB, same shape as ``sr``.
        crop_border: pixels removed at each border (the scale factor), >= 0.

    Returns:
        ``10 log10(255^2 / MSE)`` in dB, computed in float64; ``inf`` when the cropped Y
        channels are identical.

    Raises:
        ValueError: on a dtype/shape mismatch, or when nothing is left after cropping.
    """
    sr, hr, _ = _check_pair(sr, hr, crop_border, min_size=1)
    diff = rgb_to_y(sr) - rgb_to_y(hr)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian, as ``cv2.getGaussianKernel(size, sigma)`` (float64, sums to 1).

    The 2-D SSIM window is the outer product of this vector with itself.
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM map of two float64 (H, W) images, 'valid' Gaussian filtering (separable conv2d)."""
    g = torch.from_numpy(gaussian_window_1d())
    kv = g.view(1, 1, SSIM_WINDOW, 1).expand(5, 1, SSIM_WINDOW, 1).contiguous()
    kh = g.view(1, 1, 1, SSIM_WINDOW).expand(5, 1, 1, SSIM_WINDOW).contiguous()
    a = torch.from_numpy(x)
    b = torch.from_numpy(y)
    # The five moments as the 5 channels of one image, filtered depthwise (groups=5): on CPU
    # this is several times faster in float64 than a batch of 1-channel images.
    stack = torch.stack([a, b, a * a, b * b, a * b]).unsqueeze(0)
    conv2d = torch.nn.functional.conv2d
    filt = conv2d(conv2d(stack, kv, groups=5), kh, groups=5)[0]
    mu1, mu2, e11, e22, e12 = filt.unbind(0)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = e11 - mu1_sq
    sigma2_sq = e22 - mu2_sq
    sigma12 = e12 - mu12
    num = (2.0 * mu12 + _C1) * (2.0 * sigma12 + _C2)
    den = (mu1_sq + mu2_sq + _C1) * (sigma1_sq + sigma2_sq + _C2)
    return (num / den).numpy()


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """Y-channel SSIM (Wang et al. 2004, BasicSR implementation) after cropping the borders.

    Args:
        sr: super-resolved image, ``uint8`` (H, W, 3) RGB.
        hr: ground truth, ``uint8`` (H, W, 3) RGB, same shape as ``sr``.
        crop_border: pixels removed at each border (the scale factor), >= 0.

    Returns:
        Mean of the SSIM map over the 'valid' region ((H - 2c - 10) x (W - 2c - 10) values);
        1.0 for identical images.

    Raises:
        ValueError: on a dtype/shape mismatch, or when a side is smaller than
            ``2 * crop_border + 11`` px (no room for one 11x11 window).
    """
    sr, hr, _ = _check_pair(sr, hr, crop_border, min_size=SSIM_WINDOW)
    return float(np.mean(_ssim_map(rgb_to_y(sr), rgb_to_y(hr))))


def summarize(scores: Iterable[ImageScore]) -> tuple[float, float]:
    """Mean PSNR and mean SSIM over the images of a set (the papers' convention).

    Args:
        scores: per-image scores of one data set.

    Returns:
        ``(mean_psnr, mean_ssim)``; the PSNR mean is ``inf`` if any image is reproduced exactly.

    Raises:
        ValueError: when ``scores`` is empty.
    """
    scores = list(scores)
    if not scores:
        raise ValueError("summarize needs at least one ImageScore, got an empty sequence")
    n = len(scores)
    return math.fsum(s.psnr for s in scores) / n, math.fsum(s.ssim for s in scores) / n
