"""Several processes (issue 20): under torchrun with gloo, train-fp and DQC give the one-process results.

"Same crops" means the same global batch: rank r computes rows ``[r*B/N, (r+1)*B/N)`` of the batch
one process would draw (:meth:`srcore.distributed.Distributed.shard`). The torchrun tests launch
``python -m torch.distributed.run --standalone --nproc_per_node 2`` as users do (2 CPU processes,
gloo, the tiny model) and compare with the same command or function in this one process.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_wave_images
from safetensors.torch import load_file

from calibration.bounds import load_bounds
from calibration.dqc import DqcConfig, distillation_loss
from pipeline.cli import main
from srcore.data import CropSampler, PairStream
from srcore.distributed import SINGLE, Distributed, process_group
from srcore.model import build_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train-fp", "--variant", "tiny", "--scale", "2", "--patch", "16", "--batch-size", "4", "--lr", "2e-3",
         "--warmup", "1", "--no-val", "--quiet"]


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    return write_wave_images(tmp_path_factory.mktemp("hr"), count=4, height=96, width=96)


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"largest difference {worst:.2e} > {atol:.0e}"


# -- one process: the shard arithmetic and the per-rank crop streams ---------------------------


def test_shard_splits_the_global_batch():
    assert [Distributed(r, 2).shard(8) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    assert SINGLE.shard(5) == slice(0, 5)
    with pytest.raises(ValueError, match="batch size 8 does not divide among 3 processes"):
        Distributed(0, 3).shard(8)
    with pytest.raises(ValueError, match="rank must be in"):
        Distributed(2, 2)


def test_ranks_draw_disjoint_rows_of_the_one_process_batches(hr_folder):
    args = dict(hr_folders=[str(hr_folder)], lr_folders=[str(hr_folder)], scale=2, lr_size=16, seed=3)
    with (PairStream(args, 4, start=5) as whole, PairStream(args, 4, start=5, rows=slice(0, 2)) as rank0,
          PairStream(args, 4, start=5, rows=slice(2, 4), workers=1) as rank1):
        for _ in range(2):
            (lr, hr), (lr0, hr0), (lr1, hr1) = next(whole), next(rank0), next(rank1)
            assert lr0.shape[0] == lr1.shape[0] == 2
            assert torch.equal(torch.cat([lr0, lr1]), lr) and torch.equal(torch.cat([hr0, hr1]), hr)
            assert not torch.equal(hr0, hr1)
    one, first, second = (CropSampler(**args) for _ in range(3))
    for _ in range(2):  # the generators stay in step, so the next DQC batch is shared too
        assert torch.equal(torch.cat([first.sample_lr(4, slice(0, 2)), second.sample_lr(4, slice(2, 4))]),
                           one.sample_lr(4))


def test_shard_losses_average_to_the_batch_loss():
    """What DDP's mean over ranks sees: the code scaling's feature term is quadratic in the batch."""
    out_q, out_fp = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    feats_q, feats_fp = [torch.randn(4, 16, 4)], [torch.randn(4, 16, 4)]
    for scaling in ("code", "paper"):
        config = DqcConfig(loss_scaling=scaling)
        whole = distillation_loss(out_q, out_fp, feats_q, feats_fp, config).item()
        shards = [distillation_loss(out_q[rows], out_fp[rows], [feats_q[0][rows]], [feats_fp[0][rows]], config, 2)
                  for rows in (Distributed(r, 2).shard(4) for r in range(2))]
        assert sum(shards).item() / 2 == pytest.approx(whole, rel=1e-6)


def test_process_group_without_torchrun_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group("cpu") as dist:
        assert dist is SINGLE and dist.is_main and not dist.enabled
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="RANK and LOCAL_RANK not set: launch with torchrun"):
        with process_group("cpu"):
            pass


# -- two processes under torchrun --------------------------------------------------------------


def test_train_fp_on_two_processes_equals_one(hr_folder, tmp_path):
    common = [*TRAIN, "--steps", "3", "--checkpoint-every", "2", "--hr", str(hr_folder)]
    done = _run(_torchrun("-m", "pipeline", *common, "--run-dir", str(tmp_path / "ddp")))
    assert done.stdout.count("trained to step 3") == 1  # rank 0 alone reports
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["best.safetensors", "last.pt", "log.jsonl"]
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    assert (state["step"], state["world_size"]) == (3, 2)
    assert main([*common, "--run-dir", str(tmp_path / "one")]) == 0

    ddp, one = load_file(tmp_path / "ddp" / "best.safetensors"), load_file(tmp_path / "one" / "best.safetensors")
    _assert_close(ddp, one, atol=1e-5)
    torch.manual_seed(0)  # train's initialisation (seed 0)
    init = build_model("tiny", 2).state_dict()
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 1e-3  # 3 steps moved far beyond the tolerance
    [logged_ddp], [logged_one] = ((tmp_path / d / "log.jsonl").read_text().splitlines() for d in ("ddp", "one"))
    assert json.loads(logged_ddp)["loss"] == pytest.approx(json.loads(logged_one)["loss"], rel=1e-5)


_DQC_WORKER = '''
import json
import sys
import torch
from calibration.bounds import save_bounds
from calibration.config import QuantConfig
from calibration.dqc import DqcConfig
from pipeline.calibrate import CalibrationConfig, Method, run_calibration
from srcore.distributed import process_group
from srcore.model import build_model


def main(calib, out):
    """DOBI then 2 DQC steps of batch 4 on the tiny model; rank 0 writes the bounds and the losses."""
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    dqc = DqcConfig(iterations=2, batch_size=4, lr_patch=16, schedule="constant", loss_scaling="code")
    config = CalibrationConfig(Method.TWODQUANT, QuantConfig(3, 3), dqc=dqc, num_crops=4, crop_size=16)
    with process_group("cpu") as dist:
        result = run_calibration(model, config, [calib], weights_name="tiny", progress=False, dist=dist)
    if dist.is_main:
        save_bounds(result.bounds, out)
        with open(out + ".losses.json", "w") as f:
            json.dump(result.dqc.losses, f)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
'''


def test_dqc_on_two_processes_equals_one(tmp_path, one_thread):
    """With the released code's loss scaling, whose feature term is quadratic in the batch (distillation_loss).

    The quantizers round, so from the second step on the ulp-level differences of the gradient sums
    (one process vs two) flip a few roundings: the bounds then differ by up to 3e-5 here, against
    2e-2 when the ranks do not average their gradients or draw the same rows.
    """
    calib = write_wave_images(tmp_path, count=3, height=40, width=48, noise=0.05)
    worker = tmp_path / "dqc_worker.py"
    worker.write_text(_DQC_WORKER)
    ddp_out, one_out = str(tmp_path / "ddp.safetensors"), str(tmp_path / "one.safetensors")
    _run(_torchrun(str(worker), str(calib), ddp_out))
    one = runpy.run_path(str(worker))["main"](str(calib), one_out)
    ddp = load_bounds(ddp_out).quantizers
    _assert_close({k: torch.tensor([q.lower, q.upper]) for k, q in ddp.items()},
                  {k: torch.tensor([q.lower, q.upper]) for k, q in one.bounds.quantizers.items()}, atol=2e-4)
    moved = max(abs(q.upper - one.init_bounds[k][1]) for k, q in one.bounds.quantizers.items())
    assert moved > 1e-2  # DQC moved the bounds far more than the tolerance
    ddp_losses = json.loads(Path(ddp_out + ".losses.json").read_text())
    assert ddp_losses[0] == pytest.approx(one.dqc.losses[0], rel=1e-6)  # same bounds, same crops: same loss
    assert ddp_losses[1] == pytest.approx(one.dqc.losses[1], rel=1e-3)


def _wait_for_log(process: subprocess.Popen, log_file: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not (log_file.is_file() and log_file.read_text()):
        assert process.poll() is None, "the run ended before its first log line"
        assert time.monotonic() < deadline, f"no {log_file} after {timeout} s"
        time.sleep(0.2)


def _assert_group_gone(pgid: int) -> None:
    with pytest.raises(ProcessLookupError):  # no rank left behind
        os.killpg(pgid, 0)


def test_ctrl_c_stops_every_rank_after_one_step_and_the_run_resumes(hr_folder, tmp_path, one_thread):
    run, stderr = tmp_path / "ddp", tmp_path / "stderr.txt"
    common = [*TRAIN, "--hr", str(hr_folder), "--checkpoint-every", "100000"]
    with stderr.open("w") as err:
        # A session of its own: a terminal's Ctrl-C signals the whole foreground process group.
        process = subprocess.Popen(_torchrun("-m", "pipeline", *common, "--steps", "100000", "--run-dir", str(run)),
                                   cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            _wait_for_log(process, run / "log.jsonl")  # step 20 done
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    _assert_group_gone(process.pid)
    text = stderr.read_text()
    saved = torch.load(run / "last.pt", weights_only=False)
    assert (saved["world_size"], saved["step"] >= 20) == (2, True)
    assert re.findall(r"interrupted at step (\d+): saving", text) == [str(saved["step"])], text[-3000:]
    assert "Connection closed" not in text  # both ranks left after the same step, no one mid-collective
    assert "rank 1: interrupted; every rank stops after this step" in text

    # Resume under torchrun (same world size) = resume in one process from the same checkpoint.
    shutil.copytree(run, tmp_path / "one")
    steps = ["--steps", str(saved["step"] + 2)]
    _run(_torchrun("-m", "pipeline", *common, *steps, "--run-dir", str(run)))
    assert main([*common, *steps, "--run-dir", str(tmp_path / "one")]) == 0
    _assert_close(load_file(run / "best.safetensors"), load_file(tmp_path / "one" / "best.safetensors"), atol=1e-5)
    assert torch.load(run / "last.pt", weights_only=False)["step"] == saved["step"] + 2


_FAILING_RANK = '''
import os
import sys
import srcore.data
from pipeline.cli import main

if os.environ["RANK"] == "1":  # rank 1 fails while drawing the crops of its third step
    draw, calls = srcore.data.CropSampler.draw_pairs, []

    def failing(self, n, rows=None):
        calls.append(n)
        if len(calls) == 3:
            raise RuntimeError("rank 1 fails on purpose")
        return draw(self, n, rows)

    srcore.data.CropSampler.draw_pairs = failing
sys.exit(main(sys.argv[1:]))
'''


def test_a_failing_rank_stops_the_others(hr_folder, tmp_path):
    worker, run = tmp_path / "failing_rank.py", tmp_path / "run"
    worker.write_text(_FAILING_RANK)
    process = subprocess.Popen(_torchrun(str(worker), *TRAIN, "--hr", str(hr_folder), "--steps", "100000",
                                         "--checkpoint-every", "100000", "--run-dir", str(run)),
                               cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, text = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    _assert_group_gone(process.pid)
    assert process.returncode != 0
    assert "rank 1 fails on purpose" in text
    assert not (run / "last.pt").exists() and not (run / "best.safetensors").exists()  # rank 0 wrote no result
