"""`--weights official`: a cached or downloaded file must be the official one (size, sha256, structure), offline.

No test touches the network: downloads go through a fake ``urlopen``, and the known size/sha256 are
set to those of small local files where a test needs a match.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
from pathlib import Path

import pytest
import torch

from srcore import weights
from srcore.checkpoint import CheckpointError, save_official
from srcore.model import build_model


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(weights.CACHE_ENV_VAR, str(tmp_path))
    return tmp_path


def _cached(cache: Path, scale: int, data: bytes) -> Path:
    path = cache / Path(weights.OFFICIAL_URL.format(scale=scale)).name
    path.write_bytes(data)
    return path


def _official_bytes(scale: int, tmp_path: Path) -> bytes:
    """A file in the official format (``params`` plus buffers) for a random SwinIR-light at ``scale``."""
    torch.manual_seed(scale)
    save_official(build_model("light", scale), tmp_path / f"x{scale}.pth")
    return (tmp_path / f"x{scale}.pth").read_bytes()


def test_cached_file_of_the_wrong_size_is_refused(cache):
    _cached(cache, 4, b"x" * 1000)
    with pytest.raises(CheckpointError, match="has 1000 bytes, the official x4 file has 17225941"):
        weights.official_weights_path(4, download=False)


def test_cached_file_of_the_right_size_and_wrong_sha_is_refused(cache, monkeypatch):
    data = b"not the release file"
    _cached(cache, 2, data)
    monkeypatch.setitem(weights.OFFICIAL_KNOWN, 2, (len(data), hashlib.sha256(b"the release file").hexdigest()))
    with pytest.raises(CheckpointError, match="does not match the official x2 sha256"):
        weights.official_weights_path(2, download=False)
    monkeypatch.setitem(weights.OFFICIAL_KNOWN, 2, (len(data), hashlib.sha256(data).hexdigest()))
    assert weights.official_weights_path(2, download=False).read_bytes() == data


def test_without_a_known_sha_the_structure_is_checked(cache, tmp_path, monkeypatch):
    x3 = _official_bytes(3, tmp_path)
    _cached(cache, 3, _official_bytes(2, tmp_path))  # a real checkpoint, of the wrong scale
    with pytest.raises(CheckpointError, match="not an official SwinIR-light x3 checkpoint"):
        weights.official_weights_path(3, download=False)
    _cached(cache, 3, b"<html>rate limited</html>")
    with pytest.raises(CheckpointError, match="not an official SwinIR-light x3 checkpoint"):
        weights.official_weights_path(3, download=False)
    _cached(cache, 3, x3)
    assert weights.official_weights_path(3, download=False).read_bytes() == x3
    # x4: the size is known, the sha256 is not; a file of that size must still be a x4 model.
    _cached(cache, 4, x3)
    monkeypatch.setitem(weights.OFFICIAL_KNOWN, 4, (len(x3), None))
    with pytest.raises(CheckpointError, match="x3 model, but a x4 model was requested"):
        weights.official_weights_path(4, download=False)


@pytest.mark.parametrize("served", ["wrong size", "wrong sha"])
def test_a_bad_download_is_refused_and_leaves_nothing(cache, monkeypatch, served):
    data = b"0123456789"
    expected = (len(data), hashlib.sha256(b"9876543210").hexdigest())
    monkeypatch.setitem(weights.OFFICIAL_KNOWN, 2, expected)
    body = data + b"extra" if served == "wrong size" else data
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(body))
    with pytest.raises(CheckpointError, match="official x2"):
        weights.official_weights_path(2)
    assert list(cache.iterdir()) == []  # neither the final name nor a .part file


def test_a_good_download_is_cached(cache, monkeypatch):
    data = b"0123456789"
    monkeypatch.setitem(weights.OFFICIAL_KNOWN, 2, (len(data), hashlib.sha256(data).hexdigest()))
    urls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: urls.append(url) or io.BytesIO(data))
    path = weights.official_weights_path(2)
    assert path.read_bytes() == data and urls == [weights.OFFICIAL_URL.format(scale=2)]
    assert weights.official_weights_path(2) == path and len(urls) == 1  # served from the cache afterwards
