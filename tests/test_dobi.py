"""DOBI against an independent float64 brute force over the same candidate set, and histogram vs exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import calibration.dobi as dobi
from calibration.config import DobiConfig, DobiVariant
from calibration.dobi import dobi_candidates, dobi_init_, dobi_scan, dobi_search
from calibration.quantizer import Distribution, Quantizer, Role

K = 100

pytestmark = pytest.mark.usefixtures("one_thread")



def _sample(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=gen, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    if kind == "gaussian":
        x = torch.randn(n, generator=gen, dtype=torch.float64) * 0.7 + 0.2
    elif kind == "laplace":
        x = -torch.sign(u - 0.5) * torch.log1p(-2 * (u - 0.5).abs()) * 0.5 - 0.1
    else:  # exponential, like post-GELU / post-softmax activations
        x = -torch.log1p(-u) * 0.3
    return x.float()


def _spec_candidates(lo: float, hi: float, one_sided: bool, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """2dquant.md §2, written out independently of calibration.dobi."""
    r = hi - lo
    if variant == "paper":
        i = np.arange(K + 1) if one_sided else np.arange(K)  # two-sided i = K has l = u: dropped
        step_u = r / (2 * K)
    else:
        i = np.arange(K)
        step_u = r / K if one_sided else r / (2 * K)
    uppers = hi - i * step_u
    lowers = np.full_like(uppers, lo) if one_sided else lo + i * (r / (2 * K))
    return lowers, uppers


def _brute_mse(x: np.ndarray, lowers: np.ndarray, uppers: np.ndarray, bits: int) -> np.ndarray:
    m = 2**bits - 1
    out = []
    for lo, hi in zip(lowers, uppers):
        s = (hi - lo) / m
        q = np.round((np.clip(x, lo, hi) - lo) / s) * s + lo
        out.append(np.mean((x - q) ** 2))
    return np.array(out)


def _pick(mse: np.ndarray, variant: str) -> int:
    return len(mse) - 1 - int(np.argmin(mse[::-1])) if variant == "paper" else int(np.argmin(mse))


@pytest.mark.parametrize("variant", ["paper", "code"])
@pytest.mark.parametrize("one_sided", [False, True])
@pytest.mark.parametrize("kind", ["gaussian", "laplace", "exponential"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_exact_search_recovers_brute_force_optimum(kind, bits, one_sided, variant):
    x = _sample(kind, 10_000, seed=bits)
    x64 = x.double().numpy()
    lowers, uppers = _spec_candidates(float(x.min()), float(x.max()), one_sided, variant)
    scan = dobi_scan(x, bits, one_sided, variant=variant)
    assert scan.exact
    np.testing.assert_allclose(scan.lowers.numpy(), lowers, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scan.uppers.numpy(), uppers, rtol=0, atol=1e-12)
    brute = _brute_mse(x64, lowers, uppers, bits)
    np.testing.assert_allclose(scan.mse.numpy(), brute, rtol=1e-7)
    assert scan.index == _pick(brute, variant)
    assert dobi_search(x, bits, one_sided, variant=variant) == (lowers[scan.index], uppers[scan.index])


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_bell_search_shrinks_both_bounds(kind):
    x = _sample(kind, 100_000)
    lo, hi = dobi_search(x, 4, one_sided=False)
    assert float(x.min()) < lo < hi < float(x.max())


def test_one_sided_keeps_lower_at_min():
    x = _sample("exponential", 100_000)
    for variant in ("paper", "code"):
        lo, hi = dobi_search(x, 3, one_sided=True, variant=variant)
        assert lo == float(x.min()) and hi < float(x.max())


@pytest.mark.parametrize(
    "kind,bits",
    [("gaussian", 2), ("gaussian", 4), ("gaussian", 8), ("laplace", 4), ("exponential", 3), ("exponential", 8)],
)
def test_histogram_agrees_with_exact_on_1m_elements(kind, bits):
    x = _sample(kind, 1_000_000, seed=10 + bits)
    one_sided = kind == "exponential"
    exact = dobi_scan(x, bits, one_sided)
    hist = dobi_scan(x, bits, one_sided, max_exact_elements=0)
    assert exact.exact and not hist.exact
    assert abs(hist.index - exact.index) <= 1
    best = float(exact.mse[exact.index])
    assert abs(float(hist.mse[hist.index]) - best) <= 0.01 * best
    assert float(exact.mse[hist.index]) <= 1.01 * best  # the histogram's choice is near-optimal in truth


def test_histogram_counts_are_exact_beyond_float32_range(monkeypatch):
    # A float32 histc bin saturates at 2^24: the near-zero bin of a post-softmax map exceeds that.
    x = torch.zeros(2**24 + 5)
    x[-3:] = 1.0
    counts = dobi.histogram(x, 16, 0.0, 1.0)
    assert counts.dtype == torch.float64 and counts[0] == 2**24 + 2 and counts[-1] == 3
    monkeypatch.setattr(dobi, "_HISTC_CHUNK", 1000)
    y = torch.rand(10_000)
    expected = torch.bincount((y * 64).long().clamp(max=63), minlength=64).double()
    assert torch.equal(dobi.histogram(y, 64, 0.0, 1.0), expected)


@pytest.mark.parametrize("variant,expected", [("paper", "last"), ("code", "first")])
def test_tie_rule(monkeypatch, variant, expected):
    def all_equal(values, lowers, uppers, bits, weights=None):
        return torch.zeros(len(lowers), dtype=torch.float64)

    monkeypatch.setattr(dobi, "candidate_mse", all_equal)
    scan = dobi_scan(torch.randn(1000), 4, False, variant=variant)
    assert scan.index == (len(scan.mse) - 1 if expected == "last" else 0)


def test_constant_tensor_gives_a_valid_quantizer():
    assert dobi_search(torch.full((10,), 0.5), 4, False) == (0.5, 0.5)
    q = Quantizer("c", 4, Role.ACTIVATION, Distribution.BELL)
    dobi_init_(q, torch.full((10,), 0.5))
    assert q.lower.item() < 0.5 < q.upper.item()
    assert torch.allclose(q(torch.full((3,), 0.5)), torch.full((3,), 0.5))


def test_init_follows_distribution_and_all_two_sided_switch():
    x = _sample("exponential", 20_000)
    expo = Quantizer("a", 2, Role.ACTIVATION, Distribution.EXPONENTIAL)
    dobi_init_(expo, x, DobiConfig())
    assert expo.lower.item() == float(x.min())
    dobi_init_(expo, x, DobiConfig(all_two_sided=True, variant="code"))
    assert expo.lower.item() > float(x.min())  # the released code's two-sided search lifts l above 0
    bell = Quantizer("b", 2, Role.ACTIVATION, Distribution.BELL)
    dobi_init_(bell, x)
    assert (bell.lower.item(), bell.upper.item()) == pytest.approx(dobi_search(x, 2, False), rel=1e-6)


def test_candidates_and_config_validation():
    lowers, uppers = dobi_candidates(0.0, 2.0, one_sided=False, variant=DobiVariant.CODE, num_candidates=4)
    assert lowers.tolist() == [0.0, 0.25, 0.5, 0.75] and uppers.tolist() == [2.0, 1.75, 1.5, 1.25]
    with pytest.raises(ValueError, match="variant"):
        DobiConfig(variant="fast")
    with pytest.raises(ValueError, match="num_candidates"):
        DobiConfig(num_candidates=0)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 8\)"):
        dobi_search(torch.randn(10), 5, False)
    with pytest.raises(ValueError, match="NaN"):
        dobi_search(torch.tensor([0.0, float("nan")]), 4, False)
    assert DobiConfig.from_dict(DobiConfig(variant="code").to_dict()) == DobiConfig(variant=DobiVariant.CODE)
