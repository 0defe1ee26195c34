"""The Python API: the README's "From Python" lines run as written on the tiny model; configs, overrides, safety.

Also the build folder's atomicity against Ctrl-C (``KeyboardInterrupt`` is not an ``Exception``) and
``force`` keeping the old folder until the new one is complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import write_wave_images

import pipeline.api
from calibration.config import DeployMode, QuantConfig
from calibration.qmodel import quantize_, quantizers
from pipeline.api import CalibrationConfig, CoreMLConfig, Method, build, calibrate
from srcore.checkpoint import weights_sha256
from srcore.model import build_model

ROOT = Path(__file__).resolve().parents[1]
TILE = 16


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    model.weights_name = "tiny"
    return model


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    write_wave_images(folder, count=2, height=72, width=72)  # the default 64 px crops fit
    return folder


def _readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_lines_run_as_written_on_the_tiny_model(tiny, calib, tmp_path, monkeypatch):
    code = _readme_python()
    assert code.count("\n") <= 7 and "calibrate(" in code and "build(" in code and ".run(" in code
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline.api, "load_model", lambda weights, scale: (tiny, None))
    code = code.replace("tile=64", f"tile={TILE}")  # the tiny model's artifact is a small one
    namespace = {"calib_dir": calib, "lr": torch.rand(1, 3, TILE, TILE)}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["sr"].shape == (1, 3, 2 * TILE, 2 * TILE)
    manifest = json.loads((tmp_path / "build" / "x4-w4-coreml" / "manifest.json").read_text())
    assert manifest["bounds"]["file"] == "x4-w4a4.safetensors" and manifest["weights"]["name"] == "tiny"
    assert manifest["weight_bits"] == 4 and manifest["tile"] == TILE
    assert manifest["deploy_mode"]["target"] == "fp16" and manifest["deploy_mode"]["bounds"] == "paper"
    assert "--deploy fp16" in manifest["deploy_mode"]["warning"]  # A4-calibrated bounds into an fp16 runtime


def test_bounds_calibrated_for_the_targets_deploy_mode_build_without_a_warning(tiny, calib, tmp_path, caplog):
    config = CalibrationConfig(Method.MINMAX, QuantConfig(4, None, deploy=DeployMode.FP16), num_crops=2, crop_size=16)
    bounds = calibrate(tiny, config, calib, progress=False)
    with caplog.at_level("WARNING", logger="pipeline.build"):
        artifact = build(tiny, bounds, CoreMLConfig(tile=TILE), tmp_path / "out")
    assert artifact.manifest["deploy_mode"] == {"target": "fp16", "bounds": "fp16", "warning": None}
    assert not caplog.records


def test_calibrate_leaves_the_model_unchanged(tiny, calib):
    before = weights_sha256(tiny)
    modules = [type(m) for m in tiny.modules()]
    bounds = calibrate(tiny, CalibrationConfig(Method.MINMAX, QuantConfig(4, 4), num_crops=2, crop_size=16), calib,
                       progress=False)
    assert len(bounds.quantizers) == 64 and bounds.weights_name == "tiny"
    assert weights_sha256(tiny) == before and [type(m) for m in tiny.modules()] == modules


def test_build_refuses_a_model_that_holds_quantizers(tiny, tmp_path):
    from conftest import tiny_bounds

    quantized = quantize_(build_model("tiny", 2).eval(), QuantConfig(4, 4))
    with pytest.raises(ValueError, match="holds quantizers.*leaves the model unchanged"):
        build(quantized, tiny_bounds(tiny, 4, TILE), CoreMLConfig(tile=TILE), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_configs_check_themselves():
    with pytest.raises(ValueError, match="method must be one of"):
        CalibrationConfig("kmeans")
    assert CalibrationConfig("dobi").method is Method.DOBI
    with pytest.raises(ValueError, match="2dquant needs a DqcConfig"):
        CalibrationConfig(Method.TWODQUANT)
    with pytest.raises(ValueError, match="dobi has no DQC stage"):
        CalibrationConfig(Method.DOBI, dqc=pipeline.api.DQC_PRESETS["cpu"])
    with pytest.raises(ValueError, match="minmax initialises with a MinMaxConfig, got DobiConfig"):
        CalibrationConfig(Method.MINMAX, init=pipeline.api.DobiConfig())
    with pytest.raises(ValueError, match="tile must be an integer"):
        CoreMLConfig(tile=0)
    with pytest.raises(ValueError, match="compute_precision must be one of"):
        CoreMLConfig(compute_precision="fp8")
    assert CoreMLConfig(compute_precision="fp32").compute_precision is pipeline.api.Precision.FP32
    with pytest.raises(AttributeError):
        CoreMLConfig().tile = 32  # frozen


def test_bits_are_overridden_by_role_and_by_name_pattern_and_recorded_per_quantizer():
    config = QuantConfig(2, 4, overrides=(("activation", 8), ("layers.0.*", 4), ("*.mlp.fc2.act", 3)))
    model = quantize_(build_model("tiny", 2).eval(), config)
    bits = {name: q.bits for name, q in quantizers(model).items()}
    assert bits["layers.1.residual_group.blocks.0.attn.q.weight"] == 2
    assert bits["layers.1.residual_group.blocks.0.attn.bmm1_q"] == 8
    assert bits["layers.0.residual_group.blocks.0.attn.proj.weight"] == 4
    assert bits["layers.0.residual_group.blocks.0.mlp.fc2.act"] == 3  # the later, more specific entry wins
    assert bits["layers.1.residual_group.blocks.0.mlp.fc2.act"] == 3
    assert QuantConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="share the tensor attn.qkv"):
        quantize_(build_model("tiny", 2).eval(), QuantConfig(4, 4, overrides=(("*.attn.q.weight", 2),)))
    with pytest.raises(ValueError, match="bits must be one of"):
        QuantConfig(4, 4, overrides=(("weight", 5),))


def _interrupting_verify(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_mid_build_leaves_nothing_and_force_keeps_the_old_folder(tiny, tmp_path, monkeypatch):
    from conftest import tiny_bounds

    from targets.coreml import CoreMLTarget

    bounds = tiny_bounds(tiny, 4, TILE)
    monkeypatch.setattr(CoreMLTarget, "verify", _interrupting_verify)
    with pytest.raises(KeyboardInterrupt):
        build(tiny, bounds, CoreMLConfig(tile=TILE), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "out"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        build(tiny, bounds, CoreMLConfig(tile=TILE), old, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (old / "manifest.json").read_text() == "{}"
    monkeypatch.undo()
    renames = []
    real_rename = Path.rename

    def watched(self, target):
        renames.append((self.name, Path(target).name, (old / "manifest.json").exists()))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", watched)
    build(tiny, bounds, CoreMLConfig(tile=TILE), old, force=True)
    assert json.loads((old / "manifest.json").read_text())["target"] == "coreml"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    # The old folder was still in place when the new one was complete (set aside, then replaced).
    assert renames[0][0] == "out" and renames[0][1].startswith(".out.replaced-") and renames[0][2]
