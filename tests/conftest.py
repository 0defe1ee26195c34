"""Shared fixtures. Tests that need ../shared/data fail (never skip) when it is missing."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from calibration.bounds import bounds_from_model
from calibration.config import MinMaxConfig, QuantConfig
from calibration.observe import calibrate_
from calibration.qmodel import quantize_
from srcore.paths import data_root


def tiny_bounds(model, bits: int, tile: int):
    """MinMax W<bits>A<bits> bounds of a (tiny) model from two random tiles: a quick, valid bounds file."""
    q = copy.deepcopy(model)
    quantize_(q, QuantConfig(bits, bits))
    calibrate_(q, MinMaxConfig(), torch.rand(2, 3, tile, tile, generator=torch.Generator().manual_seed(1)))
    return bounds_from_model(q, method="minmax", settings={}, weights_name="tiny")


def assert_verify_checks_conv_grids(target, artifact: Path, weights, grids) -> None:
    """``target.verify`` accepts the int8 convolution ``grids`` as stored, refuses one of them changed by one
    code or one scale, and refuses their absence (a stored grid with no calibrated twin)."""
    import dataclasses

    from targets import TargetError

    assert target.verify(artifact, weights, convs=grids)["int8_convolutions"] == len(grids)
    codes, scales = grids[-1].codes.clone(), grids[-1].scales.clone()
    codes.view(-1)[0] = codes.view(-1)[0] + (1 if codes.view(-1)[0] < 127 else -1)
    scales[0] = scales[0] * 2
    for changed in (dataclasses.replace(grids[-1], codes=codes), dataclasses.replace(grids[-1], scales=scales)):
        with pytest.raises(TargetError, match="no int8 convolution in the artifact holds its codes and scales"):
            target.verify(artifact, weights, convs=[*grids[:-1], changed])
    with pytest.raises(TargetError, match="int8 convolutions in the artifact match no calibrated grid"):
        target.verify(artifact, weights)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(items):
    """Under xdist (``--dist=loadgroup``), keep each test module on one worker, so its module-scoped builds
    run once, except the mutant runs: independent subprocesses, spread over the workers."""
    for item in items:
        if item.path.name != "test_mutants.py":
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder; a missing folder is a test failure, not a skip."""
    return data_root(required=True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread avoids OpenMP start-up and contention on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_wave_images(folder: Path, count: int, height: int, width: int, noise: float = 0.0) -> Path:
    """Smooth synthetic RGB photos (random plane waves, optional Gaussian noise) as PNGs in ``folder``.

    Easy to super-resolve, so a few training or DQC steps visibly change the loss; seeded.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    for i in range(count):
        f = rng.uniform(1, 4, size=(3, 2))
        img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + i) for c in range(3)], -1)
        img = np.clip(img + rng.normal(0, noise, img.shape), 0, 1) if noise else img
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"img{i}.png")
    return folder
