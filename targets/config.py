"""What a user chooses per backend: one frozen, validated config class each, importable without the backend's package.

``build(model, bounds, CoreMLConfig(tile=64), out)`` picks the backend from the config's type, so a
backend name and its options cannot disagree, and a missing ``coremltools`` is reported only when
that backend is used (:func:`targets.get_target`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from calibration.config import coerce_enum

__all__ = ["ConvWeights", "CoreMLConfig", "ExecuTorchConfig", "IntGrid", "IntegerConfig", "Precision", "TFLiteConfig", "TargetConfig"]


FP32_OPS = ("layer_norm", "softmax")  # the Core ML ops that may stay fp32 inside an fp16 program
TILES = (64, 128)  # the LR tile sides one ExecuTorch artifact runs by default (ExecuTorchConfig.tiles)
WINDOW_CHUNK = 64  # windows per Swin-block piece in ExecuTorch and TFLite graphs (IntegerConfig.window_chunk)


def _check_count(count: object, name: str) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{name} must be a positive integer, got {count!r}")


def _check_tile(tile: object, name: str) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 8:
        raise ValueError(f"{name} must be an integer >= 8 (a multiple of the window size), got {tile!r}")


class Precision(enum.Enum):
    """A float precision: Core ML's between ops (activations, convolutions, biases), integer targets' bias tables."""

    FP16 = "fp16"
    FP32 = "fp32"


class ConvWeights(enum.Enum):
    """How the convolution weights are stored (they are not 2DQuant-calibrated: 2DQuant quantizes the Linears).

    ``FLOAT``: in the program's precision (fp16 in an fp16 Core ML program). ``FP16`` (ExecuTorch): fp16
    filters in the fp32 graph, which XNNPACK's ``f32_f16`` convolution widens to fp32 when the program
    loads, so the convolution computes exactly what fp32 filters holding fp16 values do, and the
    simulation holds those values (:func:`targets.base.with_fp16_values`). ``INT8``: int8 codes with one
    fp16 scale per output channel (:func:`targets.base.int8_convolutions`); the simulation uses the same
    decoded weights, so the cost shows in its score. Core ML and TFLite decode them to floats at load;
    XNNPACK under ExecuTorch has no such convolution, so there they also quantize the input to int8 per
    image at run time (``qd8``), which the ExecuTorch simulation reproduces.
    """

    FLOAT = "float"
    FP16 = "fp16"
    INT8 = "int8"


class IntGrid(enum.Enum):
    """How an integer backend (zero point 0) stores a 2DQuant grid ``l + k s`` with a real offset ``l``.

    ``EXACT``: symmetric codes ``q`` with ``w = s q + c`` per row group; the Linear gets one extra
    output row of codes +-1 and scale ``|c|`` that computes ``c * sum(x)`` in the same int8 kernel,
    added back to its group's outputs (:class:`targets.base.OffsetLinear`). ``SNAPPED``: the grid moved
    to ``l = z s`` (:func:`calibration.snapping.snap_bounds`), no extra row, but not the calibrated grid.
    """

    EXACT = "exact"
    SNAPPED = "snapped"


@dataclass(frozen=True)
class TargetConfig:
    """Options every backend takes.

    Args:
        tile: the fixed LR input side of the artifact (a multiple of the model's window size, 8
            for SwinIR-light); images of any size run through it in overlapping tiles.
        tiles: further LR tile sides the same artifact runs, each its own graph sharing the one copy
            of the weights (ExecuTorch: a method ``tile_<n>``; TFLite: a signature ``tile_<n>``; Core ML: a
            function ``tile_<n>`` beside ``main``); ``pipeline upscale`` picks the fastest for each photo.
        conv_weights: how the convolutions are stored (:class:`ConvWeights`).
    """

    backend: ClassVar[str]
    conv_storage: ClassVar[tuple[ConvWeights, ...]] = (ConvWeights.FLOAT, ConvWeights.INT8)  # what it can store
    tile: int = 64
    tiles: tuple[int, ...] = ()
    conv_weights: ConvWeights = ConvWeights.FLOAT

    def __post_init__(self):
        _check_tile(self.tile, "tile")
        coerce_enum(self, "conv_weights", ConvWeights)
        if self.conv_weights not in self.conv_storage:
            raise ValueError(f"conv_weights={self.conv_weights.value!r} is not a {self.backend} option (it stores "
                             f"convolutions as {' or '.join(repr(c.value) for c in self.conv_storage)})")
        if isinstance(self.tiles, (int, str)):
            raise ValueError(f"tiles must be a sequence of tile sides, got {self.tiles!r}")
        for tile in self.tiles:
            _check_tile(tile, "every tile in tiles")
        object.__setattr__(self, "tiles", tuple(self.tiles))

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every LR tile side the artifact runs, ``tile`` first (the size it is timed and compared at)."""
        return (self.tile, *sorted(set(self.tiles) - {self.tile}))


@dataclass(frozen=True)
class CoreMLConfig(TargetConfig):
    """Core ML ML program (.mlpackage, iOS 18 / macOS 15).

    Args:
        compute_precision: precision between ops; fp16 is what the Neural Engine runs.
        compact_constants: store the large derived constants (expanded relative-position bias,
            shift mask) as exact lookup tables, merge the program's repeated small constants and
            shorten its value names (599 -> 265 KB of model.mlmodel at x4), keep constants under 256
            elements in the program rather than in weight.bin (48 KB of blob headers and padding at
            x4) and drop all-zero linear biases; lossless, checked after the fact.
        fp32_ops: MIL op types kept in fp32 inside an fp16 program (``"layer_norm"``, ``"softmax"``):
            the ops whose intermediates (sum of squares, logits) come closest to fp16's 65504.
        conv_weights: int8 by default: on the shipped x4 model it makes every package 188 KB smaller
            (W4 1043 -> 855 KB) for at most 0.002 dB of PSNR on Set5 and Set14 at W4, W3 and W2
            (reports/conv_weights.md); its latency on a device is not measured (Core ML does not run here).
        tiles: none further by default (one function, ``main``). Each further size is a function ``tile_<n>``
            (coremltools' ``save_multifunction``, iOS 18: ``MLModelConfiguration.functionName``); weight.bin
            holds the weights once for all, but each function adds its program: 64 + 128 px at W4, x4 is
            1.10 MB instead of 0.86 (program 240 KB per function), over issue 16's 0.9 MB, hence opt-in.
    """

    backend: ClassVar[str] = "coreml"
    compute_precision: Precision = Precision.FP16
    compact_constants: bool = True
    fp32_ops: tuple[str, ...] = ()
    conv_weights: ConvWeights = ConvWeights.INT8

    def __post_init__(self):
        super().__post_init__()
        coerce_enum(self, "compute_precision", Precision)
        if not isinstance(self.compact_constants, bool):
            raise ValueError(f"compact_constants must be True or False, got {self.compact_constants!r}")
        if isinstance(self.fp32_ops, str) or not set(self.fp32_ops) <= set(FP32_OPS):
            raise ValueError(f"fp32_ops must be a subset of {FP32_OPS}, got {self.fp32_ops!r}")
        object.__setattr__(self, "fp32_ops", tuple(self.fp32_ops))


@dataclass(frozen=True)
class IntegerConfig(TargetConfig):
    """Options of the backends that store ``scale * code`` with zero point 0 (ExecuTorch, TFLite).

    Args:
        int_grid: how the calibrated grids are stored (:class:`IntGrid`). Snapped by default, for the
            time: on the shipped x4 model the exact form's offset rows cost 17-21% latency at W4
            (ExecuTorch and TFLite, 1 and 2 threads, paired) and 2-4% bytes, and buy at most
            0.08 dB of PSNR (W2, Set5; nothing at W4) (reports/deploy_calibration.md §3).
        window_chunk: each graph runs every Swin block (norms, attention, MLP, residuals) over at most this
            many windows at a time, one piece after another (None: the whole tile at once;
            ``SwinIR.freeze_shape``): the same values, but each piece's tensors stay in the CPU's cache.
            Each piece adds its ops to the graph.
        bias_tables: the precision of the relative-position bias tables (32,400 values at x4). fp16 by
            default: the build rounds them to fp16 values in the simulation too, so the artifact still equals
            it, and stores them in fp16, 65 KB less at x4 (TFLite: FLOAT16 behind a DEQUANTIZE that the XNNPACK
            delegate unpacks at load; ExecuTorch: widened by the portable runtime before the XNNPACK partition,
            which takes no fp16 constant). reports/bias_tables.md and bias_tables_executorch.md measure bytes,
            dB and latency.
    """

    int_grid: IntGrid = IntGrid.SNAPPED
    window_chunk: int | None = None
    bias_tables: Precision = Precision.FP16

    def __post_init__(self):
        super().__post_init__()
        coerce_enum(self, "int_grid", IntGrid)
        coerce_enum(self, "bias_tables", Precision)
        if self.window_chunk is not None:
            _check_count(self.window_chunk, "window_chunk")


@dataclass(frozen=True)
class ExecuTorchConfig(IntegerConfig):
    """ExecuTorch program (.pte) with the XNNPACK delegate: int4 weight codes, dynamic int8 activations.

    Args:
        tiles: further LR tile sides the same .pte runs, one method each (``forward`` runs ``tile``,
            ``tile_<n>`` the others). XNNPACK keys its weights by content, so the methods share one
            copy, but each size adds its own XNNPACK graphs: 0.06 MB at x4 for 128 px, whose Swin blocks run
            in pieces that are the 64 px graph's blocks, stored once (``shared_pieces``; the 64 + 128 px W4 .pte
            of reports/artifact_sizes.md against the 64 px one of reports/conv_weights_executorch.md); 96 and
            192 px together 0.13 MB (their pieces are the 64 px graph's blocks too, a 96 px tile's last one
            overlapping the one before; W4 64 + 96 + 128 + 192 px: 1.31 MB). Default 64 and 128, the four sizes
            taking the lowering from about 150 s to 525 s and its peak from 3.5 to 7.3 GB, for 192 px 8-11% faster
            per output pixel than 128 and 96 px no faster than 64 (README, issue 17). Without window chunks, 96,
            128 and 192 px cost 16%, 19% and 15% less time per output pixel than 64 with the 16 px overlap a photo
            needs (a bigger tile recomputes less overlap, but its memory-bound ops slowed down per pixel), so one
            extra size, 128, took the most of the gain for one graph; with them, 128 px costs 39% less
            (reports/upscale_photo.md, 2 threads).
        window_chunk: 64 windows by default, a 64 px tile's count, so the 64 px graph runs each block whole
            and a 128 px one in 4 pieces. On the shipped x4 W4 build (reports/upscale_photo.md, this 2-core host) a
            128 px tile then runs 1.33x / 1.30x as fast as the whole tile at once (paired, 1 / 2 threads); the
            .pte was 2.44 MB (1.92 without chunks; 2.37 since the bias tables are fp16, 1.99 since the filters are
            too, 1.69 since the XNNPACK graphs are compact) and lowers in 306-350 s, peaking at 3.5 GB (the
            partitioners' reachability sets as bitsets, ``targets.dependency_bitsets``).
            Pieces of 32 build too (4.8 GB, 673 s, 3.34 MB) but ran a 128 px tile only 1.04x / 1.02x as fast as
            pieces of 64 (paired, 1 / 2 threads).
        conv_weights: fp16 by default (``ConvWeights.FP16``): XNNPACK keeps fp16 filters in the .pte and widens
            them to fp32 when the program loads (``xnn_create_convolution2d_nhwc_f32_f16``), so the convolutions
            run as with fp32 filters, holding the fp16 values the simulation holds too. On the shipped x4 model
            (reports/conv_weights_executorch.md, 64 px tile) the .pte goes from 1594 to 1215 KB, PSNR moves by at
            most 0.001 dB on Set5 and Set14 at W4, W3 and W2, the artifact stays within 0.14 levels of 255 of its
            simulation (0.11 with fp32 filters) and a W4 tile runs paired 1.004x / 0.993x as fast as with fp32
            filters (1 / 2 threads). ``float`` keeps fp32 filters. ``int8`` stores int8 per-channel filters
            that run on fp32 inputs, each 3x3 convolution as its patches times XNNPACK's ``f32 x qc8w`` fully
            connected op (:mod:`targets.xnnpack_convs`: XNNPACK's convolution takes int8 filters only with
            int8 inputs), so the artifact still equals its simulation: on the shipped x4 model at a 64 px tile
            (reports/conv_weights_executorch.md) the .pte goes from 1152 KB (fp16 filters) to 975 KB
            (convolutions 379 -> 191 KB), PSNR moves by at most 0.001 dB against fp32 filters on Set5 and Set14 at
            W4, W3 and W2 and the artifact stays within 0.10 levels of 255 of its simulation, but a W4 tile runs
            paired 0.96x / 0.93x as fast as with fp32 filters (1 / 2 threads; in the default 64 + 128 px .pte a
            128 px tile 0.91x, peak RSS +55 MB): the nine shifted views are copies a convolution does not make.
            Hence opt-in (the size goal's latency condition). It replaced ``Convolution (QD8, F32, QC8W)``, which
            quantized each tile's input to int8 and followed its simulation only to 2.45 levels of 255.
        shared_pieces: lower every Swin-block piece as an XNNPACK graph of its own (a 64 px tile as one piece
            too), so that the .pte stores each distinct piece once: the 128 px method's 4 pieces of a block
            and the 64 px method's block are one graph (:mod:`targets.xnnpack_pieces`). Default (None): on
            wherever there are pieces (``window_chunk`` set); True needs ``window_chunk``. Shipped x4 W4, 64 + 128
            px: 1,687,872 -> 1,255,744 bytes (graph and metadata 785 -> 352 KB), the same values; paired against
            one partition per method a 64 px tile runs 0.97x / 0.97x as fast at 1 / 2 threads (49 XNNPACK calls
            instead of one) and a 128 px tile, the one a photo runs, 1.01x / 1.00x; peak RSS 404 instead of
            388 MB at 64 px and 420 instead of 422 at 128 px (reports/shared_pieces.md).
    """

    backend: ClassVar[str] = "executorch"
    conv_storage: ClassVar[tuple[ConvWeights, ...]] = (ConvWeights.FLOAT, ConvWeights.FP16, ConvWeights.INT8)
    conv_weights: ConvWeights = ConvWeights.FP16
    tiles: tuple[int, ...] = TILES
    window_chunk: int | None = WINDOW_CHUNK
    shared_pieces: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.shared_pieces is None:  # the default: on wherever there are pieces
            object.__setattr__(self, "shared_pieces", self.window_chunk is not None)
        if not isinstance(self.shared_pieces, bool):
            raise ValueError(f"shared_pieces must be True, False or None (default), got {self.shared_pieces!r}")
        if self.shared_pieces and self.window_chunk is None:
            raise ValueError("shared_pieces needs window_chunk: the pieces are window_chunk windows each")


@dataclass(frozen=True)
class TFLiteConfig(IntegerConfig):
    """LiteRT / TFLite flatbuffer (.tflite): INT4 FULLY_CONNECTED weights (hybrid kernels).

    Args:
        conv_weights: int8 by default (INT8 filters behind a DEQUANTIZE that LiteRT's XNNPACK delegate unpacks
            once, at load): on the shipped x4 model the .tflite shrinks from 1449 to 883 KB for at most
            0.001 dB of PSNR on Set5 and Set14 at W4, W3 and W2, and a W4 tile runs as fast as the fp32-filter
            one (paired 0.998x at 1 thread, 1.004x at 2; reports/conv_weights.md; 0.971x and 1.019x in the run
            before). Against the FP32 baseline the int4 artifacts measure 0.97-1.01x at 1 and 2 threads
            (reports/integer_targets.md; the same in the run before); ``conv_weights="float"`` would cost 566 KB.
        tiles: none further by default (one signature, ``tile``): each further size, a ``tile_<n>``
            signature, shares the weights' buffers and scales in the file but adds its own graph
            (64 + 128 px: 0.87 -> 1.37 MB at W4, x4, over issue 16's 0.9 MB; 1.02 MB without window chunks). With
            64 + 128 px a 2000x1500 photo at x4 takes 67 s instead of 98 s with the code before issue 17 (2 threads,
            reports/upscale_photo_tflite.md).
        window_chunk: 64 windows by default, as ExecuTorch: the default 64 px graph is unchanged (one piece is no
            piece, ``SwinIR.freeze_shape``); with ``--tiles 64 128`` a W4 128 px tile runs 1.34x / 1.37x as fast
            as the whole tile at once (paired, 1 / 2 threads, reports/upscale_photo_tflite.md, this 2-core host)
            and the .tflite grows from 1.02 to 1.37 MB (each piece's ops in the graph).
    """

    backend: ClassVar[str] = "tflite"
    window_chunk: int | None = WINDOW_CHUNK
    conv_weights: ConvWeights = ConvWeights.INT8


CONFIGS: dict[str, type[TargetConfig]] = {c.backend: c for c in (CoreMLConfig, ExecuTorchConfig, TFLiteConfig)}
