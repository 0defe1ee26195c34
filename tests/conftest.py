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
def _seed_and_threads():
    torch.manual_seed(0)
    yield
