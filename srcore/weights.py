"""Which SwinIR weights to use: the shipped sr2bit model, the official release file, or a path.

``--weights`` takes ``None`` (the model shipped inside the package for that scale), ``official``
(the SwinIR release file, downloaded only on this explicit request, checked, then cached), or a
file path. Every report names the weights through :class:`WeightsInfo`, so the shipped model can
never be mistaken for the official one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from srcore.checkpoint import (
    CheckpointError,
    file_sha256,
    load_weights_,
    read_state_dict,
    weights_sha256,
)
from srcore.model import SwinIR, build_model
from srcore.paths import CACHE_ENV_VAR, cache_dir

__all__ = ["WeightsInfo", "load_model", "official_weights_path", "shipped_weights_path"]

log = logging.getLogger(__name__)

MODEL_ZOO = Path(__file__).resolve().parent / "model_zoo"
OFFICIAL_URL = (
    "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
    "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{scale}.pth"
)
# (size in bytes, sha256) of the official files where known (../shared/data/README.md); None where
# not known here (the x3 size, the x3 and x4 sha256): those files are also checked by their
# structure (:func:`_check_official_file`).
OFFICIAL_KNOWN = {
    2: (17_147_989, "193b229909ca89cd8b55de9c9e7fce146ae759d59dfcd78d8feb9dd1d6fa0fd7"),
    3: (None, None),
    4: (17_225_941, None),
}


@dataclass(frozen=True)
class WeightsInfo:
    """Identity of the weights behind a number: printed in every report."""

    name: str
    source: str  # "shipped" | "official" | "file"
    path: str
    scale: int
    sha256: str  # of the parameters (format-independent), see srcore.checkpoint.weights_sha256

    def describe(self) -> str:
        return f"{self.name} ({self.source}, x{self.scale}, params sha256 {self.sha256[:12]})"


def shipped_name(scale: int) -> str:
    return f"swinir-light-x{scale}-sr2bit"


def shipped_weights_path(scale: int) -> Path:
    """The shipped weights for ``scale``; ``CheckpointError`` saying what exists when there are none."""
    path = MODEL_ZOO / f"{shipped_name(scale)}.safetensors"
    if not path.is_file():
        available = sorted(p.stem for p in MODEL_ZOO.glob("*.safetensors")) or ["none"]
        raise CheckpointError(
            f"no shipped sr2bit model for x{scale} (shipped: {', '.join(available)}); "
            "pass --weights PATH or --weights official"
        )
    return path


def _check_official_file(path: Path, scale: int) -> None:
    """Refuse a file that is not the official x``scale`` release, so no other file is cached or reported as it.

    The size and the sha256 are compared where known (:data:`OFFICIAL_KNOWN`). Without a known
    sha256 the file must also load strictly into SwinIR-light x``scale`` (an HTML error page or
    another scale's file is refused), and a warning says how little that proves.
    """
    size, sha = OFFICIAL_KNOWN.get(scale, (None, None))
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise CheckpointError(f"{path} has {actual} bytes, the official x{scale} file has {size}")
    if sha is not None:
        if file_sha256(path) != sha:
            raise CheckpointError(f"{path} does not match the official x{scale} sha256 {sha}")
        return
    try:
        load_weights_(build_model("light", scale), read_state_dict(path), source=str(path))
    except CheckpointError as err:
        raise CheckpointError(f"{path} is not an official SwinIR-light x{scale} checkpoint: {err}") from err
    log.warning("official x%d weights %s: no known sha256, checked by %s and structure only", scale, path,
                "size" if size is not None else "nothing else (size unknown too)")


def official_weights_path(scale: int, download: bool = True) -> Path:
    """Path of the official SwinIR-light file in the cache, downloading it if asked and absent.

    The download goes to a temp file, is checked against the known size/sha256, then renamed, so
    an interrupted download never leaves a file that looks valid.
    """
    path = cache_dir() / Path(OFFICIAL_URL.format(scale=scale)).name
    if path.is_file():
        _check_official_file(path, scale)
        return path
    url = OFFICIAL_URL.format(scale=scale)
    if not download:
        raise CheckpointError(f"official x{scale} weights are not in the cache; put {url} at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            shutil.copyfileobj(response, out)
        _check_official_file(Path(tmp), scale)
        os.replace(tmp, path)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise CheckpointError(
            f"cannot download the official x{scale} weights ({err}). Without internet, download {url} "
            f"elsewhere and put it at {path} (or set {CACHE_ENV_VAR} to its folder)"
        ) from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_model(weights: str | os.PathLike | None, scale: int, device: str | torch.device = "cpu") -> tuple[SwinIR, WeightsInfo]:
    """Build SwinIR-light at ``scale`` and load ``weights`` strictly; returns (model in eval mode, info)."""
    if weights is None:
        path, source, name = shipped_weights_path(scale), "shipped", shipped_name(scale)
    elif str(weights) == "official":
        path = official_weights_path(scale)
        source, name = "official", path.stem
    else:
        path, source = Path(weights), "file"
        name = path.stem
    model = load_weights_(build_model("light", scale), read_state_dict(path), source=str(path))
    info = WeightsInfo(name=name, source=source, path=str(path), scale=scale, sha256=weights_sha256(model))
    model.weights_name = name  # what calibration records in the bounds file when not told otherwise
    return model.to(device).eval(), info
