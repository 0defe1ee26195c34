"""The post-softmax lower bound: pinned at exactly 0 by default, so masked attention stays masked.

A shifted Swin block adds -100 to the logits of keys from other image regions; their probabilities
are about exp(-100). A positive lower bound l of the post-softmax quantizer clips them up to l,
so every query gives those keys weight l (issue 21: l = 0.047 in a committed W3 file).
"""

from __future__ import annotations

import pytest
import torch

from calibration.config import DobiConfig, MinMaxConfig, PercentileConfig, QuantConfig
from calibration.dobi import dobi_scan
from calibration.dqc import DqcConfig, distill_bounds_
from calibration.observe import calibrate_
from calibration.primitives import fake_quantize
from calibration.qmodel import quantize_, quantizers
from srcore.model import build_model

SHIFTED = "layers.0.residual_group.blocks.1.attn.bmm2_attn"  # odd blocks are shifted
TILE = 16  # two 8x8 windows per side: the shifted windows mix regions, so some keys are masked


def _quantized(bits=3, zero_softmax_lower=True):
    torch.manual_seed(0)
    model = build_model("tiny", 2).eval()
    quantize_(model, QuantConfig(bits, bits, zero_softmax_lower=zero_softmax_lower))
    return model


def _softmax_input(model, name=SHIFTED):
    """The probabilities the quantizer ``name`` receives in one forward (calibrated model)."""
    seen = []
    handle = quantizers(model)[name].register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    try:
        with torch.no_grad():
            model(torch.rand(2, 3, TILE, TILE, generator=torch.Generator().manual_seed(5)))
    finally:
        handle.remove()
    return seen[0]


def test_a_positive_lower_bound_leaks_and_the_default_does_not():
    model = _quantized()
    calibrate_(model, "dobi", torch.rand(4, 3, TILE, TILE))
    quantizer = quantizers(model)[SHIFTED]
    assert quantizer.lower.item() == 0.0  # exactly, not the tensor's tiny minimum
    probs, out = _softmax_input(model)
    masked = probs < 1e-20  # exp(-100)-sized: keys of another region
    assert masked.sum() > 100 and (probs >= 1e-20).any()
    assert torch.all(out[masked] == 0)  # the default: masked probabilities are exactly 0
    leaked = fake_quantize(probs, torch.tensor(0.05), quantizer.upper.detach(), quantizer.bits)
    assert torch.allclose(leaked[masked], torch.tensor(0.05))  # l = 0.05: every masked key gets 0.05
    masked_share = (leaked * masked).sum(-1) / leaked.sum(-1)
    assert masked_share.max() > 0.5  # some queries then give other regions most of their attention


@pytest.mark.parametrize("init", [MinMaxConfig(), PercentileConfig(percentile=1.0), DobiConfig(),
                                  DobiConfig(variant="code", all_two_sided=True)])
def test_every_initialiser_pins_the_softmax_lower_bound(init):
    model = _quantized(bits=2)
    calibrate_(model, init, torch.rand(4, 3, TILE, TILE))
    table = quantizers(model)
    softmax = [q for n, q in table.items() if n.endswith("bmm2_attn")]
    assert len(softmax) == 4 and all(q.lower.item() == 0.0 and q.fixed_lower == 0.0 for q in softmax)
    gelu = [q for n, q in table.items() if n.endswith("fc2.act")]
    assert all(q.lower.item() < 0 and q.fixed_lower is None for q in gelu)  # GELU dips to -0.17: kept negative


def test_the_released_code_behaviour_is_behind_the_flag():
    model = _quantized(bits=2, zero_softmax_lower=False)
    calibrate_(model, DobiConfig(variant="code", all_two_sided=True), torch.rand(4, 3, TILE, TILE))
    lowers = [q.lower.item() for n, q in quantizers(model).items() if n.endswith("bmm2_attn")]
    assert min(lowers) > 0  # the two-sided search lifts l above 0: the leak the default avoids
    assert all(q.fixed_lower is None for q in quantizers(model).values())


def test_dqc_trains_the_gelu_lower_bound_but_not_the_softmax_one():
    model = _quantized()
    calibrate_(model, "dobi", torch.rand(4, 3, TILE, TILE))
    before = {n: (q.lower.item(), q.upper.item()) for n, q in quantizers(model).items()}
    config = DqcConfig(iterations=6, batch_size=2, lr_patch=TILE, schedule="constant", loss_scaling="paper")
    distill_bounds_(model, lambda n: torch.rand(n, 3, TILE, TILE), config, progress=False)
    after = {n: (q.lower.item(), q.upper.item()) for n, q in quantizers(model).items()}
    for name in (n for n in after if n.endswith("bmm2_attn")):
        assert after[name][0] == 0.0 and after[name][1] != before[name][1]
    assert any(after[n][0] != before[n][0] for n in after if n.endswith("fc2.act"))
    probs, out = _softmax_input(model)
    assert torch.all(out[probs < 1e-20] == 0)


def test_fixed_lower_dobi_matches_a_brute_force_search():
    x = torch.distributions.Exponential(30.0).sample((50_000,)).clamp(max=1.0) + 1e-3  # min > 0, like softmax
    for exact in (True, False):  # sorted values and the histogram path
        scan = dobi_scan(x, 3, one_sided=False, lower=0.0, max_exact_elements=10**6 if exact else 0)
        assert scan.lower == 0.0 and torch.all(scan.lowers == 0)
        uppers = scan.uppers.float()
        mse = torch.stack([(fake_quantize(x, torch.tensor(0.0), u, 3) - x).pow(2).mean() for u in uppers])
        best = int(torch.argmin(mse))
        assert abs(int(scan.index) - best) <= (0 if exact else 1)
        assert float(mse[scan.index]) == pytest.approx(float(mse[best]), rel=1e-2)
        torch.testing.assert_close(scan.mse.float(), mse, rtol=2e-2 if not exact else 1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="below the tensor's maximum"):
        dobi_scan(x, 3, one_sided=True, lower=2.0)

