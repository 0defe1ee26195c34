"""Frozen, validated, serialisable configs of calibration (2DQuant, https://arxiv.org/abs/2406.06649).

- :class:`QuantConfig`: what is quantized and with how many bits (``quantize_``).
- :class:`MinMaxConfig`, :class:`PercentileConfig`, :class:`DobiConfig`: how the bounds are
  initialised (``calibrate_`` dispatches on the config type).

Every config validates itself in ``__post_init__`` (``ValueError`` naming the bad value and the
allowed set) and round-trips through ``to_dict``/``from_dict`` with ``_type`` and ``version`` keys;
unknown keys are rejected. The bounds file embeds these dicts.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
from dataclasses import dataclass
from typing import Any, ClassVar

from calibration.primitives import ALLOWED_BITS

__all__ = [
    "DeployMode",
    "coerce_enum",
    "DobiConfig",
    "DobiVariant",
    "InitConfig",
    "MinMaxConfig",
    "PercentileConfig",
    "QuantConfig",
    "config_from_dict",
]


class DobiVariant(enum.Enum):
    """DOBI candidate grid: the paper's Alg. 1 or the released code (see :mod:`calibration.dobi`)."""

    PAPER = "paper"
    CODE = "code"


class DeployMode(enum.Enum):
    """What the student runs like while it is calibrated (issue 21: calibrate what ships).

    PAPER: 2DQuant's own setting, every activation quantizer fake-quantized at ``act_bits``.
    INT8_TOKEN: ExecuTorch/XNNPACK and TFLite/LiteRT: no activation quantizers; every Linear input
        is quantized to dynamic int8 per token (:func:`calibration.deploy.simulate`).
    FP16: Core ML: no activation quantizers; every Linear input and output rounded to fp16.
    """

    PAPER = "paper"
    INT8_TOKEN = "int8-token"
    FP16 = "fp16"


def _plain(value: Any) -> Any:
    """The JSON form of a field: enums by value, tuples as lists (so a dict equals its JSON round trip)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class _Serializable:
    """``to_dict``/``from_dict`` with ``_type`` and ``version``; enums are stored by value."""

    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"_type": type(self).__name__, "version": self.VERSION}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            data[field.name] = _plain(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        data = dict(data)
        kind, version = data.pop("_type", cls.__name__), data.pop("version", cls.VERSION)
        if kind != cls.__name__:
            raise ValueError(f"expected _type {cls.__name__!r}, got {kind!r}")
        if version != cls.VERSION:
            raise ValueError(f"{cls.__name__} version {version!r} is not supported; allowed {[cls.VERSION]}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; allowed {sorted(known)}")
        return cls(**data)


def coerce_enum(config: Any, field: str, kind: type[enum.Enum]) -> None:
    """Set a frozen config's ``field`` to its ``kind`` member, given the member or its value (as JSON stores it).

    Raises:
        ValueError: naming the field and the allowed values.
    """
    value = getattr(config, field)
    try:
        object.__setattr__(config, field, kind(value))
    except ValueError:
        raise ValueError(f"{field} must be one of {[m.value for m in kind]}, got {value!r}") from None


def _check_bits(field: str, value: object, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value not in ALLOWED_BITS:
        allowed = f"{ALLOWED_BITS}" + (" or None" if allow_none else "")
        raise ValueError(f"{field} must be one of {allowed}, got {value!r}")


@dataclass(frozen=True)
class QuantConfig(_Serializable):
    """Bit widths of the 2DQuant placement (weights and inputs of q/k/v/proj/fc1/fc2, BMM operands).

    Args:
        weight_bits: bits of every weight quantizer (2, 3, 4 or 8).
        act_bits: bits of every activation quantizer, or None for weights only (W4A16: no
            activation quantizer is inserted, the attention operands stay FP). The paper uses
            ``act_bits == weight_bits``; other pairs (e.g. W4A8) are allowed.
        overrides: ``(selector, bits)`` pairs applied in order, the last match winning: a selector
            is a role (``"weight"`` or ``"activation"``) or a shell-style pattern on quantizer
            names (``"layers.0.*"``, ``"*.mlp.fc2.weight"``). Resolved once by
            :meth:`bits_for` when the model is quantized; every quantizer's bits are then written
            into the bounds file. Example: ``QuantConfig(2, 4, overrides=(("*.attn.bmm2_attn", 8),))``.
        deploy: :class:`DeployMode` the student is calibrated in; anything but ``PAPER`` needs
            ``act_bits=None`` (the runtime, not a calibrated quantizer, handles activations).
        zero_softmax_lower: pin the post-softmax quantizers' lower bound at exactly 0 (masked
            attention of shifted windows then stays 0); False calibrates and trains it like any
            bound, as the released code does. Files written before this field read back as False.
    """

    weight_bits: int = 4
    act_bits: int | None = 4
    overrides: tuple[tuple[str, int], ...] = ()
    deploy: DeployMode = DeployMode.PAPER
    zero_softmax_lower: bool = True

    def __post_init__(self):
        _check_bits("weight_bits", self.weight_bits)
        _check_bits("act_bits", self.act_bits, allow_none=True)
        coerce_enum(self, "deploy", DeployMode)
        if self.deploy is not DeployMode.PAPER and self.act_bits is not None:
            raise ValueError(f"deploy mode {self.deploy.value!r} simulates the activations itself; "
                             f"act_bits must be None, got {self.act_bits!r}")
        if not isinstance(self.zero_softmax_lower, bool):
            raise ValueError(f"zero_softmax_lower must be True or False, got {self.zero_softmax_lower!r}")
        if isinstance(self.overrides, (str, bytes)) or not isinstance(self.overrides, (tuple, list)):
            raise ValueError(f"overrides must be a sequence of (selector, bits) pairs, got {self.overrides!r}")
        pairs = []
        for pair in self.overrides:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
                raise ValueError(f"each override is a (selector, bits) pair with a non-empty selector, got {pair!r}")
            _check_bits(f"override {pair[0]!r} bits", pair[1])
            pairs.append((pair[0], pair[1]))
        object.__setattr__(self, "overrides", tuple(pairs))

    def bits_for(self, name: str, role: str) -> int | None:
        """Bits of the quantizer ``name`` of ``role`` (``"weight"``/``"activation"``); None: not quantized."""
        bits = self.weight_bits if role == "weight" else self.act_bits
        if bits is None:
            return None
        for selector, override in self.overrides:
            if selector == role or fnmatch.fnmatchcase(name, selector):
                bits = override
        return bits

    @property
    def label(self) -> str:
        """``W4A4``-style label; ``A16`` for unquantized activations; ``+overrides`` when some tensors differ.

        Deploy modes replace the activation part: ``W4-int8-token``, ``W4-fp16``.
        """
        acts = f"A{self.act_bits if self.act_bits is not None else 16}"
        base = f"W{self.weight_bits}" + (acts if self.deploy is DeployMode.PAPER else f"-{self.deploy.value}")
        return base + ("+overrides" if self.overrides else "")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantConfig:
        """As :meth:`_Serializable.from_dict`; a dict without ``zero_softmax_lower`` predates it (False)."""
        if isinstance(data, dict) and "zero_softmax_lower" not in data:
            data = {**data, "zero_softmax_lower": False}
        return super().from_dict(data)


@dataclass(frozen=True)
class MinMaxConfig(_Serializable):
    """MinMax bounds: ``lower = min(x)``, ``upper = max(x)`` (the paper's MinMax baseline)."""

    method: ClassVar[str] = "minmax"


@dataclass(frozen=True)
class PercentileConfig(_Serializable):
    """Percentile bounds: ``lower``/``upper`` at the ``percentile``-th and ``(100 - percentile)``-th percentiles.

    Args:
        percentile: in percent, in [0, 50). The default 0.01 gives the 0.01th / 99.99th
            percentiles (the paper does not state its value).
    """

    method: ClassVar[str] = "percentile"
    percentile: float = 0.01

    def __post_init__(self):
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 50:
            raise ValueError(f"percentile must be a number in [0, 50) (percent), got {self.percentile!r}")


@dataclass(frozen=True)
class DobiConfig(_Serializable):
    """DOBI, the paper's distribution-oriented bound initialisation (§3.2, Alg. 1).

    Args:
        num_candidates: K, the number of bound-narrowing steps (paper and code: 100).
        variant: ``"paper"`` (Alg. 1: i = 0..K, step (max-min)/2K) or ``"code"`` (released code:
            i = 0..K-1, one-sided step (max-min)/K, first minimum wins).
        all_two_sided: search both bounds for every quantizer, as the released code does (it never
            enables its one-direction search); False follows the paper (EXPONENTIAL quantizers keep
            ``lower = min``).
        max_exact_elements: tensors up to this size are searched exactly; larger ones on a
            histogram (see :mod:`calibration.dobi`).
        histogram_bins: bins of that histogram over [min, max].
    """

    method: ClassVar[str] = "dobi"
    num_candidates: int = 100
    variant: DobiVariant = DobiVariant.PAPER
    all_two_sided: bool = False
    max_exact_elements: int = 2**22
    histogram_bins: int = 2**16

    def __post_init__(self):
        coerce_enum(self, "variant", DobiVariant)
        for field, minimum in (("num_candidates", 1), ("max_exact_elements", 0), ("histogram_bins", 16)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
        if not isinstance(self.all_two_sided, bool):
            raise ValueError(f"all_two_sided must be True or False, got {self.all_two_sided!r}")


InitConfig = MinMaxConfig | PercentileConfig | DobiConfig
_INIT_CONFIGS: dict[str, type] = {c.__name__: c for c in (QuantConfig, MinMaxConfig, PercentileConfig, DobiConfig)}


def config_from_dict(data: dict[str, Any]):
    """Rebuild any config of this module from its ``to_dict`` form, chosen by ``_type``."""
    kind = data.get("_type") if isinstance(data, dict) else None
    if kind not in _INIT_CONFIGS:
        raise ValueError(f"unknown config _type {kind!r}; allowed {sorted(_INIT_CONFIGS)}")
    return _INIT_CONFIGS[kind].from_dict(data)
