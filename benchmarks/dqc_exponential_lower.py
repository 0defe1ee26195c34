"""A/B: DQC with and without training the lower bound of exponential quantizers (post-softmax, fc2 input).

    python -m benchmarks.dqc_exponential_lower

Starts both runs from the committed W4A4 DOBI bounds of the CPU draft model (the shipped model when this
ran; extract it with `git show a6aa46e:pipeline/model_zoo/swinir-light-x4-sr2bit.safetensors > draft-x4.safetensors`), runs 30 DQC steps of the
`cpu` preset with the same crops, and prints Set5/Set14 PSNR and how much of each post-softmax tensor
lies inside its bounds (on the 32 DOBI calibration crops). Committed result: reports/dqc_exponential_lower.md.
"""

import dataclasses

from calibration.bounds import apply_bounds_, load_bounds
from calibration.dqc import DQC_PRESETS, distill_bounds_
from calibration.qmodel import quantizers
from pipeline.evaluate import evaluate, model_upscaler
from pipeline.plots import bounds_coverage
from srcore.data import CropSampler
from srcore.weights import load_model

calib = ["../shared/data/calib/DF2K_LR_bicubic/X4"]
sets = ["../shared/data/benchmark/Set5", "../shared/data/benchmark/Set14"]
DRAFT = "draft-x4.safetensors"  # the weights these bounds were made for (see the docstring)
dobi = load_bounds("reports/bounds/cpu-draft/x4-w4a4-dobi.safetensors")
batch = CropSampler(lr_folders=calib, scale=4, lr_size=64, seed=0).sample_lr(32)
for train_lower in (True, False):
    m, info = load_model(DRAFT, 4)
    apply_bounds_(m, dobi)
    s = CropSampler(lr_folders=calib, scale=4, lr_size=64, seed=1)
    cfg = dataclasses.replace(DQC_PRESETS["cpu"], iterations=30, train_exponential_lower=train_lower)
    distill_bounds_(m, s.sample_lr, cfg, progress=False)
    qs = quantizers(m)
    table = {n: (q.lower.item(), q.upper.item()) for n, q in qs.items()}
    cov = bounds_coverage(m, batch, {"x": table})["x"]
    attn = [cov[n] for n in qs if n.endswith("bmm2_attn")]
    res = evaluate(model_upscaler(m), sets, 4, progress=False)
    print(f"train_exponential_lower={train_lower}: " + ", ".join(f"{r.dataset} {r.psnr:.4f}" for r in res)
          + f"; post-softmax coverage min {100*min(attn):.1f}% mean {100*sum(attn)/len(attn):.1f}%", flush=True)
