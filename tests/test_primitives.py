"""Fake-quantization primitives against an independent float64 reference and the paper's Eq. 2 gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibration.primitives import dequantize, fake_quantize, grid, quantize

BITS = [2, 3, 4, 8]
# (lower, upper): straddling 0, all positive (l > 0), all negative (u < 0), narrow.
BOUNDS = [(-1.0, 2.0), (0.3, 1.7), (-2.5, -0.4), (-0.05, 0.02)]

pytestmark = pytest.mark.usefixtures("one_thread")



def _reference(x: np.ndarray, lo: float, hi: float, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes and values of paper Eq. 1 in float64 (numpy rounds half to even, like torch)."""
    s = (hi - lo) / (2**bits - 1)
    codes = np.round((np.clip(x, lo, hi) - lo) / s)
    return codes, codes * s + lo


def _data(lo: float, hi: float, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """Values covering [l, u] and beyond on both sides."""
    gen = torch.Generator().manual_seed(seed)
    span = hi - lo
    return (torch.rand(n, generator=gen, dtype=torch.float64) * 1.6 - 0.3) * span + lo


def test_grid_worked_example():
    assert torch.equal(grid(torch.tensor(-1.0), torch.tensor(2.0), 2), torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    g = grid(torch.tensor(0.1), torch.tensor(0.4), 2)
    torch.testing.assert_close(g, torch.tensor([0.1, 0.2, 0.3, 0.4]))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("lo,hi", BOUNDS)
def test_forward_matches_float64_reference(bits, lo, hi):
    x64 = _data(lo, hi)
    x = x64.float()
    l, u = torch.tensor(lo), torch.tensor(hi)
    codes_ref, values_ref = _reference(x.double().numpy(), float(l), float(u), bits)
    # Away from rounding ties (float32 vs float64 may disagree within 1e-4 of a half step) codes are equal.
    s = (float(u) - float(l)) / (2**bits - 1)
    t = (np.clip(x.double().numpy(), float(l), float(u)) - float(l)) / s
    clear = np.abs(t - np.floor(t) - 0.5) > 1e-4
    codes = quantize(x, l, u, bits)
    assert codes.dtype == torch.uint8
    assert int(codes.max()) <= 2**bits - 1
    np.testing.assert_array_equal(codes.numpy()[clear], codes_ref[clear])
    out = fake_quantize(x, l, u, bits)
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_allclose(out.numpy()[clear], values_ref[clear], rtol=0, atol=1e-6 * max(abs(lo), abs(hi)))
    # Every output is on the grid, and fake_quantize == dequantize(quantize(.)).
    on_grid = (out[:, None] - grid(l, u, bits)[None, :]).abs().min(dim=1).values
    assert float(on_grid.max()) <= 1e-6 * max(abs(lo), abs(hi))
    torch.testing.assert_close(out, dequantize(codes, l, u, bits), rtol=0, atol=1e-6 * max(abs(lo), abs(hi)))


def test_bounds_may_be_shape_1_and_bits_are_checked():
    x = torch.randn(100)
    a = fake_quantize(x, torch.tensor(-1.0), torch.tensor(1.0), 3)
    b = fake_quantize(x, torch.tensor([-1.0]), torch.tensor([1.0]), 3)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 8\)"):
        fake_quantize(x, torch.tensor(-1.0), torch.tensor(1.0), 5)


def _eq2(x: np.ndarray, g: np.ndarray, lo: float, hi: float, bits: int) -> tuple[np.ndarray, float, float]:
    """Paper Eq. 2 per element, summed with upstream gradient ``g`` (code convention: equality goes to the bound)."""
    m = 2**bits - 1
    vc = np.clip(x, lo, hi)
    vr = np.round((vc - lo) / ((hi - lo) / m))
    dvc_dl = (x <= lo).astype(np.float64)
    dvc_du = (x >= hi).astype(np.float64)
    dx = ((x >= lo) & (x <= hi)).astype(np.float64)
    dl = dvc_dl - vr / m + (vc - lo) / (hi - lo)
    du = dvc_du + vr / m - (vc - lo) / (hi - lo)
    return g * dx, float((g * dl).sum()), float((g * du).sum())


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("lo,hi", BOUNDS)
def test_gradients_match_paper_eq2(bits, lo, hi):
    x = _data(lo, hi, seed=1).requires_grad_()  # float64 so the comparison is tight
    l = torch.tensor(lo, dtype=torch.float64, requires_grad=True)
    u = torch.tensor(hi, dtype=torch.float64, requires_grad=True)
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fake_quantize(x, l, u, bits).backward(g)
    dx, dl, du = _eq2(x.detach().numpy(), g.numpy(), lo, hi, bits)
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(float(l.grad), dl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(u.grad), du, rtol=1e-5, atol=1e-5)


def test_gradients_float32_and_shape_1_bounds():
    lo, hi, bits = -0.7, 1.3, 4
    x = _data(lo, hi, seed=3).float().requires_grad_()
    l = torch.tensor([lo], requires_grad=True)
    u = torch.tensor([hi], requires_grad=True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    fake_quantize(x, l, u, bits).backward(g)
    assert l.grad.shape == (1,) and u.grad.shape == (1,)
    _, dl, du = _eq2(x.detach().double().numpy(), g.double().numpy(), l.item(), u.item(), bits)
    np.testing.assert_allclose(float(l.grad), dl, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(float(u.grad), du, rtol=1e-5, atol=1e-4)


def test_equality_convention_sends_gradient_to_x_and_bound():
    l = torch.tensor(0.0, requires_grad=True)
    u = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor([0.0, 0.5, 1.0], requires_grad=True)
    fake_quantize(x, l, u, 2).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    # x = 0.5 sits on t = 1.5, rounded to 2: e = (2 - 1.5) / 3 pushes lower down and upper up.
    assert float(l.grad) == pytest.approx(1.0 - 0.5 / 3) and float(u.grad) == pytest.approx(1.0 + 0.5 / 3)
