"""Shared fixtures. Tests that need ../shared/data fail (never skip) when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.paths import data_root


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
