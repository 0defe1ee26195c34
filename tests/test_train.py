"""Trainer: the loss falls on a tiny config, and an interrupted run resumes bit-identically."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import write_wave_images
from safetensors.torch import load_file, save_file

import pipeline.train
from pipeline.train import TrainConfig, train
from srcore.data import PairStream
from srcore.model import build_model


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    return write_wave_images(tmp_path_factory.mktemp("hr"), count=4, height=96, width=96)


def _config(folder, **overrides) -> TrainConfig:
    base = TrainConfig(scale=2, variant="tiny", hr_folders=(str(folder),), lr_patch=16, batch_size=4, steps=20,
                       learning_rate=2e-3, warmup_steps=2, log_every=5, checkpoint_every=5, validate_every=1000)
    return dataclasses.replace(base, **overrides)


def test_loss_decreases(hr_folder, tmp_path):
    train(_config(hr_folder), tmp_path, progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0]


def test_resume_is_bit_identical(hr_folder, tmp_path, monkeypatch, one_thread):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train(_config(hr_folder, steps=6), straight, progress=False)
    train(_config(hr_folder, steps=6), interrupted, progress=False, until_step=3)
    drawn = []  # one batch per step the resumed session runs

    class CountingStream(PairStream):
        def __next__(self):
            drawn.append(1)
            return super().__next__()

    monkeypatch.setattr(pipeline.train, "PairStream", CountingStream)
    train(_config(hr_folder, steps=6), interrupted, progress=False)  # resumes from step 3
    # A restart from step 0 ends with the same weights (deterministic), so the steps run tell them apart.
    assert len(drawn) == 3
    a, b = load_file(straight / "best.safetensors"), load_file(interrupted / "best.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_closing_a_stream_lets_its_workers_finish(hr_folder):
    """Pool.terminate killed workers, one of them at times while it wrote a batch to the result pipe, whose
    lock it then kept: terminate itself waited for that lock forever (a CI run hung there)."""
    stream = PairStream(dict(hr_folders=[str(hr_folder)], scale=2, lr_size=16, seed=3), 3, workers=2)
    next(stream)  # and 3 more batches drawn ahead
    workers = list(stream._pool._pool)
    stream.close()
    assert [worker.exitcode for worker in workers] == [0, 0]  # they ended on their own, not killed


def test_worker_processes_draw_the_same_batches(hr_folder):
    args = dict(hr_folders=[str(hr_folder)], scale=2, lr_size=16, seed=3)
    with PairStream(args, 3, start=7) as inline, PairStream(args, 3, start=7, workers=2) as pooled:
        for _ in range(3):
            (lr_a, hr_a), (lr_b, hr_b) = next(inline), next(pooled)
            assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)
    with PairStream(args, 3, start=7) as again, PairStream(args, 3, start=8) as resumed:
        first, second = next(again), next(again)
        assert torch.equal(second[1], next(resumed)[1])  # a resumed stream continues where it stopped
        assert not torch.equal(first[1], second[1])


def test_fine_tuning_starts_from_the_given_weights(hr_folder, tmp_path):
    init = tmp_path / "init.safetensors"
    model = build_model("tiny", 2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(init))
    train(_config(hr_folder, steps=1, learning_rate=1e-12, warmup_steps=1, init_weights=str(init)), tmp_path / "run",
          progress=False)
    tuned = load_file(tmp_path / "run" / "best.safetensors")
    assert all(torch.allclose(tuned[k], v, atol=1e-6) for k, v in model.state_dict().items())


def test_resume_with_other_settings_is_refused(hr_folder, tmp_path):
    train(_config(hr_folder, steps=5), tmp_path, progress=False)
    with pytest.raises(ValueError, match="different batch_size"):
        train(_config(hr_folder, steps=10, batch_size=2), tmp_path, progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="hr_folders is empty"):
        TrainConfig()
    with pytest.raises(ValueError, match="batch_size must be positive"):
        TrainConfig(hr_folders=("x",), batch_size=0)


def test_learning_rate_schedule():
    config = TrainConfig(hr_folders=("x",), steps=1000, warmup_steps=100, learning_rate=1e-3, min_learning_rate=0.0)
    assert config.learning_rate_at(0) == pytest.approx(1e-5)
    assert config.learning_rate_at(99) == pytest.approx(1e-3)
    assert config.learning_rate_at(550) == pytest.approx(5e-4)
    assert config.learning_rate_at(1000) == pytest.approx(0.0)
