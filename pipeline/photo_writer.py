"""Writing an upscaled photo: format by extension, metadata carried over, PNG streamed band by band.

PNG is written with pypng as the bands arrive (8 or 16 bits, grayscale or RGB, with or without
alpha), so the full SR image is never in memory. Pillow's JPEG and WebP encoders take a whole
image: the bands are pasted into one Pillow image first, whose size :func:`output_memory` states up
front (Pillow keeps 4 bytes per pixel except for grayscale, 1; libwebp makes its own copy).
The ICC profile is copied when it describes the written colour space (an RGB profile for RGB),
and EXIF with the image size tags set to the new size (the orientation is already 1, see
:func:`srcore.images.load_photo`).
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image

__all__ = ["OutputFormat", "PhotoSpec", "check_options", "output_format", "output_memory", "photo_spec", "write_photo"]


class OutputFormat(enum.Enum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"


_SUFFIXES = {".png": OutputFormat.PNG, ".jpg": OutputFormat.JPEG, ".jpeg": OutputFormat.JPEG,
             ".webp": OutputFormat.WEBP}
_MAX_SIDE = {OutputFormat.JPEG: 65_535, OutputFormat.WEBP: 16_383}  # the formats' own limits
_DEFAULT_JPEG_QUALITY = 95  # Pillow's 75 visibly blurs the detail the upscaling just added
_ICC_SPACE = {1: b"GRAY", 2: b"GRAY", 3: b"RGB ", 4: b"RGB "}  # ICC header bytes 16..20 per channel count


def output_format(path: str | Path) -> OutputFormat:
    """The format written for ``path``, from its extension.

    Raises:
        ValueError: an extension other than .png, .jpg, .jpeg, .webp.
    """
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {Path(path).name}: the output format follows the extension, one of "
                         f"{', '.join(_SUFFIXES)}")
    return fmt


@dataclass(frozen=True)
class PhotoSpec:
    """Everything the writer needs besides the pixels.

    Attributes:
        format: the output format.
        width, height: output size in pixels.
        channels: written channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (WebP stores gray as RGB).
        bit_depth: 8, or 16 (PNG only).
        quality: JPEG/WebP quality 1..100; None: JPEG 95, WebP lossless.
        icc_profile: ICC profile to embed, or None.
        exif: EXIF block (``Exif\\0\\0`` + TIFF) to embed, or None.
    """

    format: OutputFormat
    width: int
    height: int
    channels: int
    bit_depth: int
    quality: int | None
    icc_profile: bytes | None
    exif: bytes | None


def _resized_exif(exif: bytes, width: int, height: int) -> bytes:
    """The EXIF block with the size tags that it has (IFD0 and Exif IFD) set to ``width x height``."""
    data = Image.Exif()
    data.load(exif)
    sizes = {ExifTags.Base.ImageWidth: width, ExifTags.Base.ImageLength: height,
             ExifTags.Base.ExifImageWidth: width, ExifTags.Base.ExifImageHeight: height}
    for ifd in (data, data.get_ifd(ExifTags.IFD.Exif)):
        for tag, value in sizes.items():
            if tag in ifd:
                ifd[tag] = value
    return data.tobytes()


def check_options(fmt: OutputFormat, bit_depth: int, quality: int | None) -> None:
    """Raise ValueError for options that ``fmt`` cannot honour (checked once before a folder, too)."""
    if bit_depth == 16 and fmt is not OutputFormat.PNG:
        raise ValueError(f"--bit-depth 16 needs a .png output; {fmt.name} is 8-bit")
    if quality is not None and fmt is OutputFormat.PNG:
        raise ValueError("--quality applies to JPEG and WebP; PNG is lossless")


def photo_spec(fmt: OutputFormat, size: tuple[int, int], channels: int, bit_depth: int, quality: int | None,
               icc_profile: bytes | None, exif: bytes | None) -> tuple[PhotoSpec, list[str]]:
    """Check that ``fmt`` can hold the photo and build its spec; ``size`` is (height, width).

    Returns:
        The spec and notes on what is not carried over (a profile of another colour space).

    Raises:
        ValueError: alpha to JPEG, :func:`check_options`, a side above the format's limit.
    """
    height, width = size
    name = fmt.name
    if channels in (2, 4) and fmt is OutputFormat.JPEG:
        raise ValueError("JPEG cannot hold the alpha channel of this image; write a .png or .webp")
    check_options(fmt, bit_depth, quality)
    if max(width, height) > _MAX_SIDE.get(fmt, 2**31 - 1):
        raise ValueError(f"{name} images are at most {_MAX_SIDE[fmt]} px a side; the output would be "
                         f"{width}x{height}: write a .png")
    if fmt is OutputFormat.WEBP and channels < 3:
        channels += 2
    notes = []
    if icc_profile is not None and icc_profile[16:20] != _ICC_SPACE[channels]:
        space = icc_profile[16:20].decode("latin-1").strip() or "unknown"
        notes.append(f"the input's {space} colour profile does not describe the {_mode(channels)} output; not copied")
        icc_profile = None
    if exif is not None:
        exif = _resized_exif(exif, width, height)
    return PhotoSpec(fmt, width, height, channels, bit_depth, quality, icc_profile, exif), notes


def _mode(channels: int) -> str:
    return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]


def output_memory(spec: PhotoSpec) -> int:
    """Bytes that a non-streamed output holds in memory at once (0 for PNG, written band by band)."""
    if spec.format is OutputFormat.PNG:
        return 0
    per_pixel = 1 if spec.channels == 1 else 4  # Pillow's storage; LA, RGB and RGBA take 4 bytes
    copies = 2 if spec.format is OutputFormat.WEBP else 1  # libwebp converts into its own picture
    return spec.width * spec.height * per_pixel * copies


def _png_chunks(spec: PhotoSpec) -> list[tuple[bytes, bytes]]:
    chunks = []
    if spec.icc_profile is not None:
        chunks.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(spec.icc_profile)))
    if spec.exif is not None:
        chunks.append((b"eXIf", spec.exif.removeprefix(b"Exif\0\0")))
    return chunks


def _write_png(f: BinaryIO, spec: PhotoSpec, bands: Iterator[tuple[int, np.ndarray]]) -> None:
    import png

    class MetadataWriter(png.Writer):
        """pypng writer that adds the iCCP and eXIf chunks, which must precede the pixel data."""

        def write_preamble(self, outfile):
            super().write_preamble(outfile)
            for tag, data in _png_chunks(spec):
                png.write_chunk(outfile, tag, data)

    def rows() -> Iterator[np.ndarray]:
        for _, band in bands:
            if spec.bit_depth == 16:
                band = np.ascontiguousarray(band, dtype=">u2").view(np.uint8)  # PNG: 16-bit big-endian
            yield from band.reshape(band.shape[0], -1)

    writer = MetadataWriter(spec.width, spec.height, greyscale=spec.channels < 3, alpha=spec.channels in (2, 4),
                            bitdepth=spec.bit_depth)
    written = writer.write_packed(f, rows())
    if written != spec.height:
        raise RuntimeError(f"wrote {written} PNG rows, expected {spec.height}")


def _write_pillow(f: BinaryIO, spec: PhotoSpec, bands: Iterator[tuple[int, np.ndarray]]) -> None:
    image = Image.new(_mode(spec.channels), (spec.width, spec.height))
    for y0, band in bands:
        if band.shape[2] < spec.channels:  # gray into WebP's RGB
            band = np.concatenate([band[:, :, :1].repeat(3, axis=2), band[:, :, 1:]], axis=2)
        image.paste(Image.fromarray(band.squeeze(2) if band.shape[2] == 1 else band), (0, y0))
    options = {"icc_profile": spec.icc_profile, "exif": spec.exif or b""}
    if spec.format is OutputFormat.JPEG:
        image.save(f, format="JPEG", quality=spec.quality or _DEFAULT_JPEG_QUALITY, **options)
    elif spec.quality is None:
        image.save(f, format="WEBP", lossless=True, exact=True, **options)  # exact: keep RGB under alpha 0
    else:
        image.save(f, format="WEBP", quality=spec.quality, **options)


def write_photo(f: BinaryIO, spec: PhotoSpec, bands: Iterator[tuple[int, np.ndarray]]) -> None:
    """Write ``bands`` (``(y0, (rows, width, C) uint8/uint16)``, top to bottom) into ``f`` as ``spec`` says.

    ``C`` is ``spec.channels``, or 2 fewer for grayscale into WebP.
    """
    if spec.format is OutputFormat.PNG:
        _write_png(f, spec, bands)
    else:
        _write_pillow(f, spec, bands)
