"""The bounds file: the one hand-off from calibration to every deployment target.

A single ``.safetensors`` file (2DQuant, https://arxiv.org/abs/2406.06649, calibrates only these
numbers, so they are all a target needs besides the FP weights):

- tensors ``<quantizer name>.lower`` and ``<quantizer name>.upper``: float32 scalars (0-d);
- metadata (string -> string): ``format`` = ``"sr2bit-bounds"``, ``format_version`` = ``"1"`` and
  ``header``, a JSON object with ``format``, ``format_version``, ``architecture`` (the
  ``SwinIRConfig`` dict), ``scale``, ``weights_sha256`` (:func:`srcore.checkpoint.weights_sha256`
  of the FP model), ``weights_name``, ``quant_config`` (``QuantConfig.to_dict()``), ``quantizers``
  (name -> ``{bits, role, distribution}``, in model order), ``method``, ``settings`` (the method's
  config dict), ``seed``, ``created_at`` (UTC ISO 8601) and ``tool_versions``.

Every read is validated (:class:`BoundsError` says what is wrong): a target never runs with a file
made for other weights, another bit width or a different set of quantizers.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from calibration.config import QuantConfig
from calibration.qmodel import (
    is_quantized,
    quant_config,
    quantization_disabled,
    quantize_,
    quantizers,
)
from calibration.quantizer import Distribution, Role
from srcore.checkpoint import weights_sha256

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Bounds",
    "BoundsError",
    "QuantizerBounds",
    "apply_bounds_",
    "bounds_from_model",
    "load_bounds",
    "save_bounds",
]

FORMAT = "sr2bit-bounds"
FORMAT_VERSION = 1
_REQUIRED_HEADER = (
    "architecture",
    "scale",
    "weights_sha256",
    "weights_name",
    "quant_config",
    "quantizers",
    "method",
    "settings",
    "seed",
    "created_at",
    "tool_versions",
)


class BoundsError(ValueError):
    """A bounds file that is unreadable, malformed, or does not fit the model it is applied to."""


class QuantizerBounds(NamedTuple):
    """One quantizer's entry: float32 ``lower < upper``, bit width, role and distribution class."""

    lower: float
    upper: float
    bits: int
    role: Role
    distribution: Distribution


@dataclass
class Bounds:
    """The content of a bounds file (see the module docstring for the fields)."""

    quantizers: dict[str, QuantizerBounds]
    architecture: dict[str, Any]
    scale: int
    weights_sha256: str
    weights_name: str
    quant_config: QuantConfig
    method: str
    settings: dict[str, Any]
    seed: int | None = None
    created_at: str = ""
    tool_versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    source: str | None = field(default=None, compare=False)  # the file it was loaded from (not stored in it)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this bounds file atomically (:func:`save_bounds`)."""
        return save_bounds(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bounds:
        """Read and validate a bounds file (:func:`load_bounds`)."""
        return load_bounds(path)

    def header(self) -> dict[str, Any]:
        """The JSON header stored in the file's metadata."""
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "architecture": self.architecture,
            "scale": self.scale,
            "weights_sha256": self.weights_sha256,
            "weights_name": self.weights_name,
            "quant_config": self.quant_config.to_dict(),
            "quantizers": {
                name: {"bits": q.bits, "role": q.role.value, "distribution": q.distribution.value}
                for name, q in self.quantizers.items()
            },
            "method": self.method,
            "settings": self.settings,
            "seed": self.seed,
            "created_at": self.created_at,
            "tool_versions": self.tool_versions,
        }


def bounds_from_model(
    model: nn.Module, *, method: str, settings: dict[str, Any], seed: int | None = None, weights_name: str = ""
) -> Bounds:
    """Collect the calibrated bounds of a quantized SwinIR with its identity and provenance.

    Args:
        model: a quantized, calibrated :class:`srcore.model.SwinIR`.
        method: how the bounds were made, e.g. ``"dobi"`` or ``"dobi+dqc"``.
        settings: that method's JSON-serialisable settings (e.g. ``DobiConfig().to_dict()``).
        seed: the random seed of the run, if any.
        weights_name: a human-readable name of the FP weights (e.g. the checkpoint file name).

    Raises:
        BoundsError: the model is not quantized, or a bound is NaN/inf or ``lower >= upper``.
    """
    if not is_quantized(model):
        raise BoundsError("model is not quantized (call quantize_ and calibrate_ first)")
    with quantization_disabled(model):
        sha = weights_sha256(model)  # the FP model's hash: original modules, no quantizer Parameters
    table = {
        name: QuantizerBounds(q.lower.item(), q.upper.item(), q.bits, q.role, q.distribution)
        for name, q in quantizers(model).items()
    }
    _check_values(table)
    return Bounds(
        quantizers=table,
        architecture=_as_json(model.config.to_dict()),
        scale=int(model.scale),
        weights_sha256=sha,
        weights_name=weights_name,
        quant_config=quant_config(model),
        method=method,
        settings=_as_json(settings),
        seed=seed,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tool_versions=_tool_versions(),
    )


def save_bounds(bounds: Bounds, path: str | os.PathLike) -> Path:
    """Write ``bounds`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    from safetensors.torch import save_file

    _check_values(bounds.quantizers)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, q in bounds.quantizers.items():
        tensors[f"{name}.lower"] = torch.tensor(q.lower, dtype=torch.float32)
        tensors[f"{name}.upper"] = torch.tensor(q.upper, dtype=torch.float32)
    meta = {"format": FORMAT, "format_version": str(bounds.format_version), "header": json.dumps(bounds.header())}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_bounds(path: str | os.PathLike) -> Bounds:
    """Read and validate a bounds file.

    Raises:
        BoundsError: missing, corrupt or not a bounds file; unknown ``format_version``; malformed
            header; tensor names that differ from the header's quantizers; NaN/inf bounds or
            ``lower >= upper``.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BoundsError(f"bounds file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types (and OSError) on bad files
        raise BoundsError(f"{path} is not a readable safetensors file (corrupt or truncated?): {err}") from err
    if meta.get("format") != FORMAT:
        raise BoundsError(
            f"{path} is not an sr2bit bounds file (metadata format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise BoundsError(
            f"{path} has bounds format version {meta.get('format_version')!r}; this tool reads version {FORMAT_VERSION}"
        )
    try:
        header = json.loads(meta["header"])
        bounds = _bounds_from_header(header, tensors)
    except BoundsError as err:
        raise BoundsError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise BoundsError(f"{path} has a malformed header: {err!r}") from err
    bounds.source = str(path)
    return bounds


def _bounds_from_header(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Bounds:
    missing = [key for key in _REQUIRED_HEADER if key not in header]
    if missing:
        raise BoundsError(f"header lacks {missing}")
    names = list(header["quantizers"])
    expected = {f"{n}.{end}" for n in names for end in ("lower", "upper")}
    _check_names(expected, set(tensors), "header", "file's tensors")
    table = {}
    for name, info in header["quantizers"].items():
        lo, hi = tensors[f"{name}.lower"], tensors[f"{name}.upper"]
        if lo.numel() != 1 or hi.numel() != 1:
            raise BoundsError(f"bounds of {name} are not scalars (shapes {tuple(lo.shape)}, {tuple(hi.shape)})")
        role, distribution = Role(info["role"]), Distribution(info["distribution"])
        table[name] = QuantizerBounds(float(lo), float(hi), int(info["bits"]), role, distribution)
    _check_values(table)
    return Bounds(
        quantizers=table,
        architecture=header["architecture"],
        scale=int(header["scale"]),
        weights_sha256=header["weights_sha256"],
        weights_name=header["weights_name"],
        quant_config=QuantConfig.from_dict(header["quant_config"]),
        method=header["method"],
        settings=header["settings"],
        seed=header["seed"],
        created_at=header["created_at"],
        tool_versions=header["tool_versions"],
        format_version=int(header.get("format_version", FORMAT_VERSION)),
    )


def apply_bounds_(model: nn.Module, bounds: Bounds, expected_weights_sha256: str | None = None) -> nn.Module:
    """Set every quantizer of ``model`` from ``bounds``, after checking that they belong together.

    An unquantized model is first quantized with ``bounds.quant_config``.

    Args:
        model: a :class:`srcore.model.SwinIR`, quantized or not.
        bounds: from :func:`load_bounds` or :func:`bounds_from_model`.
        expected_weights_sha256: the hash of ``model``'s FP weights if the caller already knows
            it; None computes it from the model.

    Raises:
        BoundsError: weights hash or architecture mismatch (naming the model the file was made
            for), different quantizer names (listed), a bits/role/distribution mismatch, or invalid
            bound values.
    """
    _check_values(bounds.quantizers)
    if expected_weights_sha256 is None:
        if is_quantized(model):
            with quantization_disabled(model):
                expected_weights_sha256 = weights_sha256(model)
        else:
            expected_weights_sha256 = weights_sha256(model)
    if expected_weights_sha256 != bounds.weights_sha256:
        raise BoundsError(
            f"bounds were made for weights {bounds.weights_name or '(unnamed)'} "
            f"(sha256 {bounds.weights_sha256[:16]}..., x{bounds.scale} {bounds.architecture}), "
            f"but the model's weights have sha256 {expected_weights_sha256[:16]}..."
        )
    config = getattr(model, "config", None)
    if config is not None and dataclasses.is_dataclass(config) and config.to_dict() != _normalize(bounds.architecture):
        raise BoundsError(f"bounds were made for architecture {bounds.architecture}, the model is {config.to_dict()}")
    if not is_quantized(model):
        quantize_(model, bounds.quant_config)
    table = quantizers(model)
    _check_names(set(bounds.quantizers), set(table), "bounds file", "model's quantizers")
    for name, quantizer in table.items():
        entry = bounds.quantizers[name]
        mine = (quantizer.bits, quantizer.role, quantizer.distribution)
        if mine != (entry.bits, entry.role, entry.distribution):
            raise BoundsError(
                f"quantizer {name}: bounds file has bits={entry.bits}, {entry.role.name}, {entry.distribution.name}; "
                f"the model has bits={mine[0]}, {mine[1].name}, {mine[2].name}"
            )
    for name, quantizer in table.items():
        quantizer.set_bounds_(bounds.quantizers[name].lower, bounds.quantizers[name].upper)
    return model


def _check_values(table: dict[str, QuantizerBounds]) -> None:
    for name, q in table.items():
        if not (math.isfinite(q.lower) and math.isfinite(q.upper)):
            raise BoundsError(f"quantizer {name} has non-finite bounds [{q.lower}, {q.upper}]")
        if not q.lower < q.upper:
            raise BoundsError(f"quantizer {name} has lower {q.lower} >= upper {q.upper}")


def _check_names(expected: set[str], actual: set[str], expected_where: str, actual_where: str, shown: int = 5) -> None:
    """Raise if the two name sets differ, listing a few names on each side."""
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} names of the {expected_where} are missing from the {actual_where} (e.g. {missing[:shown]})"
            )
        if extra:
            parts.append(
                f"{len(extra)} names of the {actual_where} are not in the {expected_where} (e.g. {extra[:shown]})"
            )
        raise BoundsError("; ".join(parts))


def _normalize(architecture: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; compare architectures in ``to_dict`` form."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in architecture.items()}


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so saved and loaded Bounds compare equal.

    Raises:
        BoundsError: ``value`` cannot be stored as JSON.
    """
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise BoundsError(f"cannot store {value!r} in the bounds header: {err}") from err


def _tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("sr2bit", "safetensors", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
