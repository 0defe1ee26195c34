"""DQC: loss maths, only the bounds train, the loss falls, selection, resume after Ctrl-C; `calibrate` end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import write_wave_images

from calibration.bounds import load_bounds
from calibration.config import QuantConfig
from calibration.dqc import DqcConfig, distill_bounds_, distillation_loss
from calibration.observe import calibrate_
from calibration.qmodel import quantize_, quantizers
from pipeline.calibrate import CalibrationConfig, Method, run_calibration
from srcore.data import CropSampler
from srcore.model import build_model

TINY_DQC = DqcConfig(iterations=12, batch_size=2, lr_patch=16, checkpoint_every=2, select_every=4)


@pytest.fixture(scope="module")
def calib_folder(tmp_path_factory):
    return write_wave_images(tmp_path_factory.mktemp("calib"), count=3, height=40, width=48, noise=0.05)


def _dobi_model(bits=3):
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    quantize_(model, QuantConfig(bits, bits))
    calibrate_(model, "dobi", torch.rand(4, 3, 16, 16))
    return model


def _bounds(model):
    return {n: (q.lower.item(), q.upper.item()) for n, q in quantizers(model).items()}


def test_loss_matches_released_code_scaling():
    torch.manual_seed(0)
    out_q, out_fp = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    fq, ff = [torch.randn(2, 16, 4)], [torch.randn(2, 16, 4)]
    pixel = (out_q - out_fp).abs().mean().item() / out_q.numel() * 2
    nq = fq[0] / fq[0].flatten(1).norm(dim=1)[:, None, None]
    nf = ff[0] / ff[0].flatten(1).norm(dim=1)[:, None, None]
    feature = 5 * ((nq - nf) ** 2).mean().item() / fq[0].numel()
    loss = distillation_loss(out_q, out_fp, fq, ff, DqcConfig())
    assert loss.item() == pytest.approx(pixel + feature, rel=1e-6)
    paper = distillation_loss(out_q, out_fp, fq, ff, DqcConfig(loss_scaling="paper"))
    assert paper.item() == pytest.approx(pixel / 2 * out_q.numel() + feature * fq[0].numel(), rel=1e-6)
    assert distillation_loss(out_q, out_q, fq, fq, DqcConfig()).item() == 0.0


# The code's 1/numel scaling puts gradients near Adam's eps, so its steps are damped: it must still
# lower the loss, the paper's scaling by more (measured 0.86-0.95 and 0.75-0.80 at 1-2 threads; 0.90
# for the paper's once the post-softmax lower bound is pinned at 0, issue 21).
@pytest.mark.parametrize("scaling, max_ratio", [("code", 0.99), ("paper", 0.95)])
def test_only_bounds_train_and_loss_falls(scaling, max_ratio):
    model = _dobi_model()
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith(("lower", "upper"))}
    before = _bounds(model)
    batch = torch.rand(2, 3, 16, 16)
    config = dataclasses.replace(TINY_DQC, iterations=30, loss_scaling=scaling, schedule="constant")
    result = distill_bounds_(model, lambda n: batch, config, progress=False)
    assert np.mean(result.losses[-5:]) < max_ratio * np.mean(result.losses[:5])
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
    assert _bounds(model) != before
    assert all(lo < hi for lo, hi in _bounds(model).values())
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards


def test_exponential_lower_bounds_can_be_frozen():
    from calibration.quantizer import Distribution

    model = _dobi_model()
    before = _bounds(model)
    config = dataclasses.replace(TINY_DQC, iterations=5, train_exponential_lower=False)
    distill_bounds_(model, lambda n: torch.rand(n, 3, 16, 16), config, progress=False)
    after = _bounds(model)
    exponential = {n for n, q in quantizers(model).items() if q.distribution is Distribution.EXPONENTIAL}
    assert len(exponential) == 4 * 2  # bmm2_attn and fc2.act in each of the tiny model's 4 blocks
    assert all(after[n][0] == before[n][0] and after[n][1] != before[n][1] for n in exponential)
    assert all(after[n] != before[n] for n in set(after) - exponential)


def test_selection_keeps_the_best_step():
    model = _dobi_model()
    scores = iter([1.0, 3.0, 2.0])
    result = distill_bounds_(model, lambda n: torch.rand(n, 3, 16, 16), TINY_DQC, select=lambda m: next(scores),
                             select_label="fake", progress=False)
    assert (result.kept_step, result.selection_psnr, result.selection) == (8, 3.0, "best PSNR on fake")


def test_resume_after_interrupt_is_identical(calib_folder, tmp_path, one_thread):
    config = dataclasses.replace(TINY_DQC, iterations=6)

    def run(run_dir, interrupt_at=None):
        """(bounds after the run, optimizer steps this call ran): one crop batch is drawn per step."""
        model = _dobi_model()
        sampler = CropSampler(lr_folders=[str(calib_folder)], scale=2, lr_size=16, seed=1)
        calls = {"n": 0}

        def sample(n):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            return sampler.sample_lr(n)

        result = distill_bounds_(model, sample, config, run_dir=run_dir, progress=False,
                                 sampler_state=(sampler.state_dict, sampler.load_state_dict))
        return _bounds(model), calls["n"], len(result.losses)

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", interrupt_at=4)  # dies during step 4; state of step 3 is saved
    bounds, steps_run, losses = run(tmp_path / "b")
    # A restart from step 0 gives the same bounds (deterministic), so the step count tells them apart.
    assert steps_run == config.iterations - 3 and losses == config.iterations
    assert bounds == straight[0]


def test_resume_with_other_config_is_refused(tmp_path):
    distill_bounds_(_dobi_model(), lambda n: torch.rand(n, 3, 16, 16), TINY_DQC, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="cannot resume"):
        distill_bounds_(_dobi_model(), lambda n: torch.rand(n, 3, 16, 16), dataclasses.replace(TINY_DQC, batch_size=3),
                        run_dir=tmp_path, progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="schedule"):
        DqcConfig(schedule="step")
    with pytest.raises(ValueError, match="iterations"):
        DqcConfig(iterations=0)


def test_calibrate_2dquant_writes_a_self_describing_bounds_file(calib_folder, tmp_path):
    from calibration.bounds import save_bounds

    model = build_model("tiny", 2)
    config = CalibrationConfig(Method.TWODQUANT, QuantConfig(4, 4), dqc=TINY_DQC, num_crops=4, crop_size=16)
    result = run_calibration(model, config, [calib_folder], weights_name="tiny", progress=False)
    path = save_bounds(result.bounds, tmp_path / "b.safetensors")
    bounds = load_bounds(path)
    assert bounds.method == "dobi+dqc" and bounds.settings["selection"] == "last"
    assert bounds.settings["dqc"]["iterations"] == 12 and bounds.seed == 0
    assert len(bounds.quantizers) == 16 * 4


def test_calibration_plots(calib_folder, tmp_path):
    from pipeline.plots import plot_calibration

    model = build_model("tiny", 2)
    config = CalibrationConfig(Method.TWODQUANT, QuantConfig(4, 4), dqc=dataclasses.replace(TINY_DQC, iterations=3),
                               num_crops=4, crop_size=16)
    result = run_calibration(model, config, [calib_folder], weights_name="tiny", progress=False)
    paths = plot_calibration(result.model, result, tmp_path)
    assert [p.name for p in paths] == ["bounds_coverage.png", "dqc_loss.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
