"""DOBI: distribution-oriented bound initialisation (2DQuant §3.2, Alg. 1, https://arxiv.org/abs/2406.06649).

For one tensor ``x`` with ``min``/``max`` over all its elements, DOBI tries K narrowed bound pairs
and keeps the one minimising ``||x - fake_quantize(x, l, u, bits)||_2`` (paper Eq. 3).

Candidate grids (``r = max - min``, K = ``num_candidates``, i = 0, 1, ...):

- ``paper`` (Alg. 1, step ``d = r / 2K``): two-sided ``l = min + i d, u = max - i d`` for
  i = 0..K-1; one-sided ``l = min, u = max - i d`` for i = 0..K (down to the midpoint).
- ``code`` (released ``DOBI``, i = 0..K-1): two-sided as the paper; one-sided
  ``l = min, u = max - i r / K`` (down to ``min + r / K``).

Ties: ``paper`` keeps the later candidate (Alg. 1 compares with <=), ``code`` the first (<). The
paper's two-sided candidate i = K has ``l = u`` (zero step, not a valid quantizer) and is left out.
Which quantizers are one-sided is the caller's choice (:func:`dobi_init_` follows the paper:
EXPONENTIAL ones, unless ``DobiConfig.all_two_sided`` as in the released code).

**How the K errors are computed.** Rounding maps every value to its nearest grid point, so for a
candidate the sorted values split into ``2^b`` runs (cut at the midpoints ``l + (k + 1/2) s``, with
the clipped tails joining the end runs), and a run with count ``n_k``, sum ``S1_k`` and sum of
squares ``S2_k`` quantized to ``g_k`` contributes ``S2_k - 2 g_k S1_k + n_k g_k^2``. With prefix
sums (float64, values centred on the midpoint of [min, max]) each candidate costs ``2^b - 1``
binary searches, so all K candidates are evaluated at once in O(K 2^b log n) after one pass over
the data:

- **exact** (``x.numel() <= max_exact_elements``, default 2^22): the runs are over the sorted
  values of ``x``, so the result equals the brute-force error up to float64 rounding (elements
  exactly on a midpoint have the same error either way). Cost: one sort plus float64 prefix
  sums (about 2.3 s for 7.8M elements on one CPU core, against 0.12 s for the histogram).
- **histogram** (larger tensors, e.g. the 50M-element post-softmax map): ``torch.histc`` over
  [min, max] with ``histogram_bins`` (2^16) bins (counted in 2^24-element chunks, see
  :func:`histogram`), every value replaced by its bin centre ``c``:
  ``MSE = sum(count * (c - q(c))^2) / n``. Cost: one ``histc`` pass (~15 ns per element). The
  error per element is at most half a bin, 1/650 of the candidate spacing ``r/2K``, so the
  chosen candidate is the exact one or its neighbour and the MSE agrees to well under 1 %
  (``tests/test_dobi.py`` checks this on 1M-element Gaussian, Laplace and exponential data).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from calibration.config import DobiConfig, DobiVariant
from calibration.minmax import minmax_bounds
from calibration.primitives import check_bits
from calibration.quantizer import Distribution, Quantizer

__all__ = ["DobiScan", "candidate_mse", "dobi_candidates", "dobi_init_", "dobi_scan", "dobi_search", "histogram"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DobiScan:
    """The outcome of one DOBI search.

    Attributes:
        lowers, uppers: (C,) float64 candidate bounds, in search order (i = 0, 1, ...).
        mse: (C,) float64 mean squared quantization error of each candidate.
        index: the chosen candidate.
        exact: True if the errors come from the exact path, False from the histogram.
    """

    lowers: torch.Tensor
    uppers: torch.Tensor
    mse: torch.Tensor
    index: int
    exact: bool

    @property
    def lower(self) -> float:
        return float(self.lowers[self.index])

    @property
    def upper(self) -> float:
        return float(self.uppers[self.index])


def dobi_candidates(
    minimum: float,
    maximum: float,
    one_sided: bool,
    variant: DobiVariant | str = DobiVariant.PAPER,
    num_candidates: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate bound pairs of the module docstring's table, for ``minimum < maximum``.

    Returns:
        (lowers, uppers): (C,) float64 tensors, C = K + 1 (paper, one-sided) or K (otherwise).
    """
    variant = DobiConfig(num_candidates=num_candidates, variant=variant).variant  # validates both
    span = maximum - minimum
    k = num_candidates
    if variant is DobiVariant.PAPER:
        count = k + 1 if one_sided else k  # two-sided i = K collapses to l = u
        delta = span / (2 * k)
    else:
        count = k
        delta = span / k if one_sided else span / (2 * k)
    i = torch.arange(count, dtype=torch.float64)
    uppers = maximum - i * delta
    lowers = torch.full_like(uppers, minimum) if one_sided else minimum + i * delta
    return lowers, uppers


def candidate_mse(
    values: torch.Tensor, lowers: torch.Tensor, uppers: torch.Tensor, bits: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared fake-quantization error of sorted ``values`` for every candidate (run sums, see module).

    Args:
        values: (n,) values sorted ascending (any float dtype; computed in float64).
        lowers, uppers: (C,) candidate bounds with ``lowers < uppers``.
        bits: bit width.
        weights: optional (n,) non-negative multiplicities (histogram counts); default all ones.

    Returns:
        (C,) float64: ``sum(w * (v - q(v))^2) / sum(w)`` per candidate.
    """
    levels = 2 ** check_bits(bits) - 1
    device = values.device
    v = values.to(torch.float64)
    shift = (v[0] + v[-1]) / 2  # centring keeps the prefix sums small relative to the run errors
    v = v - shift
    if weights is None:
        p0 = torch.arange(v.numel() + 1, dtype=torch.float64, device=device)
        wv = v
    else:
        w = weights.to(device=device, dtype=torch.float64)
        p0 = _prefix_sum(w)
        wv = w * v
    p1 = _prefix_sum(wv)
    p2 = _prefix_sum(wv * v)
    lowers, uppers = (t.to(device=device, dtype=torch.float64) for t in (lowers, uppers))
    lo = lowers - shift
    step = (uppers - lowers) / levels  # C
    k = torch.arange(levels + 1, dtype=torch.float64, device=device)
    cuts = lo[:, None] + (k[:-1] + 0.5) * step[:, None]  # C, levels: midpoints between grid values
    edges = torch.searchsorted(v, cuts)  # C, levels: number of values below each midpoint
    n = v.numel()
    edges = torch.cat([edges.new_zeros(len(lo), 1), edges, edges.new_full((len(lo), 1), n)], dim=1)  # C, levels+2
    count, s1, s2 = (p[edges].diff(dim=1) for p in (p0, p1, p2))  # C, levels+1: per grid value
    g = lo[:, None] + k * step[:, None]  # C, levels+1: the grid
    sse = (s2 - 2 * g * s1 + count * g * g).sum(dim=1).clamp_(min=0)
    return (sse / p0[-1]).cpu()


def _prefix_sum(values: torch.Tensor) -> torch.Tensor:
    """(n,) -> (n + 1,) float64 prefix sums starting at 0, summed in two levels.

    A plain sequential ``cumsum`` over 50M values accumulates O(n) rounding errors; summing within
    blocks of ~sqrt(n) and then over block totals keeps it at O(sqrt(n)) (1e-9 relative on the
    run errors of an 8-bit grid instead of 1e-6).
    """
    n = values.numel()
    block = max(1, int(n**0.5))
    rows = -(-n // block)
    padded = values.new_zeros(rows * block, dtype=torch.float64)
    padded[:n] = values
    within = padded.view(rows, block).cumsum(dim=1)  # rows, block
    offsets = torch.cat([padded.new_zeros(1), within[:, -1].cumsum(0)[:-1]])  # rows
    return torch.cat([padded.new_zeros(1), (within + offsets[:, None]).reshape(-1)[:n]])


# torch.histc counts in the input's dtype: a float32 bin stops at 2^24 (16.7M), which the
# near-zero bin of the 50M-element post-softmax map exceeds. Chunks of 2^24 keep every count exact.
_HISTC_CHUNK = 2**24


def histogram(x: torch.Tensor, bins: int, minimum: float, maximum: float) -> torch.Tensor:
    """Exact ``torch.histc`` counts of flat ``x`` over [minimum, maximum], as a (bins,) float64 CPU tensor.

    ``x`` is counted in chunks of 2^24 elements, each summed in float64: a float32 histc bin alone
    saturates at 2^24.
    """
    counts = torch.zeros(bins, dtype=torch.float64, device=x.device)
    for chunk in x.split(_HISTC_CHUNK):
        counts += torch.histc(chunk, bins, minimum, maximum)
    return counts.cpu()


def dobi_scan(
    x: torch.Tensor,
    bits: int,
    one_sided: bool,
    *,
    variant: DobiVariant | str = DobiVariant.PAPER,
    num_candidates: int = 100,
    max_exact_elements: int = 2**22,
    histogram_bins: int = 2**16,
    lower: float | None = None,
) -> DobiScan:
    """Run DOBI on ``x`` and return every candidate's error and the choice (see :func:`dobi_search`).

    ``lower``: if given, every candidate keeps this lower bound and only the upper one moves (the
    one-sided grid over [lower, max]); used to pin the post-softmax lower bound at exactly 0.
    """
    config = DobiConfig(num_candidates, variant, False, max_exact_elements, histogram_bins)  # validates
    check_bits(bits)
    minimum, maximum = minmax_bounds(x)
    data_min = minimum
    if lower is not None:
        if not lower < maximum:
            raise ValueError(f"a fixed lower bound {lower} must lie below the tensor's maximum {maximum}")
        minimum, one_sided = lower, True
    if minimum == maximum:  # constant tensor: nothing to search; Quantizer.set_bounds_ widens it
        one = torch.ones(1, dtype=torch.float64)
        return DobiScan(one * minimum, one * maximum, one * 0.0, 0, True)
    lowers, uppers = dobi_candidates(minimum, maximum, one_sided, config.variant, num_candidates)
    flat = x.detach().reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    exact = flat.numel() <= max_exact_elements
    if exact:
        mse = candidate_mse(torch.sort(flat).values, lowers, uppers, bits)
    else:
        start = min(minimum, data_min)  # the histogram spans the data even below a fixed lower bound
        counts = histogram(flat, histogram_bins, start, maximum)
        width = (maximum - start) / histogram_bins
        centres = start + (torch.arange(histogram_bins, dtype=torch.float64) + 0.5) * width
        mse = candidate_mse(centres, lowers, uppers, bits, weights=counts)
    if config.variant is DobiVariant.PAPER:  # Alg. 1 updates on <=: the last minimum wins
        index = len(mse) - 1 - int(torch.argmin(mse.flip(0)))
    else:  # the code updates on <: the first minimum wins
        index = int(torch.argmin(mse))
    return DobiScan(lowers, uppers, mse, index, exact)


def dobi_search(
    x: torch.Tensor,
    bits: int,
    one_sided: bool,
    *,
    variant: DobiVariant | str = DobiVariant.PAPER,
    num_candidates: int = 100,
    max_exact_elements: int = 2**22,
    histogram_bins: int = 2**16,
) -> tuple[float, float]:
    """DOBI bounds of ``x``: the candidate (module docstring) with the least L2 quantization error.

    Args:
        x: float tensor of any shape (all elements form one per-tensor distribution), finite.
        bits: one of 2, 3, 4, 8.
        one_sided: keep ``lower = min(x)`` and move only ``upper`` (EXPONENTIAL distributions).
        variant: ``"paper"`` or ``"code"`` candidate grid and tie rule.
        num_candidates: K (100 in the paper and the code).
        max_exact_elements: larger tensors are searched on a histogram.
        histogram_bins: bins of that histogram.

    Returns:
        (lower, upper) as Python floats (``lower == upper`` for a constant tensor).
    """
    scan = dobi_scan(
        x,
        bits,
        one_sided,
        variant=variant,
        num_candidates=num_candidates,
        max_exact_elements=max_exact_elements,
        histogram_bins=histogram_bins,
    )
    return scan.lower, scan.upper


def dobi_init_(quantizer: Quantizer, x: torch.Tensor, config: DobiConfig | None = None) -> None:
    """Set ``quantizer``'s bounds by DOBI on ``x``; one-sided for EXPONENTIAL quantizers unless ``all_two_sided``.

    A quantizer with a ``fixed_lower`` keeps it and searches only its upper bound, whatever the config.
    """
    config = config or DobiConfig()
    one_sided = quantizer.distribution is Distribution.EXPONENTIAL and not config.all_two_sided
    start = time.perf_counter()
    scan = dobi_scan(
        x,
        quantizer.bits,
        one_sided,
        variant=config.variant,
        num_candidates=config.num_candidates,
        max_exact_elements=config.max_exact_elements,
        histogram_bins=config.histogram_bins,
        lower=quantizer.fixed_lower,
    )
    quantizer.set_bounds_(scan.lower, scan.upper)
    logger.debug(
        "DOBI %s: %d elements (%s), candidate %d/%d, [%.6g, %.6g], mse %.3g, %.2f s",
        quantizer.name,
        x.numel(),
        "exact" if scan.exact else "histogram",
        scan.index,
        len(scan.mse),
        scan.lower,
        scan.upper,
        float(scan.mse[scan.index]),
        time.perf_counter() - start,
    )
