"""Where sr2bit finds the shared data: one setting, the ``SR2BIT_DATA`` environment variable.

Without it the default is ``../shared/data`` seen from the current directory, then from the
repository root, so that ``python -m pipeline ...`` works both in a checkout and in CI.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "SR2BIT_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_RELATIVE = Path("..") / "shared" / "data"


def data_root(required: bool = True) -> Path | None:
    """Return the shared data folder.

    Args:
        required: raise ``FileNotFoundError`` (naming the setting) when the folder is missing,
            instead of returning ``None``.
    """
    env = os.environ.get(DATA_ENV_VAR)
    candidates = [Path(env)] if env else [Path.cwd() / _DEFAULT_RELATIVE, REPO_ROOT / _DEFAULT_RELATIVE]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"shared data folder not found (tried {tried}); set {DATA_ENV_VAR} to the folder that "
            "holds benchmark/, calib/ and train/"
        )
    return None


def calib_dir() -> Path:
    """Return the default calibration folder ``<data>/calib/DF2K_LR_bicubic/X4``, raising if it is missing."""
    path = data_root() / "calib" / "DF2K_LR_bicubic" / "X4"
    if not path.is_dir():
        raise FileNotFoundError(f"no calibration folder {path}; pass --calib DIR")
    return path


def benchmark_dir(name: str) -> Path:
    """Return ``<data>/benchmark/<name>`` (e.g. ``Set5``), raising if it is missing."""
    path = data_root() / "benchmark" / name
    if not path.is_dir():
        raise FileNotFoundError(f"benchmark folder {path} does not exist")
    return path


CACHE_ENV_VAR = "SR2BIT_CACHE"


def cache_dir() -> Path:
    """Where builds keep reusable intermediates (FP32 baselines): ``$SR2BIT_CACHE``, default ``~/.cache/sr2bit``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "sr2bit")
