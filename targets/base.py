"""The contract every backend follows, and what it receives: the model's weights on their calibrated grids.

A target gets a *deploy model* (the FP SwinIR with every quantized Linear weight replaced by its
fake-quantized value, activations in floating point) plus one :class:`PalettizedWeight` per
quantized Linear (its grid bounds, per row group), and must store those weights so that they
decode to exactly the fake-quantized values. ``lower`` writes the artifact, ``verify`` reads it
back and checks it; :func:`pipeline.build.build` does the rest (temp folder, manifest, rename).

Integer backends (XNNPACK, TFLite) store ``scale * code`` with zero point 0: for them
:func:`on_integer_grid` adds the codes and scales, either exactly (one extra output row per grid for
its offset, :class:`OffsetLinear`) or on grids the build snapped first, and
:func:`dynamic_int8_linears` simulates the int8 activations their kernels use.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calibration.bounds import Bounds, apply_bounds_
from calibration.deploy import DeployMode, simulate
from calibration.primitives import fake_quantize, grid
from calibration.qmodel import QuantLinear, QuantQKV
from targets.config import CONFIGS, ConvWeights, Precision, TargetConfig

__all__ = ["ChannelGrid", "MissingDependency", "PalettizedWeight", "Target", "TargetConfig", "TargetError", "IntegerTarget", "deploy_model", "dynamic_int8_linears",
           "OffsetLinear", "export_copy", "int8_convolutions", "match_channel_grids", "match_stored_weights", "offset_rows", "on_integer_grid", "quiet_tools", "tensor_io",
           "with_fp16_values", "with_offset_rows"]


# The converters' own loggers and the packages whose warnings they raise: what quiet_tools silences.
TOOL_LOGGERS = ("coremltools", "executorch", "torchao", "litert_torch", "ai_edge_litert", "absl", "tensorflow", "jax",
                "torch._export", "torch.export", "torch._dynamo", "torch.fx", "torch.utils._pytree", "torch._utils_internal")
_TOOL_MODULES = r"(coremltools|executorch|torchao|litert_torch|ai_edge_litert|tensorflow|jax|torch|google)(\.|$)"


@contextlib.contextmanager
def quiet_tools():
    """While a converter runs: its loggers at ERROR and its warnings ignored; both restored after.

    Filtered where the noise is produced (named loggers, a warnings filter scoped to this context),
    so the user's logging, warnings and stderr are untouched. Errors still raise. Progress bars
    are the backend's business (:func:`targets.coreml` silences coremltools' own).
    """
    loggers = [(logger, logger.level) for logger in map(logging.getLogger, TOOL_LOGGERS)]
    try:
        for logger, _ in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_TOOL_MODULES)
            # Deprecation notices the tools trigger in the standard library (copyreg, while they copy
            # exported programs) are for the tools' maintainers; nothing a user of the build can change.
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            yield
    finally:
        for logger, level in loggers:
            logger.setLevel(level)


class TargetError(ValueError):
    """A build request a backend cannot satisfy (unknown target, unsupported bits or tile)."""


class MissingDependency(TargetError):
    """The backend's optional Python package is not installed."""


@dataclass(frozen=True)
class PalettizedWeight:
    """One FP Linear's weight on its calibrated grids.

    ``attn.qkv`` holds q, k and v, each with its own quantizer: three equal row groups with their
    own [l, u]. Every other quantized Linear has one group.

    Attributes:
        path: the Linear's module path in the FP model, e.g. ``layers.0.residual_group.blocks.0.attn.qkv``.
        weight: (out, in) float32 fake-quantized weight (every value on its group's grid).
        lowers, uppers: (groups,) float32 bounds, in row order.
        bits: bit width of the grid (2^bits entries).
        quantizers: the bounds-file names of the groups' quantizers.
        codes, scales: for integer backends (:func:`on_integer_grid`), (out, in) int8 codes and
            (out,) float32 row scales with ``weight == codes * scales[:, None] + offset of the row's
            group`` (float32 arithmetic); else None.
        offsets: (groups,) float32 per-group offsets ``c`` of the exact form (:attr:`IntGrid.EXACT`),
            stored as one extra output row per group (:meth:`stored`); None when the grid was snapped.
    """

    path: str
    weight: torch.Tensor
    lowers: torch.Tensor
    uppers: torch.Tensor
    bits: int
    quantizers: tuple[str, ...]
    codes: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    offsets: torch.Tensor | None = None

    @property
    def groups(self) -> int:
        return len(self.quantizers)

    def stored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The int8 codes and float32 row scales the artifact holds for this Linear.

        Without offsets: :attr:`codes`, :attr:`scales`. With them, one row per group is appended:
        every code ``sign(c)`` with scale ``|c|`` (scale 1 when ``c == 0``, as zero scales are
        invalid), so that row of the product is ``c * sum(x)`` in the same kernel.
        """
        if self.offsets is None:
            return self.codes, self.scales
        columns = self.codes.shape[1]
        signs = torch.sign(self.offsets).to(torch.int8)[:, None].expand(self.groups, columns)
        scales = torch.where(self.offsets == 0, torch.ones_like(self.offsets), self.offsets.abs())
        return torch.cat([self.codes, signs]), torch.cat([self.scales, scales.float()])

    def stored_weight(self) -> torch.Tensor:
        """:meth:`stored` decoded in float32 (``codes * scale``): the weight of :class:`OffsetLinear`'s kernel."""
        codes, scales = self.stored()
        return codes.float() * scales[:, None]

    def grids(self) -> torch.Tensor:
        """(groups, 2^bits) lookup tables ``l + k (u - l) / (2^bits - 1)``, exactly as the quantizer computes them."""
        return torch.stack([grid(lo, hi, self.bits) for lo, hi in zip(self.lowers, self.uppers)])


def deploy_model(model: nn.Module, bounds: Bounds) -> tuple[nn.Module, list[PalettizedWeight]]:
    """A plain copy of ``model`` whose quantized Linear weights are their fake-quantized values.

    Args:
        model: the FP SwinIR (not modified).
        bounds: its bounds file (checked against the model: weights hash, architecture, names).

    Returns:
        ``(deploy, weights)``: an eval-mode FP32 SwinIR with no quantizer modules, and one
        :class:`PalettizedWeight` per quantized Linear in model order.

    Raises:
        calibration.bounds.BoundsError: the bounds belong to another model.
    """
    quantized = apply_bounds_(copy.deepcopy(model).eval(), bounds)
    weights = []
    for path, module in quantized.named_modules():
        if isinstance(module, QuantQKV):
            parts = [module.q, module.k, module.v]
        elif isinstance(module, QuantLinear) and module.rows is None:
            parts = [module]
        else:
            continue
        with torch.no_grad():
            rows = [fake_quantize(p.linear_weight(), p.weight_quant.lower, p.weight_quant.upper, p.weight_quant.bits)
                    for p in parts]
        quants = [p.weight_quant for p in parts]
        weights.append(PalettizedWeight(
            path=path, weight=torch.cat(rows).detach().float().cpu(),
            lowers=torch.stack([q.lower.detach() for q in quants]).float().cpu(),
            uppers=torch.stack([q.upper.detach() for q in quants]).float().cpu(),
            bits=quants[0].bits, quantizers=tuple(q.name for q in quants),
        ))
    deploy = copy.deepcopy(model).eval()
    with torch.no_grad():
        for w in weights:
            deploy.get_submodule(w.path).weight.copy_(w.weight)
    return deploy, weights


def on_integer_grid(
    deploy: nn.Module, weights: list[PalettizedWeight], qmin: int, qmax: int, exact: bool = False
) -> tuple[nn.Module, list[PalettizedWeight], dict[str, Any]]:
    """Every weight as integer codes times a per-row scale with zero point 0, as XNNPACK and TFLite store it.

    Snapped (``exact=False``): the grids must already be on integer multiples of their step inside
    ``[qmin, qmax]`` (:func:`calibration.snapping.snap_weight_bounds`), each point ``l + k s`` being
    ``(k + z) s``; the codes are ``round(w / s)``. Exact: any grid; per group ``z`` is the integer
    offset nearest ``l / s`` that fits the container and ``c = l - z s`` the remainder, so
    ``w = s (k + z) + c`` with codes ``k + z`` and one offset per group (:meth:`PalettizedWeight.stored`).
    The deploy model and the returned weights then carry the decoded float32 value, the one the
    runtime multiplies by, so that simulation and artifact use identical weights.

    Returns:
        ``(deploy', weights', report)``: the report gives the largest difference between the decoded
        and the fake-quantized weight, in units of the step (float32 rounding, about 1e-7).

    Raises:
        TargetError: a grid that is not on integer multiples of its step inside ``[qmin, qmax]``
            (snapped form only), or codes outside the container.
    """
    integer, worst = [], 0.0
    deploy = copy.deepcopy(deploy)
    for w in weights:
        levels = 2**w.bits - 1
        steps = ((w.uppers - w.lowers) / levels).float()
        offsets = None
        if exact:
            z = torch.clamp(torch.round(w.lowers / steps), qmin, qmax - levels)
            offsets = (w.lowers - z * steps).float()
            offsets = torch.where(offsets.abs() <= 1e-6 * steps, torch.zeros_like(offsets), offsets)
        per_row = w.weight.shape[0] // w.groups
        rows = steps.repeat_interleave(per_row)[:, None]
        shift = offsets.repeat_interleave(per_row)[:, None] if exact else torch.zeros_like(rows)
        codes = torch.round((w.weight - shift) / rows)
        decoded = codes * rows + shift
        off_grid = ((decoded - w.weight).abs() / rows).max().item()
        if off_grid > 1e-3 or codes.min() < qmin or codes.max() > qmax:
            raise TargetError(f"{w.path}: the grid is not integer multiples of its step inside [{qmin}, {qmax}] "
                              f"(off by {off_grid:.3g} steps, codes {int(codes.min())}..{int(codes.max())}); "
                              "snap the bounds first")
        worst = max(worst, off_grid)
        integer.append(dataclasses.replace(w, weight=decoded, codes=codes.to(torch.int8), scales=rows[:, 0].clone(),
                                           offsets=offsets))
        with torch.no_grad():
            deploy.get_submodule(w.path).weight.copy_(decoded)
    form = ("exact: codes k + z and one offset row per group (c = l - z s)" if exact
            else "snapped: codes k + z on the grid l = z s")
    return deploy, integer, {"form": form, "codes_range": [qmin, qmax], "zero_point": 0,
                             "offset_rows": offset_rows(integer),
                             "max_decoded_minus_fake_quant_in_steps": worst}


@dataclass(frozen=True)
class ChannelGrid:
    """A convolution weight stored as int8 codes times one scale per output channel (symmetric, zero point 0)."""

    path: str
    codes: torch.Tensor  # int8, the weight's shape, in [-127, 127]
    scales: torch.Tensor  # float32 (out,), each exactly an fp16 value

    @property
    def weight(self) -> torch.Tensor:
        """The decoded float32 weight ``codes * scale``, the value the artifact multiplies by."""
        return self.codes.float() * self.scales.view(-1, *[1] * (self.codes.dim() - 1))


def _sum_preserving_round(exact: torch.Tensor) -> torch.Tensor:
    """``exact`` (out, in, kh, kw) rounded to integers such that every (out, in) kernel's sum stays within 0.5 of its
    exact sum: round to nearest, then move the ``round(lost sum)`` taps nearest the other way by one step each.

    Why: independent rounding errors of a kernel's taps add up, and on smooth inputs (most of a photo)
    the kernel acts through its sum. Rounded to nearest, the x4 model's 7 int8 convolutions darkened
    the output by 0.19 levels on average and laid a 4x4 pattern on it (the pixel-shuffle conv's
    channels are sub-pixel positions), which made its PNGs 10% larger; keeping each code within one
    step of ``exact`` and the sums, both shrink several-fold (reports/conv_weights.md).
    """
    flat = exact.flatten(2)
    codes = torch.round(flat)
    residual = flat - codes
    moves = torch.round(residual.sum(-1, keepdim=True))  # per kernel: how many codes go one step up (+) or down (-)
    direction = torch.sign(moves)
    order = torch.argsort(residual * direction, dim=-1, descending=True)  # nearest the other way first
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(flat.shape[-1]).expand_as(order))
    return (codes + direction * (rank < moves.abs())).view_as(exact)


def channel_grid(path: str, weight: torch.Tensor, keep_sums: bool = True) -> ChannelGrid:
    """Per output channel ``s``, the smallest fp16 value >= ``max |w| / 127``, and codes near ``w / s`` in [-127, 127]
    that keep each kernel's sum (:func:`_sum_preserving_round`; ``keep_sums=False``: nearest, for comparison).

    The scale is an fp16 value so that an fp16 runtime (Core ML) holds it exactly; rounding it up keeps
    every code within 127 even where fp16 is coarse (subnormal scales), so nothing is clipped.
    Idempotent: on a weight that is already ``codes * s`` it returns the same codes and scales
    (``127 s`` and its division by 127 are exact in float32).
    """
    w = weight.detach().float().cpu()
    peak = w.abs().reshape(len(w), -1).amax(dim=1)
    half = (peak / 127).half()
    half = torch.where(half.float() < peak / 127, torch.nextafter(half, torch.full_like(half, float("inf"))), half)
    scales = half.float()
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # an all-zero channel: any scale, codes 0
    exact = w / scales.view(-1, *[1] * (w.dim() - 1))
    codes = torch.clamp(_sum_preserving_round(exact) if keep_sums else torch.round(exact), -127, 127).to(torch.int8)
    return ChannelGrid(path, codes, scales)


def int8_convolutions(deploy: nn.Module) -> tuple[nn.Module, list[ChannelGrid], dict[str, Any]]:
    """A copy of ``deploy`` whose every ``nn.Conv2d`` weight is on its int8 per-channel grid (:func:`channel_grid`).

    The copy is the simulation of an artifact that stores its convolutions in int8: scored against
    the artifact, and the source of the codes the backend stores and :meth:`Target.verify` checks.

    Returns:
        ``(deploy', grids, report)``: one :class:`ChannelGrid` per int8 convolution in model order; the
        report counts them and gives the largest change of a weight in units of its channel's step.
    """
    deploy = copy.deepcopy(deploy)
    grids, worst = [], 0.0
    for path, module in deploy.named_modules():
        if isinstance(module, nn.Conv2d):
            g = channel_grid(path, module.weight)
            worst = max(worst, ((g.weight - module.weight.detach()).abs() / g.scales.view(-1, 1, 1, 1)).max().item())
            with torch.no_grad():
                module.weight.copy_(g.weight)
            grids.append(g)
    return deploy, grids, {"weights": "int8 per output channel, symmetric (codes -127..127, fp16 scales)",
                           "convolutions": len(grids), "weights_count": sum(g.codes.numel() for g in grids),
                           "max_change_in_steps": round(worst, 4)}


def offset_rows(weights: list[PalettizedWeight]) -> int:
    """How many extra output rows the exact form adds to the stored weights (one per grid with an offset)."""
    return sum(w.groups for w in weights if w.offsets is not None)


class OffsetLinear(nn.Module):
    """A Linear stored in the exact form: ``y = kernel(x)[:n] + c * sum(x)`` per row group.

    ``kernel`` is an ``nn.Linear`` with ``n + groups`` outputs whose weight is
    :meth:`PalettizedWeight.stored_weight`; its last ``groups`` outputs are ``c_g * sum(x)`` (the
    backend's int8 kernel computes them with the rest) and are added back to their group's rows
    (a broadcast add for one group, a 0/1 matrix for q, k, v). Mathematically equal to the Linear
    with weight ``s q + c``; only float rounding differs.
    """

    def __init__(self, linear: nn.Linear, weight: PalettizedWeight):
        super().__init__()
        stored = weight.stored_weight()
        self.rows, self.groups = linear.out_features, weight.groups
        self.kernel = nn.Linear(linear.in_features, stored.shape[0], bias=linear.bias is not None)
        with torch.no_grad():
            self.kernel.weight.copy_(stored)
            if linear.bias is not None:
                self.kernel.bias.copy_(torch.cat([linear.bias.detach(), torch.zeros(self.groups)]))
        expand = torch.repeat_interleave(torch.eye(self.groups), self.rows // self.groups, dim=0)
        self.register_buffer("expand", expand)  # (rows, groups): row r takes its group's offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.kernel(x)
        main, offsets = out[..., : self.rows], out[..., self.rows:]
        return main + (offsets if self.groups == 1 else F.linear(offsets, self.expand))


def with_offset_rows(model: nn.Module, weights: list[PalettizedWeight]) -> nn.Module:
    """``model`` (an export copy, changed in place and returned) with every Linear that has offsets as an :class:`OffsetLinear`."""
    for w in weights:
        if w.offsets is not None:
            parent, _, name = w.path.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, name, OffsetLinear(getattr(owner, name), w))
    return model


def export_copy(deploy: nn.Module, tile: int, norm: type[nn.Module] | None = None,
                window_chunk: int | None = None, always_pieces: bool = False) -> nn.Module:
    """A copy of ``deploy`` for one fixed (1, 3, tile, tile) input: constants frozen, LayerNorms optionally rewritten.

    ``norm`` wraps each ``nn.LayerNorm`` (``norm(layer_norm)``) for backends that need another form of it;
    ``window_chunk`` splits the attention into runs of that many windows, ``always_pieces`` also a tile of no
    more windows (``SwinIR.freeze_shape``).

    Raises:
        TargetError: ``tile`` is not a multiple of the window size (the export has no padding).
    """
    window = deploy.config.window_size
    if tile % window:
        raise TargetError(f"the tile must be a multiple of the window size {window}, got {tile}")
    model = copy.deepcopy(deploy).eval().freeze_shape(tile, tile, window_chunk, always_pieces)
    if norm is not None:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.LayerNorm):
                    setattr(parent, name, norm(child))
    return model


# Where an artifact's bytes go (reports/artifact_sizes.md); ``graph and metadata`` is the rest of the file.
SIZE_COMPONENTS = ("linear weights", "linear scales and tables", "convolutions", "biases and norms", "bias tables",
                   "shift mask", "other constants", "graph and metadata")


@dataclass(frozen=True)
class StoredConstant:
    """One constant as an artifact stores it: its bytes there and either its component or its values (any layout)."""

    nbytes: int
    values: np.ndarray | None = None
    component: str | None = None


def _fingerprint(values: np.ndarray) -> tuple:
    """Layout-free identity of a tensor: dtype, size and sorted values (``+ 0`` turns -0.0 into 0.0)."""
    flat = np.sort(values.reshape(-1)) + values.dtype.type(0)
    return values.dtype.str, flat.size, flat.tobytes()


def _reference_components(reference: nn.Module) -> dict[tuple, str]:
    """Fingerprints (fp32 and fp16) of every parameter and buffer of ``reference``, mapped to its component."""
    lookup: dict[tuple, str] = {}
    for module in reference.modules():
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if tensor is None or not tensor.is_floating_point():
                continue
            if name == "weight" and isinstance(module, nn.Conv2d):
                component = "convolutions"
            elif name == "weight" and isinstance(module, nn.Linear):
                component = "linear weights"
            elif name == "expand" and isinstance(module, OffsetLinear):
                component = "linear scales and tables"
            elif name in ("relative_position_bias_table", "frozen_bias_tables", "frozen_offsets"):
                component = "bias tables"
            elif name.startswith("frozen_mask"):
                component = "shift mask"
            else:
                component = "biases and norms"
            values = tensor.detach().float().cpu().numpy()
            for dtype in (np.float32, np.float16):
                lookup.setdefault(_fingerprint(values.astype(dtype)), component)
    return lookup


def size_breakdown(total: int, stored: list[StoredConstant], reference: nn.Module) -> dict[str, int]:
    """Bytes of an artifact by component (:data:`SIZE_COMPONENTS`).

    Constants whose component the backend does not know are recognised by value: a stored tensor
    belongs to the parameter or buffer of ``reference`` (the export copy the artifact was lowered
    from) whose values, sorted, it equals in its own dtype, so transposed layouts still match;
    none equal: ``other constants``. What no constant accounts for is graph, metadata and padding.

    Args:
        total: the artifact's bytes on disk.
        stored: every constant the artifact stores, each once.
        reference: the model the artifact was lowered from (frozen export copy).
    """
    lookup = _reference_components(reference)
    sizes = dict.fromkeys(SIZE_COMPONENTS, 0)
    for constant in stored:
        component = constant.component
        if component is None:
            values = constant.values
            component = lookup.get(_fingerprint(values), "other constants") if values.dtype.kind == "f" else "other constants"
        sizes[component] += constant.nbytes
    sizes["graph and metadata"] = total - sum(sizes.values())
    return sizes


def tensor_io(deploy: nn.Module, tile: int, dtypes: tuple[str, str] = ("float32", "float32"),
              names: tuple[str, str] = ("lr", "sr")) -> dict:
    """The manifest's ``input``/``output`` entries of a fixed-tile artifact (NCHW RGB in [0, 1]); dtypes (in, out)."""
    out = tile * deploy.config.scale
    return {
        "input": {"name": names[0], "shape": [1, 3, tile, tile], "dtype": dtypes[0], "layout": "NCHW, RGB",
                  "range": [0.0, 1.0]},
        "output": {"name": names[1], "shape": [1, 3, out, out], "dtype": dtypes[1], "layout": "NCHW, RGB",
                   "range": "about [0, 1]; clamp before converting to 8 bits"},
    }


class Target(abc.ABC):
    """One backend: lowers a deploy model to an artifact and checks it. Subclasses set the class attributes.

    Attributes:
        name: the backend's name (``coreml``, ``executorch``, ``tflite``).
        extension: the artifact's suffix.
        bits: the weight bit widths it stores exactly.
        container: for backends that store ``codes * scale`` with zero point 0, the integer
            container (``"int4"``; :meth:`container_for` may pick a smaller one); the build then snaps
            the grids into it and computes codes (:func:`on_integer_grid`). None: the backend stores
            the calibrated grid itself.
        simulation: what :meth:`simulate` models, in a line.
        runtime: what executes the artifact on this host (:meth:`runner`); None: it cannot run here.
        runtime_modules: what :meth:`runner` imports, for worker processes to import once before they fork
            (:mod:`targets.tile_workers`).
        has_baseline: the build also lowers an FP32 baseline of the same graph (:meth:`lower_baseline`).
        deploy_mode: how the runtime computes activations, the mode calibration should have used
            (:class:`calibration.config.DeployMode`); the build warns when the bounds were made in another.
    """

    name: ClassVar[str]
    extension: ClassVar[str]
    bits: ClassVar[tuple[int, ...]]
    container: ClassVar[str | None] = None
    simulation: ClassVar[str] = "PyTorch fp32, fake-quantized weights, float activations"
    runtime: ClassVar[str | None] = None
    runtime_modules: ClassVar[tuple[str, ...]] = ()
    has_baseline: ClassVar[bool] = False
    deploy_mode: ClassVar[DeployMode]

    def __init__(self, config: TargetConfig | None = None):
        self.config = config if config is not None else CONFIGS[self.name]()
        if type(self.config) is not CONFIGS[self.name]:
            raise TargetError(f"the {self.name} backend takes a {CONFIGS[self.name].__name__}, "
                              f"got {type(self.config).__name__}")

    @abc.abstractmethod
    def lower(self, deploy: nn.Module, weights: list[PalettizedWeight], tile: int, artifact: Path,
              convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        """Write the artifact for a fixed (1, 3, tile, tile) input; return what the manifest should say about it.

        ``convs``: the int8 grids of the convolutions when the config stores them in int8
        (:func:`int8_convolutions`; ``deploy`` then holds their decoded weights), else empty.
        """

    @abc.abstractmethod
    def verify(self, artifact: Path, weights: list[PalettizedWeight], convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        """Read the artifact back and check every stored weight against ``weights`` and ``convs``; raise if one differs."""

    def require_convs(self, convs: Sequence[ChannelGrid]) -> None:
        """Refuse int8 grids the config does not store, or their absence where it does (a silent float copy)."""
        if (self.config.conv_weights is ConvWeights.INT8) != bool(convs):
            raise TargetError(f"the config stores convolutions as {self.config.conv_weights.value!r} but "
                              f"{len(convs)} int8 grids were given (targets.base.int8_convolutions makes them)")

    @abc.abstractmethod
    def tool_versions(self) -> dict[str, str]:
        """Versions of the packages that produced the artifact."""

    def simulate(self, deploy: nn.Module) -> nn.Module:
        """The PyTorch model of the artifact's arithmetic (default: the deploy model itself)."""
        return deploy

    def _sizes(self, tile: int) -> tuple[int, ...]:
        """``tile`` first, then the config's other tile sides (one method, signature or function each)."""
        return (tile, *(size for size in self.config.sizes if size != tile))

    def runner(self, artifact: Path, threads: int | None = None,
               tile: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """LR tile -> SR tile through the artifact's runtime on this host; ``tile``: which of its sizes (default its own)."""
        raise TargetError(f"{self.name} artifacts cannot run on this host")

    def lower_baseline(self, deploy: nn.Module, tile: int, artifact: Path) -> dict[str, Any]:
        """The same graph (every tile size the artifact runs) with FP32 weights: the speed and size baseline."""
        raise TargetError(f"the {self.name} backend has no FP32 baseline")

    def probe(self, deploy: nn.Module, crops: torch.Tensor) -> dict[str, Any]:
        """Checks of the deploy model on calibration crops that this runtime's arithmetic calls for (default: none).

        A ``"warning"`` entry (a sentence, or None) is printed by the build.
        """
        return {"warning": None}

    @abc.abstractmethod
    def stored_constants(self, artifact: Path, weights: list[PalettizedWeight]) -> list[StoredConstant]:
        """Every constant the artifact stores, once each; ``weights``' stored codes and tables come with their component."""

    def op_profile(self, artifact: Path, example: torch.Tensor, runs: int) -> list[dict[str, Any]] | str:
        """Per-operator times of the artifact, or a line saying why the runtime offers none."""
        return "this runtime offers no per-operator profile"

    @abc.abstractmethod
    def graph_summary(self, artifact: Path) -> dict[str, Any]:
        """What the artifact's graph holds, read from the file: ``{"ops": {op type: count}, "max_rank": int,
        "above_rank_4": {op type: count of ops reading or writing a tensor above rank 4}}``.

        ``max_rank`` is the highest rank of any tensor the graph defines: mobile GPU delegates and NPUs
        commonly reject tensors above rank 4 (docs/runtime_limits/rank_limits.md), so the export keeps
        every tensor at rank 4 or less.
        """


class IntegerTarget(Target):
    """What the backends that store ``scale * code`` in an int4 container share (ExecuTorch/XNNPACK, TFLite).

    The build snaps their grids into :attr:`container` and hands them codes (:func:`on_integer_grid`);
    2- and 3-bit grids ride in the same int4 container, and their kernels quantize Linear inputs to
    int8 per token, which :meth:`simulate` reproduces.
    """

    bits = (2, 3, 4)
    container = "int4"
    has_baseline = True
    deploy_mode = DeployMode.INT8_TOKEN

    def container_for(self, bits: int) -> str:
        """The integer container of this build's ``bits``-bit grids (default :attr:`container`)."""
        return self.container

    def require_codes(self, weights: list[PalettizedWeight]) -> None:
        if any(w.codes is None for w in weights):
            raise TargetError(f"the {self.name} target needs integer codes (targets.base.on_integer_grid)")

    def as_stored(self, deploy: nn.Module) -> nn.Module:
        """``deploy`` with its bias tables and convolution filters in the precision the artifact stores them in
        (``IntegerConfig.bias_tables``; ``conv_weights``: fp16 filters with ``ConvWeights.FP16``)."""
        return with_fp16_values(deploy, bias_tables=self.config.bias_tables is Precision.FP16,
                                conv_filters=self.config.conv_weights is ConvWeights.FP16)

    def simulate(self, deploy: nn.Module) -> nn.Module:
        return dynamic_int8_linears(self.as_stored(deploy))


def with_fp16_values(deploy: nn.Module, bias_tables: bool, conv_filters: bool) -> nn.Module:
    """``deploy``, or a copy of it whose relative-position bias tables (``bias_tables``) and convolution filters
    (``conv_filters``; their biases stay fp32) hold fp16 values in float32 tensors, which the artifact then
    stores in fp16 exactly."""
    if not (bias_tables or conv_filters):
        return deploy
    model = copy.deepcopy(deploy)
    for module in model.modules():
        table = getattr(module, "relative_position_bias_table", None)
        if bias_tables and isinstance(table, torch.Tensor):
            table.data = table.data.half().float()
        if conv_filters and isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.half().float()
    return model


def _match_by_content(expected: list[tuple[str, np.ndarray, np.ndarray]], stored: list[tuple[np.ndarray, np.ndarray]],
                      what: str) -> None:
    """Match ``(path, codes, scales)`` against the artifact's ``(codes, scales)`` by value: each expected grid held by at
    least one stored tensor, each stored tensor equal to an expected grid. At least one, not exactly one: a graph
    whose attention runs in window chunks (``IntegerConfig.window_chunk``) feeds a weight to one op per chunk."""
    matched: set[int] = set()
    for path, codes, scales in expected:
        codes, scales = codes.astype(np.int16), scales.astype(np.float32)
        hits = {i for i, (held, held_scales) in enumerate(stored) if held.shape == codes.shape
                and np.array_equal(held, codes) and np.array_equal(held_scales, scales)}
        if not hits:
            raise TargetError(f"{path}: no {what} in the artifact holds its codes and scales")
        matched |= hits
    if len(matched) < len(stored):
        raise TargetError(f"{len(stored) - len(matched)} {what}s in the artifact match no calibrated grid")


def match_stored_weights(weights: list[PalettizedWeight], stored: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Require every one of ``weights`` among the artifact's stored ``(codes, row scales)`` pairs, and nothing else there.

    Matching by content, not by name: each calibrated weight must find a stored tensor with exactly
    its integer codes and exactly its float32 row scales, and no stored tensor may hold anything else.

    Raises:
        TargetError: naming the first weight without its exact copy, or the count of extra tensors.
    """
    _match_by_content([(w.path, *(t.numpy() for t in w.stored())) for w in weights], stored, "weight")


def match_channel_grids(convs: Sequence[ChannelGrid], stored: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """:func:`match_stored_weights` for int8 convolutions: ``stored`` holds (codes (out, in, kh, kw), scales (out,))."""
    _match_by_content([(g.path, g.codes.numpy(), g.scales.numpy()) for g in convs], stored, "int8 convolution")


def dynamic_int8_linears(deploy: nn.Module) -> nn.Module:
    """A copy of ``deploy`` whose Linear inputs are fake-quantized to dynamic int8 per token.

    The PyTorch simulation of what the integer backends run: float activations everywhere, but each
    quantized Linear multiplies int8 per-token activations (ExecuTorch/XNNPACK ``qd8``) by its integer weights.
    It is :func:`calibration.deploy.simulate` in ``int8-token`` mode, the one DQC calibrates in.
    """
    return simulate(deploy, DeployMode.INT8_TOKEN)
