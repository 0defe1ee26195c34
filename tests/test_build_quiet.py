"""A build prints what sr2bit has to say and nothing from the converters (issue: third-party noise).

Warnings raised while a backend lowers are filtered where they arise (named loggers, a scoped
warnings filter, each tool's own progress switch), never by touching the root logger or stderr;
the user's warning filters and logging configuration are the same after the build as before.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from conftest import tiny_bounds

from pipeline.build import build
from srcore.model import build_model
from targets import CoreMLConfig, TFLiteConfig

TILE = 16


@pytest.mark.parametrize("config", [CoreMLConfig(tile=TILE), TFLiteConfig(tile=TILE)], ids=["coreml", "tflite"])
def test_a_build_shows_no_converter_warnings_or_progress_and_leaves_logging_alone(config, tmp_path, capfd):
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    bounds = tiny_bounds(model, 4, TILE)
    root_level, filters = logging.root.level, list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(model, bounds, config, tmp_path / "out")
        seen = [w for w in caught if not issubclass(w.category, ResourceWarning)]  # hidden by Python's defaults
    err = capfd.readouterr().err
    assert [str(w.message)[:80] for w in seen] == []
    # TensorFlow's C++ runtime (loaded by litert-torch) logs a oneDNN notice through absl once per process, before
    # absl is initialised: only redirecting the process's stderr would hide it, which a library must not do. The
    # converter's "Estimated count" lines obey the TF_CPP_MIN_LOG_LEVEL of litert-torch's first import, which the
    # target sets (in a process that imported litert-torch itself first, it prints them: this test then fails).
    for noise in ("Running MIL", "Converting PyTorch", "[START]", "LiteRT-Torch Convert", "Estimated count"):
        assert noise not in err, err[-1500:]
    assert logging.root.level == root_level and warnings.filters == filters


@pytest.mark.parametrize("verbose", [False, True])
def test_the_cli_shows_its_own_info_but_not_other_libraries(verbose):
    """litert-torch logs "Use JAX lowering: ..." through the root logger at INFO, a dozen lines per TFLite build:
    the CLI's logging shows sr2bit's INFO messages and only other libraries' warnings (everything with -v)."""
    import subprocess
    import sys

    code = ("import logging; from pipeline.cli import configure_logging; "
            f"configure_logging({verbose}); logging.info('third-party info'); logging.warning('third-party warning'); "
            "[logging.getLogger(n + '.x').info(n + ' info') for n in ('pipeline', 'calibration', 'targets', 'srcore')]")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    shown = [line.split(": ", 1)[1] for line in err.splitlines() if line.startswith(("INFO", "WARNING"))]
    expected = ["third-party warning", "pipeline info", "calibration info", "targets info", "srcore info"]
    assert shown == (["third-party info"] if verbose else []) + expected, err
