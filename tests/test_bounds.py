"""The bounds file: round trip, the structure of the file, and every way a bad file is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from calibration.bounds import (
    FORMAT,
    Bounds,
    BoundsError,
    QuantizerBounds,
    apply_bounds_,
    bounds_from_model,
    load_bounds,
    save_bounds,
)
from calibration.config import DobiConfig, QuantConfig
from calibration.observe import calibrate_
from calibration.qmodel import quantize_, quantizers
from srcore.checkpoint import weights_sha256
from srcore.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("tiny", 2).eval()


@pytest.fixture(scope="module")
def calibrated():
    model = quantize_(_tiny(), QuantConfig(weight_bits=3, act_bits=4))
    calibrate_(model, DobiConfig(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    settings = DobiConfig().to_dict()
    bounds = bounds_from_model(model, method="dobi", settings=settings, seed=7, weights_name="tiny_x2.pth")
    return model, bounds


@pytest.fixture
def saved(calibrated, tmp_path):
    return save_bounds(calibrated[1], tmp_path / "bounds.safetensors")


def _write_raw(path, bounds: Bounds, header_edit=None, tensor_edit=None, meta_edit=None):
    """Write a bounds file by hand (bypassing save_bounds' checks) with optional tampering."""
    header = bounds.header()
    tensors = {}
    for name, q in bounds.quantizers.items():
        tensors[f"{name}.lower"] = torch.tensor(q.lower)
        tensors[f"{name}.upper"] = torch.tensor(q.upper)
    if header_edit:
        header_edit(header)
    if tensor_edit:
        tensor_edit(tensors)
    meta = {"format": FORMAT, "format_version": "1", "header": json.dumps(header)}
    if meta_edit:
        meta_edit(meta)
    save_file(tensors, str(path), metadata=meta)
    return path


def test_round_trip(calibrated, saved):
    model, bounds = calibrated
    loaded = load_bounds(saved)
    assert loaded == bounds
    assert list(loaded.quantizers) == list(quantizers(model))
    assert loaded.weights_sha256 == weights_sha256(_tiny()) and loaded.weights_name == "tiny_x2.pth"
    assert loaded.quant_config == QuantConfig(3, 4) and loaded.method == "dobi" and loaded.seed == 7
    assert DobiConfig.from_dict(loaded.settings) == DobiConfig()
    assert loaded.scale == 2 and loaded.architecture["embed_dim"] == 12
    assert {"torch", "safetensors", "sr2bit"} <= set(loaded.tool_versions) and loaded.created_at.endswith("+00:00")
    # Applying to a fresh FP model quantizes it and reproduces the calibrated model exactly.
    fresh = apply_bounds_(_tiny(), loaded)
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_file_layout(calibrated, saved, tmp_path):
    with safe_open(str(saved), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
        one = f.get_tensor(keys[0])
    assert meta["format"] == FORMAT and meta["format_version"] == "1"
    header = json.loads(meta["header"])
    assert header["quantizers"]["layers.0.residual_group.blocks.0.attn.bmm2_attn"] == {
        "bits": 4,
        "role": "activation",
        "distribution": "exponential",
    }
    assert len(keys) == 2 * 64 and one.dtype == torch.float32 and one.shape == ()
    assert [p.name for p in tmp_path.iterdir()] == ["bounds.safetensors"]  # no temp file left behind


def test_missing_or_corrupt_file(tmp_path, saved):
    with pytest.raises(BoundsError, match="does not exist"):
        load_bounds(tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(BoundsError, match="corrupt"):
        load_bounds(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(saved.read_bytes()[:-100])
    with pytest.raises(BoundsError, match="corrupt"):
        load_bounds(truncated)
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(weights))
    with pytest.raises(BoundsError, match="not an sr2bit bounds file"):
        load_bounds(weights)


def test_unknown_format_version(calibrated, tmp_path):
    path = _write_raw(tmp_path / "b.safetensors", calibrated[1], meta_edit=lambda m: m.update(format_version="2"))
    with pytest.raises(BoundsError, match="version '2'.*reads version 1"):
        load_bounds(path)


def test_malformed_header(calibrated, tmp_path):
    path = _write_raw(tmp_path / "b.safetensors", calibrated[1], header_edit=lambda h: h.pop("weights_sha256"))
    with pytest.raises(BoundsError, match="weights_sha256"):
        load_bounds(path)
    path = _write_raw(tmp_path / "c.safetensors", calibrated[1], meta_edit=lambda m: m.update(header="{not json"))
    with pytest.raises(BoundsError, match="malformed"):
        load_bounds(path)


def test_header_and_tensors_disagree(calibrated, tmp_path):
    name = next(iter(calibrated[1].quantizers))
    path = _write_raw(tmp_path / "b.safetensors", calibrated[1], tensor_edit=lambda t: t.pop(f"{name}.upper"))
    with pytest.raises(BoundsError, match=r"missing from the file's tensors.*attn\.q\.act\.upper"):
        load_bounds(path)


@pytest.mark.parametrize(
    "lower,upper,match", [(float("nan"), 1.0, "non-finite"), (0.0, float("inf"), "non-finite"), (1.0, 1.0, ">=")]
)
def test_invalid_bound_values(calibrated, tmp_path, lower, upper, match):
    name = next(iter(calibrated[1].quantizers))

    def edit(tensors):
        tensors[f"{name}.lower"], tensors[f"{name}.upper"] = torch.tensor(lower), torch.tensor(upper)

    with pytest.raises(BoundsError, match=match):
        load_bounds(_write_raw(tmp_path / "b.safetensors", calibrated[1], tensor_edit=edit))
    entry = calibrated[1].quantizers[name]
    bad_entry = QuantizerBounds(lower, upper, entry.bits, entry.role, entry.distribution)
    bad = dataclasses.replace(calibrated[1], quantizers={**calibrated[1].quantizers, name: bad_entry})
    with pytest.raises(BoundsError, match=match):
        save_bounds(bad, tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()


def test_weights_hash_mismatch_names_the_source_model(saved):
    other = _tiny(seed=1)
    with pytest.raises(BoundsError, match=r"made for weights tiny_x2\.pth .*x2"):
        apply_bounds_(other, load_bounds(saved))
    with pytest.raises(BoundsError, match="tiny_x2.pth"):
        apply_bounds_(_tiny(), load_bounds(saved), expected_weights_sha256="0" * 64)


def test_missing_and_extra_quantizers(calibrated):
    bounds = calibrated[1]
    names = list(bounds.quantizers)
    fewer = dataclasses.replace(bounds, quantizers={n: q for n, q in bounds.quantizers.items() if n != names[3]})
    match = r"1 names of the model's quantizers are not in the bounds file.*attn\.k\.weight"
    with pytest.raises(BoundsError, match=match):
        apply_bounds_(_tiny(), fewer)
    extra = dataclasses.replace(bounds, quantizers={**bounds.quantizers, "layers.9.foo": bounds.quantizers[names[0]]})
    match = r"1 names of the bounds file are missing from the model's quantizers.*layers\.9\.foo"
    with pytest.raises(BoundsError, match=match):
        apply_bounds_(_tiny(), extra)
    # A weights-only model has none of the activation quantizers the file holds.
    with pytest.raises(BoundsError, match="missing from the model's quantizers"):
        apply_bounds_(quantize_(_tiny(), QuantConfig(3, None)), bounds)


def test_bits_mismatch(calibrated):
    bounds = calibrated[1]
    with pytest.raises(BoundsError, match=r"bits=3.*the model has bits=2"):
        apply_bounds_(quantize_(_tiny(), QuantConfig(2, 4)), bounds)
    name = next(iter(bounds.quantizers))
    eight = bounds.quantizers[name]._replace(bits=8)
    edited = dataclasses.replace(bounds, quantizers={**bounds.quantizers, name: eight})
    with pytest.raises(BoundsError, match=f"{name}: bounds file has bits=8"):
        apply_bounds_(_tiny(), edited)


def test_bounds_from_unquantized_model_fails():
    with pytest.raises(BoundsError, match="not quantized"):
        bounds_from_model(_tiny(), method="minmax", settings={})
