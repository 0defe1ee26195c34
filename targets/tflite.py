"""TFLite / LiteRT target: a .tflite whose FULLY_CONNECTED weights are the calibrated grid as INT4 (or INT2) codes.

``litert_torch`` converts the deploy model (frozen for the tile, ``SwinIR.freeze_shape``: mask and biases
expanded in the graph from small tables by float FULLY_CONNECTED ops; LayerNorm
scales kept out of the next weight, :class:`UnfoldedLayerNorm`) to a float TFLite flatbuffer. Each FULLY_CONNECTED weight is then rewritten in place: type INT4, our codes
``k + z`` (two per byte, low nibble first), our per-row scales and zero point 0, the layout
ai-edge-quantizer's ``dynamic_wi4_afp32`` recipe produces. TFLite's quantizer cannot recover a
grid with a real offset, so it is stored as for ExecuTorch: snapped (the default), or exactly with one
extra output row per grid for its offset (``int_grid="exact"``, :class:`targets.base.OffsetLinear`). The weights
are found by value: the float model holds exactly ``codes * scale`` for each stored Linear
(:meth:`targets.base.PalettizedWeight.stored_weight`).

LiteRT's XNNPACK delegate runs these hybrid FULLY_CONNECTED ops with int8 activations quantized per
row (asymmetric), like ExecuTorch, so both share :func:`targets.base.dynamic_int8_linears` as their
simulation. CONV_2D filters are INT8 codes with per-channel scales behind a DEQUANTIZE by default
(:func:`_with_int8_convolutions`; ``conv_weights="float"`` keeps fp32 filters), which the delegate unpacks
at load to the exact fp32 weight; the convolutions and everything else compute in fp32. Several tile sizes
(``TFLiteConfig.tiles``) are one signature each in the same file (:func:`signature_name`), sharing the
weights' buffers. 2-bit grids in the exact form are INT2 (four codes per byte, :meth:`TFLiteTarget.container_for`),
which LiteRT's builtin kernel and XNNPACK delegate run; snapped 2-bit grids and 3-bit ones are INT4 (a snapped
2-bit grid would have to move onto ``l = -2 s``, and no runtime has a 3-bit type; docs/runtime_limits/sub_byte_storage.md).
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from targets.base import (
    ChannelGrid,
    IntegerTarget,
    PalettizedWeight,
    StoredConstant,
    TargetError,
    export_copy,
    match_channel_grids,
    match_stored_weights,
    offset_rows,
    quiet_tools,
    tensor_io,
    with_offset_rows,
)
from targets.config import IntGrid
from targets.flatbuffer_sharing import packed

__all__ = ["TFLiteTarget", "pack_codes", "stored_constants", "stored_convolutions", "unpack_codes"]


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Signed ``bits``-bit codes (2 or 4) -> bytes, ``8 // bits`` per byte, the first in the lowest bits (TFLite's INT4
    and INT2 layout, ``UnpackPackedIntToInt8`` in LiteRT's ``tflite/kernels/internal/portable_tensor_utils.cc``)."""
    per_byte = 8 // bits
    flat = (codes.reshape(-1).astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8)
    flat = np.append(flat, np.zeros(-flat.size % per_byte, np.uint8)).reshape(-1, per_byte)
    return np.bitwise_or.reduce(flat << (bits * np.arange(per_byte, dtype=np.uint8)), axis=1).astype(np.uint8)


def unpack_codes(packed: np.ndarray, count: int, bits: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`: ``count`` signed codes in [-2^(bits-1), 2^(bits-1) - 1] (int16)."""
    fields = (packed[:, None] >> (bits * np.arange(8 // bits, dtype=np.uint8))) & ((1 << bits) - 1)
    codes = fields.reshape(-1)[:count].astype(np.int16)
    return np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)


class UnfoldedLayerNorm(nn.Module):
    """LayerNorm whose scale stays a runtime MUL instead of being folded into the next FULLY_CONNECTED.

    The TFLite converter folds a constant per-channel ``* gamma`` into the following weight
    (``W diag(gamma)``), which would move fc1's weights off their grid. Adding ``0 * x[:1, :1, :1]``
    (one element whatever the batch) to ``gamma`` makes it depend on the input, so the converter keeps
    the MUL (3 tiny ops per norm). ``x[..., :1, :1]`` kept the batch: in window chunks (a batch of 64
    windows) the converter stored each gamma broadcast to 64 x 1 x 60, 737 KB at x4.
    """

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.shape, self.weight, self.bias, self.eps = norm.normalized_shape, norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.weight + x[(slice(0, 1),) * x.dim()] * 0.0
        return F.layer_norm(x, self.shape, None, None, self.eps) * gamma + self.bias


# The tools' own switches for a quiet conversion: litert-torch's progress tree (read on every call), and absl's
# INFO lines from the TFLite converter ("Estimated count of arithmetic ops", twice per build), whose level the
# converter reads from TF_CPP_MIN_LOG_LEVEL when litert-torch is first imported: that first setting stays for the
# process. Both are restored in the environment after each conversion.
_QUIET_CONVERSION = {"LITERT_TORCH_SHOW_PROGRESS": "n", "TF_CPP_MIN_LOG_LEVEL": "1"}


DEFAULT_SIGNATURE = "serving_default"  # runs the build's own tile: subgraph 0, what Interpreter.invoke and the apps run


def signature_name(tile: int, first: bool) -> str:
    """The signature that runs ``tile``: :data:`DEFAULT_SIGNATURE` for the build's own (``first``), else ``tile_<n>``."""
    return DEFAULT_SIGNATURE if first else f"tile_{tile}"


def _convert(models: dict[int, nn.Module], path: Path) -> float:
    """Float TFLite flatbuffer with one signature per tile size (``models``: tile -> graph frozen for it, the build's
    own first), quietly (:data:`_QUIET_CONVERSION`); returns the seconds it took.

    litert-torch lowers the signatures together and stores equal constants once, so the sizes share the weights.
    """
    saved = {name: os.environ.get(name) for name in _QUIET_CONVERSION}
    os.environ.update(_QUIET_CONVERSION)
    try:
        import litert_torch

        start = time.perf_counter()
        converter = litert_torch.Converter()
        for i, (tile, model) in enumerate(models.items()):
            converter.signature(signature_name(tile, i == 0), model.eval(), (torch.rand(1, 3, tile, tile),))
        converter.convert().export(str(path))
        return time.perf_counter() - start
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _without_inner_tensor_names(flatbuffer) -> None:
    """Drop the names of every tensor but the inputs and outputs (in place).

    litert-torch names each tensor after its module path (``srcore.model.SwinIR/srcore.model.RSTB_3/...;1``):
    400 KB of the x4 model's 2.1 MB that no runtime reads. The graph's inputs and outputs keep their
    names, and the signature (which refers to tensors by index) is untouched, so the interpreter's
    input/output details and signature runners work as before.
    """
    for graph in flatbuffer.subgraphs:
        kept = set(graph.inputs) | set(graph.outputs)
        for index, tensor in enumerate(graph.tensors):
            if index not in kept:
                tensor.name = None


def _without_empty_quantization(flatbuffer) -> None:
    """Drop the empty quantization table litert-torch gives every float tensor (in place): 16 KB at x4, read by nothing."""
    for graph in flatbuffer.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if q is not None and all(getattr(q, field) is None for field in ("scale", "zeroPoint", "min", "max", "details")):
                tensor.quantization = None


def _lower_flatbuffer(models: dict[int, nn.Module], artifact: Path, weights: list[PalettizedWeight],
                      convs: Sequence[ChannelGrid] = (), container: str = "int4") -> tuple[float, int, dict[str, int]]:
    """Convert ``models`` (tile -> graph, one signature each), store ``weights`` as ``container`` codes (INT4 or
    INT2), ``convs`` as INT8 (none for the FP32 baseline) and constants a narrower type holds exactly in it, drop
    inner names and empty quantization tables, write ``artifact`` with equal vectors shared.

    Artifact and baseline go through the same steps, so their sizes compare honestly. Returns the
    conversion seconds, how many FULLY_CONNECTED weights were packed and how many constants INT8 or FLOAT16
    (:func:`_with_narrow_constants`).
    """
    with quiet_tools(), tempfile.TemporaryDirectory() as tmp:
        from ai_edge_litert.tools import flatbuffer_utils  # inside quiet_tools, as before (tests/test_build_quiet.py)

        float_path = Path(tmp) / "float.tflite"
        seconds = _convert(models, float_path)
        flatbuffer = flatbuffer_utils.read_model(str(float_path))
        replaced = _with_packed_weights(flatbuffer, weights, container)
        _with_int8_convolutions(flatbuffer, convs)
        narrowed = _with_narrow_constants(flatbuffer)
        _without_inner_tensor_names(flatbuffer)
        _without_empty_quantization(flatbuffer)
        _write(flatbuffer, artifact)
    return seconds, replaced, narrowed


def _write(flatbuffer, path: Path) -> None:
    """Write the model object to ``path`` as ``flatbuffer_utils.write_model`` does, but each distinct vector and
    string once (:func:`targets.flatbuffer_sharing.packed`): the per-channel zero points (int64, all 0) of every INT4 weight
    and the tensors' equal shapes become one vector each (81 KB of the x4 W4 file), and a further signature's
    row scales the first one's. The interpreter's output is unchanged.
    """
    import sys

    if sys.byteorder != "little":
        raise TargetError("writing a .tflite needs a little-endian host (TFLite's byte order)")
    path.write_bytes(packed(flatbuffer, b"TFL3"))


def _fully_connected_weights(graph, flatbuffer):
    """The weight tensor of every FULLY_CONNECTED in ``graph`` (a subgraph of ``flatbuffer``)."""
    from ai_edge_litert import schema_py_generated as schema

    for op in graph.operators:
        if flatbuffer.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED:
            yield graph.tensors[op.inputs[1]]


# The integer containers a FULLY_CONNECTED weight is stored in: name -> (TensorType, bits per code).
_PACKED = {"int4": (17, 4), "int2": (19, 2)}  # schema.TensorType.INT4, INT2
_BITS = dict(_PACKED.values())  # TensorType -> bits per code


def _with_packed_weights(flatbuffer, weights: list[PalettizedWeight], container: str) -> int:
    """Rewrite every float FULLY_CONNECTED weight that equals one of ``weights`` as ``container`` codes (INT4 or INT2),
    in every subgraph (a buffer the tile sizes share is packed once); return how many Linears."""
    from ai_edge_litert import schema_py_generated as schema

    tensor_type, bits = _PACKED[container]

    by_shape: dict[tuple[int, ...], list[tuple[PalettizedWeight, np.ndarray]]] = {}
    for w in weights:
        stored = w.stored_weight().numpy()
        by_shape.setdefault(stored.shape, []).append((w, stored))
    packed: dict[int, tuple[str, np.ndarray]] = {}  # buffer -> (Linear, scales) of the codes it now holds
    for graph in flatbuffer.subgraphs:
        done = set()
        for tensor in _fully_connected_weights(graph, flatbuffer):
            if tensor.type != schema.TensorType.FLOAT32:
                continue
            if tensor.buffer not in packed:
                buffer = flatbuffer.buffers[tensor.buffer]
                values = np.frombuffer(bytes(buffer.data), dtype=np.float32).reshape(tuple(tensor.shape))
                w = next((w for w, stored in by_shape.get(values.shape, []) if np.array_equal(stored, values)), None)
                if w is None or w.path in done:
                    continue
                codes, scales = w.stored()
                buffer.data = pack_codes(codes.numpy(), bits)
                packed[tensor.buffer] = (w.path, scales.numpy())
            path, scales = packed[tensor.buffer]
            tensor.type = tensor_type
            tensor.quantization = _quantization(scales)
            done.add(path)
        missing = [w.path for w in weights if w.path not in done]
        if missing:
            raise TargetError(f"{len(missing)} calibrated Linears have no float FULLY_CONNECTED weight to replace "
                              f"(first: {missing[0]})")
    return len({path for path, _ in packed.values()})


def _ohwi(weight: torch.Tensor) -> np.ndarray:
    """A (out, in, kh, kw) convolution weight in TFLite's CONV_2D filter layout (out, kh, kw, in)."""
    return weight.permute(0, 2, 3, 1).contiguous().numpy()


def _quantization(scales: np.ndarray):
    """Per-output-channel quantization parameters with zero point 0 (the layout XNNPACK and the kernels read)."""
    from ai_edge_litert import schema_py_generated as schema

    params = schema.QuantizationParametersT()
    params.scale = scales.astype(np.float32)  # numpy vectors: _write stores equal ones once
    params.zeroPoint = np.zeros(len(scales), np.int64)
    params.quantizedDimension = 0
    return params


def _operator_code(flatbuffer, builtin: int, version: int) -> int:
    """Index of ``builtin``'s operator code in the model, added if the model has none yet."""
    from ai_edge_litert import schema_py_generated as schema

    for index, code in enumerate(flatbuffer.operatorCodes):
        if code.builtinCode == builtin:
            code.version = max(code.version, version)
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
    flatbuffer.operatorCodes.append(code)
    return len(flatbuffer.operatorCodes) - 1


def _conv_filters(graph, flatbuffer):
    """The filter tensor index of every CONV_2D in ``graph`` (a subgraph of ``flatbuffer``)."""
    from ai_edge_litert import schema_py_generated as schema

    for op in graph.operators:
        if flatbuffer.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D:
            yield op.inputs[1]


def _with_int8_convolutions(flatbuffer, convs: Sequence[ChannelGrid]) -> None:
    """Store every CONV_2D filter that equals one of ``convs`` as INT8 codes + per-channel scales behind a DEQUANTIZE.

    The filter tensor keeps its index and becomes the DEQUANTIZE's float32 output; a new INT8 tensor
    holds the codes. LiteRT's XNNPACK delegate unpacks such a static DEQUANTIZE once, at load
    (google-ai-edge/LiteRT@f67457790c9c ``tflite/delegates/xnnpack/xnnpack_delegate.cc:7299``, "Prepare to
    unpack FP16/INT8 tensors", and ``:7573``, ``PerChannelDequantizeInt8``), to ``scale * code`` in float32,
    which equals the simulation's weight exactly (an fp16 scale times a code below 128 is exact in
    float32): the convolution itself stays fp32.
    """
    from ai_edge_litert import schema_py_generated as schema

    if not convs:
        return
    expected = [(g, _ohwi(g.weight)) for g in convs]
    dequantize = _operator_code(flatbuffer, schema.BuiltinOperator.DEQUANTIZE, 5)  # v5: per-channel INT8 input
    converted: dict[int, ChannelGrid] = {}  # buffer -> the grid whose codes it now holds (tile sizes share buffers)
    for graph in flatbuffer.subgraphs:
        done, unpack = set(), []
        for index in _conv_filters(graph, flatbuffer):
            tensor = graph.tensors[index]
            if tensor.type != schema.TensorType.FLOAT32 or not tensor.buffer:
                continue
            if tensor.buffer not in converted:
                values = np.frombuffer(bytes(flatbuffer.buffers[tensor.buffer].data), dtype=np.float32)
                g = next((g for g, w in expected if w.size == values.size and np.array_equal(w.reshape(-1), values)), None)
                if g is None or g.path in done:
                    continue
                flatbuffer.buffers[tensor.buffer].data = _ohwi(g.codes).reshape(-1).view(np.uint8)
                converted[tensor.buffer] = g
            g = converted[tensor.buffer]
            unpack.append(_dequantized(graph, index, schema.TensorType.INT8, _quantization(g.scales.numpy()), dequantize))
            done.add(g.path)
        missing = [g.path for g in convs if g.path not in done]
        if missing:
            raise TargetError(f"{len(missing)} convolutions have no float CONV_2D filter to replace (first: {missing[0]})")
        graph.operators[:0] = unpack  # their inputs are constants: first in execution order


def _dequantized(graph, index: int, dtype: int, quantization, dequantize: int):
    """Make tensor ``index`` of ``graph`` the output of a DEQUANTIZE (returned, to be inserted) whose input is a new
    ``dtype`` tensor on the same buffer, which the caller has rewritten to hold the codes."""
    from ai_edge_litert import schema_py_generated as schema

    tensor = graph.tensors[index]
    codes = schema.TensorT()
    codes.shape, codes.type, codes.buffer, codes.quantization = list(tensor.shape), dtype, tensor.buffer, quantization
    tensor.buffer = 0  # buffer 0 is the empty one: the constant is now computed
    graph.tensors.append(codes)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = dequantize, [len(graph.tensors) - 1], [index]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.DequantizeOptions, schema.DequantizeOptionsT()
    return op


_MIN_NARROW_ELEMENTS = 256  # below this a DEQUANTIZE op and its tensor outweigh the bytes saved


def _narrow_type(values: np.ndarray) -> int | None:
    """The narrowest type that holds every float32 value exactly: INT8 (scale 1) for integers in [-128, 127], else
    FLOAT16 for values fp16 represents exactly, else None."""
    from ai_edge_litert import schema_py_generated as schema

    if np.all(values == np.round(values)) and values.min() >= -128 and values.max() <= 127:
        return schema.TensorType.INT8
    if np.array_equal(values.astype(np.float16).astype(np.float32), values):
        return schema.TensorType.FLOAT16
    return None


def _with_narrow_constants(flatbuffer) -> dict[str, int]:
    """Store every float32 constant of at least :data:`_MIN_NARROW_ELEMENTS` values that a narrower type holds exactly
    (:func:`_narrow_type`) in that type behind a DEQUANTIZE; return how many tensors became INT8 and FLOAT16.

    Lossless: ``1.0 * code`` and an fp16 value widened are the values themselves. At x4 the INT8 ones
    are one-hots ({0, 1}: the bias expansion's offsets, the mask's token regions and window choice); the FLOAT16 one is the
    bias tables when the build rounds them (``TFLiteConfig.bias_tables``). The XNNPACK delegate unpacks
    a static INT8 or FP16 DEQUANTIZE once, at load (xnnpack_delegate.cc, "Prepare to unpack FP16/INT8
    tensors"); the reference kernels dequantize them the same way.
    """
    from ai_edge_litert import schema_py_generated as schema

    versions = {schema.TensorType.INT8: 2, schema.TensorType.FLOAT16: 3}  # DEQUANTIZE's version for that input
    numpy_types = {schema.TensorType.INT8: np.int8, schema.TensorType.FLOAT16: np.float16}
    counts = {schema.TensorType.INT8: 0, schema.TensorType.FLOAT16: 0}
    narrowed: dict[int, int] = {}  # buffer -> the type it now holds (tile sizes share buffers)
    for graph in flatbuffer.subgraphs:
        unpack = []
        for index, tensor in enumerate(list(graph.tensors)):
            data = flatbuffer.buffers[tensor.buffer].data if tensor.buffer else None
            if tensor.type != schema.TensorType.FLOAT32 or data is None:
                continue
            if tensor.buffer not in narrowed:
                values = np.frombuffer(bytes(data), dtype=np.float32)
                dtype = _narrow_type(values) if values.size >= _MIN_NARROW_ELEMENTS else None
                if dtype is None:
                    continue
                flatbuffer.buffers[tensor.buffer].data = values.astype(numpy_types[dtype]).view(np.uint8)
                narrowed[tensor.buffer] = dtype
            dtype = narrowed[tensor.buffer]
            dequantize = _operator_code(flatbuffer, schema.BuiltinOperator.DEQUANTIZE, versions[dtype])
            quantization = None
            if dtype == schema.TensorType.INT8:
                quantization = schema.QuantizationParametersT()
                quantization.scale, quantization.zeroPoint = np.ones(1, np.float32), np.zeros(1, np.int64)
            unpack.append(_dequantized(graph, index, dtype, quantization, dequantize))
            counts[dtype] += 1
        graph.operators[:0] = unpack  # their inputs are constants: first in execution order
    return {"integer_constants_int8": counts[schema.TensorType.INT8], "fp16_constants": counts[schema.TensorType.FLOAT16]}


def stored_convolutions(flatbuffer, graph) -> list[tuple[np.ndarray, np.ndarray]]:
    """(codes (out, in, kh, kw) int8, scales (out,)) of every CONV_2D filter of ``graph`` (a subgraph of ``flatbuffer``)
    stored as INT8 behind a DEQUANTIZE."""
    from ai_edge_litert import schema_py_generated as schema

    producers = {op.outputs[0]: op for op in graph.operators
                 if flatbuffer.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.DEQUANTIZE}
    found = []
    for index in _conv_filters(graph, flatbuffer):
        if index not in producers:
            continue
        tensor = graph.tensors[producers[index].inputs[0]]
        q = tensor.quantization
        if tensor.type != schema.TensorType.INT8 or any(q.zeroPoint) or q.quantizedDimension != 0:
            raise TargetError("a CONV_2D filter is dequantized from other than per-channel INT8 with zero point 0")
        codes = np.asarray(flatbuffer.buffers[tensor.buffer].data, dtype=np.uint8).view(np.int8)
        found.append((codes.reshape(tuple(tensor.shape)).transpose(0, 3, 1, 2), np.asarray(q.scale, dtype=np.float32)))
    return found


# numpy dtypes of the TFLite tensor types a float constant can have here.
_FLOATS = {0: np.float32, 1: np.float16}  # TensorType FLOAT32, FLOAT16


def stored_constants(artifact: Path) -> list[StoredConstant]:
    """Every constant buffer of a .tflite, once (tile sizes share them); INT4/INT2 weights and their quantization
    parameters with their component.

    A quantized tensor's scales (float32) and zero points (int64) live in the flatbuffer's
    quantization table, not in a buffer: they count as ``linear scales and tables`` (or
    ``convolutions`` for an INT8 CONV_2D filter), each distinct vector once, as :func:`_write` stores them.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    flatbuffer = flatbuffer_utils.read_model(str(artifact))
    found, seen, vectors = [], set(), set()  # vectors: (dtype, bytes) of the quantization vectors counted
    for tensor in (t for graph in flatbuffer.subgraphs for t in graph.tensors):
        data = flatbuffer.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            continue
        data, first = np.asarray(data, dtype=np.uint8), tensor.buffer not in seen
        seen.add(tensor.buffer)
        exact_int8 = tensor.type == schema.TensorType.INT8 and tensor.quantization and len(tensor.quantization.scale) == 1
        if tensor.type in _BITS or (tensor.type == schema.TensorType.INT8 and not exact_int8 and tensor.quantization):
            weights, tables = (("linear weights", "linear scales and tables") if tensor.type in _BITS
                               else ("convolutions", "convolutions"))
            if first:
                found.append(StoredConstant(data.size, component=weights))
            for vector in (np.asarray(tensor.quantization.scale, np.float32), np.asarray(tensor.quantization.zeroPoint, np.int64)):
                if (vector.dtype.str, vector.tobytes()) not in vectors:
                    vectors.add((vector.dtype.str, vector.tobytes()))
                    found.append(StoredConstant(vector.nbytes, component=tables))
        elif not first:
            continue
        elif exact_int8:  # an integer-valued constant (_with_narrow_constants): recognised by its float values
            found.append(StoredConstant(data.size, data.view(np.int8).astype(np.float32) * tensor.quantization.scale[0]))
        elif tensor.type in _FLOATS:
            found.append(StoredConstant(data.size, data.view(_FLOATS[tensor.type])))
        else:
            found.append(StoredConstant(data.size, component="other constants"))
    return found


class TFLiteTarget(IntegerTarget):
    name = "tflite"
    extension = ".tflite"
    simulation = ("PyTorch fp32, weights codes*scale, Linear inputs dynamic int8 per token (hybrid FULLY_CONNECTED), "
                  "bias tables as stored (TFLiteConfig.bias_tables)")
    runtime = "LiteRT interpreter (ai-edge-litert) with its XNNPACK delegate, this host's CPU"
    runtime_modules = ("ai_edge_litert.interpreter",)

    def container_for(self, bits: int) -> str:
        """INT2 for 2-bit grids in the exact form, whose codes ``k - 2`` fill [-2, 1] and whose offset rows hold
        codes +-1; int4 otherwise (a snapped 2-bit grid would have to move onto ``l = -2 s``)."""
        return "int2" if bits == 2 and self.config.int_grid is IntGrid.EXACT else self.container

    def lower(self, deploy: nn.Module, weights: list[PalettizedWeight], tile: int, artifact: Path,
              convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        self.require_codes(weights)
        self.require_convs(convs)
        deploy = self.as_stored(deploy)
        container = self.container_for(weights[0].bits) if weights else self.container
        models = {size: with_offset_rows(export_copy(deploy, size, UnfoldedLayerNorm, self.config.window_chunk), weights)
                  for size in self._sizes(tile)}
        seconds, replaced, narrowed = _lower_flatbuffer(models, artifact, weights, convs, container)
        stored_bits = _PACKED[container][1]
        return {"deployment_target": "LiteRT / TFLite runtime, XNNPACK delegate (Android/iOS/Linux CPU)",
                **tensor_io(deploy, tile), "signatures": [signature_name(size, size == tile) for size in models],
                "conversion_seconds": round(seconds, 1), "packed_fully_connected": replaced, **narrowed,
                "bias_tables": self.config.bias_tables.value, "window_chunk": self.config.window_chunk,
                "activations": f"fp32; FULLY_CONNECTED: dynamic int8 per row x INT{stored_bits} per-channel weights "
                               "(hybrid)",
                "stored_bits": stored_bits}

    def lower_baseline(self, deploy: nn.Module, tile: int, artifact: Path) -> dict[str, Any]:
        models = {size: export_copy(deploy, size, UnfoldedLayerNorm, self.config.window_chunk)  # as the artifact
                  for size in self._sizes(tile)}
        seconds, _, _ = _lower_flatbuffer(models, artifact, [])
        return {"conversion_seconds": round(seconds, 1)}

    def verify(self, artifact: Path, weights: list[PalettizedWeight], convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        from ai_edge_litert.tools import flatbuffer_utils

        flatbuffer = flatbuffer_utils.read_model(str(artifact))
        float_fc = 0
        for graph in flatbuffer.subgraphs:  # every tile size's signature holds every grid (buffers shared in the file)
            stored, types, buffers = [], collections.Counter(), set()  # a buffer per Linear, an op per window chunk
            for tensor in _fully_connected_weights(graph, flatbuffer):
                bits = _BITS.get(tensor.type)
                if bits is None:
                    float_fc += 1
                    continue
                q = tensor.quantization
                if any(z != 0 for z in q.zeroPoint) or q.quantizedDimension != 0:
                    raise TargetError(f"{tensor.name!r}: INT{bits} weight with a non-zero zero point or per-column scales")
                count = int(np.prod(tensor.shape))
                codes = unpack_codes(np.asarray(flatbuffer.buffers[tensor.buffer].data, dtype=np.uint8), count, bits)
                stored.append((codes.reshape(tuple(tensor.shape)), np.asarray(q.scale, dtype=np.float32)))
                if tensor.buffer not in buffers:
                    types[f"INT{bits} (codes k+z, zero point 0)"] += 1
                    buffers.add(tensor.buffer)
            match_stored_weights(weights, stored)
            convolutions = stored_convolutions(flatbuffer, graph)
            match_channel_grids(convs, convolutions)
        return {
            "signatures_verified": [sig.signatureKey.decode() for sig in flatbuffer.signatureDefs],
            "int8_convolutions": len(convolutions),
            "quantized_linears": len(weights),
            "palettized_linears": len(buffers),
            "index_dtypes": dict(types),  # of the last signature (each holds every grid)
            "offset_rows": offset_rows(weights),
            "float_fully_connected": float_fc,  # over every signature
            "stored_equals_calibrated": "exact (integer codes and fp32 row scales read back from the .tflite)",
        }

    def stored_constants(self, artifact: Path, weights: list[PalettizedWeight]) -> list[StoredConstant]:
        return stored_constants(artifact)

    def runner(self, artifact: Path, threads: int | None = None, tile: int | None = None):
        """LR tile -> SR tile through the LiteRT interpreter (XNNPACK delegate) with ``threads`` threads.

        ``tile``: the signature ``tile_<tile>`` where the .tflite has one, else the default one (the build's own tile).
        """
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(artifact), num_threads=threads)
        names = interpreter.get_signature_list()
        wanted = signature_name(tile, first=False)
        name = wanted if wanted in names else DEFAULT_SIGNATURE
        signature = interpreter.get_signature_runner(name)
        (key,), (out,) = signature.get_input_details(), signature.get_output_details()

        def run(lr: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(signature(**{key: lr.numpy().astype(np.float32, copy=False)})[out].copy())

        return run

    def graph_summary(self, artifact: Path) -> dict[str, Any]:
        """Operators by builtin name over every signature's subgraph, the highest tensor rank, the ops on a tensor above
        rank 4, and the ops LiteRT's GPU delegate would leave on the CPU.

        ``gpu_delegate_rejects`` counts ops by the rule that rejects them, read from the delegate's own
        code (google-ai-edge/LiteRT@f67457790c9c; docs/runtime_limits/rank_limits.md): a tensor of rank
        >= 5 among an op's inputs or outputs (``tflite/delegates/gpu/common/model_builder.cc:3062``),
        TRANSPOSE above op version 4 (``model_builder.cc:2773``; the converter gives version 6 to all
        TRANSPOSEs once one is above 5-D), SLICE/STRIDED_SLICE whose input is not 3-D or 4-D
        (``tflite/tools/versioning/gpu_compatibility.cc:968, 1029``). LiteRT's bundled analyzer does not
        run these checks, so this is the offline check; the delegate's log on a device is the real one.
        """
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        flatbuffer = flatbuffer_utils.read_model(str(artifact))
        names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        ops, rejects, above, ranks = collections.Counter(), collections.Counter(), collections.Counter(), [0]
        for graph in flatbuffer.subgraphs:  # one per tile size
            rank = [len(t.shape) if t.shape is not None else 0 for t in graph.tensors] + [0]  # [-1]: an absent input
            ranks += rank
            for op in graph.operators:
                code = flatbuffer.operatorCodes[op.opcodeIndex]
                name = names[code.builtinCode]
                ops[name] += 1
                if any(rank[i] >= 5 for i in [*op.inputs, *op.outputs]):
                    rejects["a tensor of rank >= 5"] += 1
                    above[name] += 1
                if name == "TRANSPOSE" and code.version > 4:
                    rejects["TRANSPOSE op version > 4"] += 1
                if name in ("SLICE", "STRIDED_SLICE") and rank[op.inputs[0]] not in (3, 4):
                    rejects[f"{name} input not 3-D or 4-D"] += 1
        return {"ops": dict(ops.most_common()), "graphs": len(flatbuffer.subgraphs), "max_rank": max(ranks),
                "above_rank_4": dict(above.most_common()), "gpu_delegate_rejects": dict(rejects)}

    def op_profile(self, artifact: Path, example: torch.Tensor, runs: int) -> str:
        return ("ai-edge-litert 2.3 has no per-operator profiler in Python (deployment.md §6.4); on a phone use "
                "benchmark_model --enable_op_profiling (apps/android/profile_android.py)")

    def tool_versions(self) -> dict[str, str]:
        return {p: metadata.version(p) for p in ("litert-torch", "ai-edge-litert")} | {"torch": torch.__version__}

