"""Image I/O shared by every stage: load any image as uint8 RGB, save PNG atomically, tensor glue.

Why one module: every stage (benchmarks, calibration crops, training, the CLI) must read images the
same way, turn every broken file into one clear error type (:class:`ImageReadError`, naming the
file) instead of a PIL traceback, and convert between uint8 arrays and model tensors with the same
rounding convention as BasicSR/SwinIR (so PSNR numbers are comparable with the papers).

Conversion rules of :func:`load_rgb`:

* 8-bit modes (L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, 1, ...) go through PIL's ``convert("RGB")``;
  alpha is dropped, not composited (SR models work on the colour channels only);
* 16-bit grayscale (``I;16*``) and 32-bit integer (``I``, how some PIL versions open 16-bit PNGs)
  are clipped to ``[0, 65535]`` and scaled with ``round(v / 257)``;
* 16-bit RGB/RGBA PNGs, which PIL itself truncates to the high byte, are decoded twice (high and
  low bytes) and scaled with ``round(v / 257)`` too (16-bit gray+alpha PNGs keep PIL's high byte);
* float (``F``) images are taken as 0..255 values, like PIL's ``convert("L")``.

EXIF orientation is not applied by :func:`load_rgb`: files are used as stored (benchmark sets are
PNG). :func:`load_photo` is the reader for photos (``pipeline upscale``): pixels as displayed (EXIF
orientation applied), alpha, grayscale and 16-bit kept, and the metadata worth carrying over.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["ImageReadError", "Photo", "image_size", "load_photo", "load_rgb", "save_rgb", "to_tensor", "to_uint8"]

# PIL rawmodes of 16-bit-per-sample PNGs that PIL reduces to their high byte, and the rawmode that
# reads the low byte of the same (big-endian) samples with the same PNG unfiltering.
_LOW_BYTE_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


class ImageReadError(ValueError):
    """An image file could not be read or decoded.

    Attributes:
        path: the file that failed.
        reason: why, in words.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self):  # keep picklable (e.g. through DataLoader workers)
        return (type(self), (self.path, self.reason))


def _scale16(values: np.ndarray) -> np.ndarray:
    """0..65535 integers -> uint8 with ``round(v / 257)`` (no ties occur)."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((2 * v + 257) // 514).astype(np.uint8)


def _png16_rgb(path: Path, im: Image.Image) -> np.ndarray | None:
    """Full-precision 16-bit RGB(A) PNG as uint16 HxWxC, or None if ``im`` is not one."""
    if im.format != "PNG" or len(im.tile) != 1:
        return None
    tile = im.tile[0]
    rawmode = tile.args if isinstance(tile.args, str) else tile.args[0]
    low_mode = _LOW_BYTE_RAWMODE.get(rawmode)
    if low_mode is None:
        return None
    with Image.open(path) as low:
        low_tile = low.tile[0]
        args = low_mode if isinstance(low_tile.args, str) else (low_mode, *low_tile.args[1:])
        low.tile = [low_tile._replace(args=args)]
        low.load()
        lo = np.asarray(low, dtype=np.uint16)
    im.load()
    hi = np.asarray(im, dtype=np.uint16)
    return (hi << 8) | lo


def _to_rgb_array(path: Path, im: Image.Image) -> np.ndarray:
    """Decode an opened PIL image to uint8 HxWx3 following the module's conversion rules."""
    wide = _png16_rgb(path, im)
    if wide is not None:
        return _scale16(wide[:, :, :3])
    im.load()
    mode = im.mode
    if mode == "I" or mode.startswith("I;16"):
        gray = _scale16(np.asarray(im))
        if gray.ndim != 2:
            raise ValueError(f"unexpected array shape {gray.shape} for mode {mode}")
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def _read_error(p: Path, exc: Exception) -> ImageReadError:
    """Any failure of opening or decoding ``p`` as one :class:`ImageReadError` naming the file."""
    if isinstance(exc, FileNotFoundError):
        return ImageReadError(p, "file not found")
    if isinstance(exc, IsADirectoryError):
        return ImageReadError(p, "is a directory, not an image file")
    # PIL raises OSError, SyntaxError, ValueError, zlib.error, DecompressionBombError, ...
    return ImageReadError(p, f"{type(exc).__name__}: {str(exc) or type(exc).__name__}")


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an image file as RGB.

    Args:
        path: any image format PIL reads (PNG, JPEG, BMP, TIFF, WebP, ...), any mode.

    Returns:
        uint8 array of shape (H, W, 3), C-contiguous and writable.

    Raises:
        ImageReadError: missing, unreadable, corrupt or truncated file, not an image, or an
            image with zero width or height. The message names the file.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            arr = _to_rgb_array(p, im)
    except ImageReadError:
        raise
    except Exception as exc:
        raise _read_error(p, exc) from exc
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageReadError(p, f"decoded to unexpected shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(p, f"image has zero size ({arr.shape[1]}x{arr.shape[0]})")
    return np.ascontiguousarray(arr)


# EXIF orientation -> how to turn the stored (H, W, ...) array into the displayed one; the same
# transposes as Pillow's ImageOps.exif_transpose (6 is a phone held upright: rotate 90 deg clockwise).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_EXIF_ORIENTATION = 0x0112
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


@dataclass(frozen=True)
class Photo:
    """An image as it displays, with what an upscaled copy should keep (see :func:`load_photo`).

    Attributes:
        pixels: (H, W, C) uint8 or uint16 (16-bit files), C = 1 (grayscale) or 3 (RGB), upright.
        alpha: (H, W) opacity of the same dtype (max = opaque), or None.
        icc_profile: the embedded ICC profile, as stored (it may describe CMYK after a CMYK file).
        exif: EXIF block (``Exif\\0\\0`` + TIFF) with the orientation set to 1, or None.
        notes: conversions the caller should report (palette expanded, CMYK converted, ...).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    icc_profile: bytes | None
    exif: bytes | None
    notes: tuple[str, ...]

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


def _decode_photo(path: Path, im: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored (not yet oriented) pixels (H, W, C) and alpha (H, W) of an opened image."""
    wide = _png16_rgb(path, im)
    if wide is not None:
        return wide[:, :, :3], (wide[:, :, 3] if wide.shape[2] == 4 else None)
    im.load()
    if im.mode == "I" or im.mode.startswith("I;16"):
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[:, :, None], None
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)[:, :, None], None
    gray = im.mode in _GRAY_MODES
    has_alpha = im.has_transparency_data
    target = ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
    if im.mode in ("P", "PA"):
        notes.append(f"palette image expanded to {target}")
    elif im.mode == "CMYK":
        notes.append("CMYK converted to RGB without colour management (colours are approximate)")
    if im.mode != target:
        im = im.convert(target)
    arr = np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, len(target))
    return arr[:, :, : len(target) - has_alpha], (arr[:, :, -1] if has_alpha else None)


def load_photo(path: str | os.PathLike[str]) -> Photo:
    """Load a photo as it displays, keeping alpha, grayscale, 16-bit samples and metadata.

    Unlike :func:`load_rgb` (the benchmark reader), this is what a photo tool needs: EXIF
    orientation applied (a phone picture comes out upright), transparency kept as alpha (also a
    palette's or a colour key's), grayscale kept as one channel, 16-bit PNGs at full precision.
    Palette and CMYK images are converted, and the conversion is listed in ``notes``.

    Raises:
        ImageReadError: as :func:`load_rgb`, including for a header that declares more pixels
            than Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` x 2).
    """
    p = Path(path)
    notes: list[str] = []
    try:
        with Image.open(p) as im:
            pixels, alpha = _decode_photo(p, im, notes)  # first: PNG's getexif() loads, which ends 16-bit decoding
            exif = im.getexif()
            orientation = exif.get(_EXIF_ORIENTATION, 1)
            icc = im.info.get("icc_profile") or None
    except ImageReadError:
        raise
    except Exception as exc:
        raise _read_error(p, exc) from exc
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageReadError(p, f"image has zero size ({pixels.shape[1]}x{pixels.shape[0]})")
    turn = _ORIENT.get(orientation)
    if turn is not None:
        pixels, alpha = turn(pixels), (None if alpha is None else turn(alpha))
    if orientation != 1:
        exif[_EXIF_ORIENTATION] = 1
    return Photo(np.ascontiguousarray(pixels), None if alpha is None else np.ascontiguousarray(alpha), icc,
                 exif.tobytes() if len(exif) else None, tuple(notes))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Height and width of an image file from its header, without decoding the pixels.

    Cheap check used to list large folders; a file whose pixel data is truncated still passes here
    and fails later in :func:`load_rgb`.

    Returns:
        ``(height, width)`` in pixels, both > 0.

    Raises:
        ImageReadError: the file is missing, not an image, or reports a zero size.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            width, height = im.size
    except FileNotFoundError as exc:
        raise ImageReadError(p, "file not found") from exc
    except Exception as exc:
        raise ImageReadError(p, f"{type(exc).__name__}: {str(exc) or type(exc).__name__}") from exc
    if width <= 0 or height <= 0:
        raise ImageReadError(p, f"image has zero size ({width}x{height})")
    return height, width


def _check_uint8_image(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 array, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected shape (H, W, 3), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what}: image has zero size {arr.shape}")
    return arr


def save_rgb(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) array as PNG, atomically.

    The PNG is written to a temporary file in the destination folder and moved into place with
    ``os.replace``, so readers never see a half-written file. Parent folders are created.

    Args:
        path: destination file (written as PNG whatever the suffix).
        array: uint8 array of shape (H, W, 3).

    Returns:
        The destination path.

    Raises:
        ValueError: ``array`` is not a non-empty uint8 (H, W, 3) array.
    """
    arr = np.ascontiguousarray(_check_uint8_image(array, "save_rgb"))
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(arr).save(fh, format="PNG")
        os.replace(tmp_name, dest)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return dest


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) image -> float32 tensor (1, 3, H, W) with values in [0, 1] (``v / 255``)."""
    arr = _check_uint8_image(array, "to_tensor")
    chw = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return chw.to(torch.float32).div_(255.0).unsqueeze(0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (1, 3, H, W) or (3, H, W) -> uint8 (H, W, 3) image.

    BasicSR's ``tensor2img`` convention: clamp to [0, 1], then ``(x * 255).round()`` in float32
    (round half to even). NaN becomes 0.

    Raises:
        ValueError: the tensor has another shape or is not floating point.
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"to_uint8: expected a torch.Tensor, got {type(tensor).__name__}")
    t = tensor.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"to_uint8: expected shape (1, 3, H, W) or (3, H, W), got {tuple(tensor.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"to_uint8: expected a floating-point tensor, got {tensor.dtype}")
    t = t.to(device="cpu", dtype=torch.float32).nan_to_num(0.0).clamp(0.0, 1.0).mul(255.0).round()
    return t.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
