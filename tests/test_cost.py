"""The paper's compression and speed-up ratios, recomputed from the model (2DQuant Table 1/§6)."""

import pytest

from pipeline.cost import compression_ratio, flop_speedup, quantized_weight_count
from srcore.model import build_model


def test_x4_ratios_match_the_paper():
    model = build_model("light", 4)
    assert quantized_weight_count(model) == 691_200
    assert [round(compression_ratio(model, b), 2) for b in (4, 3, 2)] == [3.07, 3.31, 3.60]
    assert [round(flop_speedup(model, b), 2) for b in (4, 3, 2)] == [3.99, 4.47, 5.08]
    assert sum(model.flops(128, 128).values()) == pytest.approx(16.746e9, rel=1e-4)


def test_x2_compression_differs_as_documented():
    assert [round(compression_ratio(build_model("light", 2), b), 2) for b in (4, 3, 2)] == [3.22, 3.49, 3.82]


def test_speedup_does_not_depend_on_size():
    model = build_model("light", 4)
    assert flop_speedup(model, 4, (64, 64)) == pytest.approx(flop_speedup(model, 4, (128, 128)))
