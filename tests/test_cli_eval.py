"""`python -m pipeline eval`: published bicubic numbers, model evaluation and clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cli import main
from srcore.checkpoint import save_official
from srcore.model import build_model


@pytest.mark.parametrize("scale, psnr, ssim", [(4, "28.43", "0.811"), (2, "33.67", "0.930")])
def test_bicubic_reproduces_published_set5(data_dir, capsys, tmp_path, scale, psnr, ssim):
    """MATLAB-bicubic Set5 baseline with the SwinIR/2DQuant metric convention."""
    code = main(["eval", "--model", "bicubic", "--scale", str(scale), "--data", str(data_dir / "benchmark/Set5"),
                 "--quiet", "--json", str(tmp_path / "r.json")])
    assert code == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| Set5 |"))
    assert f"| {psnr} | {ssim}" in row
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["results"][0]["dataset"] == "Set5" and len(saved["results"][0]["images"]) == 5


@pytest.fixture(scope="module")
def random_x4_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "random_x4.pth"
    save_official(build_model("light", 4), path)
    return path


def test_model_eval_tiled_and_saved(data_dir, capsys, tmp_path, random_x4_weights):
    hr = tmp_path / "mini" / "HR"
    hr.mkdir(parents=True)
    Image.open(data_dir / "benchmark/Set5/HR/butterfly.png").crop((0, 0, 96, 80)).save(hr / "crop.png")
    code = main(["eval", "--weights", str(random_x4_weights), "--data", str(tmp_path / "mini"), "--tile", "16",
                 "--tile-overlap", "4", "--save-images", str(tmp_path / "sr"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "random_x4 (file, x4" in out and "| mini | x4 | 1 |" in out
    assert np.asarray(Image.open(tmp_path / "sr/mini/crop.png")).shape == (80, 96, 3)


def test_deploy_mode_bounds_are_scored_in_their_deploy_simulation(data_dir, capsys, tmp_path, random_x4_weights):
    """A bounds file calibrated in ``int8-token`` mode is evaluated with int8 per-token Linear inputs, as calibrated."""
    import copy

    from calibration.bounds import apply_bounds_, bounds_from_model, save_bounds
    from calibration.config import DeployMode, MinMaxConfig, QuantConfig
    from calibration.deploy import simulate
    from calibration.observe import calibrate_
    from calibration.qmodel import quantize_
    from pipeline.evaluate import evaluate, model_upscaler
    from srcore.weights import load_model

    hr = tmp_path / "mini" / "HR"
    hr.mkdir(parents=True)
    Image.open(data_dir / "benchmark/Set5/HR/butterfly.png").crop((0, 0, 48, 40)).save(hr / "crop.png")
    fp, info = load_model(str(random_x4_weights), 4)
    student = quantize_(copy.deepcopy(fp), QuantConfig(2, None, deploy=DeployMode.INT8_TOKEN))
    calibrate_(student, MinMaxConfig(), torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    bounds = bounds_from_model(student, method="minmax", settings={}, weights_name=info.name)
    path = save_bounds(bounds, tmp_path / "int8.safetensors")
    assert main(["eval", "--weights", str(random_x4_weights), "--data", str(tmp_path / "mini"), "--bounds", str(path),
                 "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    assert "int8-token deploy simulation" in capsys.readouterr().out
    scored = json.loads((tmp_path / "r.json").read_text())["results"][0]["psnr"]
    with torch.no_grad():
        expected = evaluate(model_upscaler(simulate(apply_bounds_(copy.deepcopy(fp), bounds), DeployMode.INT8_TOKEN)),
                            [tmp_path / "mini"], 4, progress=False)[0].psnr
        paper = evaluate(model_upscaler(apply_bounds_(copy.deepcopy(fp), bounds)), [tmp_path / "mini"], 4,
                         progress=False)[0].psnr
    assert scored == pytest.approx(expected, abs=1e-9) and abs(scored - paper) > 1e-6


def _run_error(args, capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_missing_and_empty_folders(tmp_path, capsys):
    assert "does not exist" in _run_error(["eval", "--model", "bicubic", "--data", str(tmp_path / "nope")], capsys)
    (tmp_path / "empty").mkdir()
    assert "no images" in _run_error(["eval", "--model", "bicubic", "--data", str(tmp_path / "empty")], capsys)


def test_corrupt_gray_rgba_16bit_and_tiny_images(tmp_path, capsys, caplog):
    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (40, 48), dtype=np.uint16)).save(folder / "gray16.png")
    Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)).save(folder / "one_pixel.png")
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(folder / "smaller_than_window.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--data", str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| odd | x2 | 3 |" in out  # gray, rgba, 16-bit scored; tiny ones and the corrupt file reported
    assert "corrupt.png" in caplog.text and "one_pixel" in caplog.text and "smaller_than_window" in caplog.text
    assert main(["eval", "--model", "bicubic", "--scale", "2", "--data", str(folder), "--on-error", "raise"]) == 2


def test_bad_checkpoints(tmp_path, capsys, random_x4_weights, data_dir):
    set5 = str(data_dir / "benchmark/Set5")
    err = _run_error(["eval", "--weights", str(random_x4_weights), "--scale", "2", "--data", set5], capsys)
    assert "x4 model, but a x2 model was requested" in err
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(random_x4_weights.read_bytes()[:100_000])
    assert "truncated or corrupt" in _run_error(["eval", "--weights", str(truncated), "--data", set5], capsys)
    assert "does not exist" in _run_error(["eval", "--weights", str(tmp_path / "none.pth"), "--data", set5], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_requested_without_cuda(capsys):
    assert "no CUDA device" in _run_error(["eval", "--model", "bicubic", "--device", "cuda"], capsys)


def test_official_weights_offline_fail_fast(monkeypatch, tmp_path, capsys, data_dir):
    """No network here: `--weights official` must say where to put the file."""
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setenv("SR2BIT_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    err = _run_error(["eval", "--weights", "official", "--data", str(data_dir / "benchmark/Set5")], capsys)
    assert "cannot download the official x4 weights" in err and str(tmp_path) in err
    assert not list(tmp_path.iterdir())  # nothing half-written
