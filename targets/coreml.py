"""Core ML target: an ML program (.mlpackage, iOS18 / macOS15) whose quantized linears are exact lookup tables.

Every quantized Linear weight becomes a ``constexpr_lut_to_dense`` whose table *is* the calibrated
grid ``l + k (u - l) / (2^b - 1)`` (uint2/uint3/uint4 indices; one table per q/k/v row group of
``attn.qkv``). It is built by coremltools' own PyTorch route: the fake-quantized weight plus
``_COREML_/weight/lut`` and ``_COREML_/weight/compression_type`` buffers on the module
(../shared/docs/deployment.md §4.3, route A); coremltools then picks, for every weight value, the
table entry it equals. Convolutions are int8 codes with fp16 channel scales by the same route
(``constexpr_blockwise_shift_scale``; ``conv_weights="float"``: fp16); biases and activations stay fp16
(``compute_precision``).

Core ML cannot run on Linux, so :meth:`CoreMLTarget.verify` reads the saved package back (MIL
program and weight file), decompresses every table and requires it to equal the fp16 cast of the
fake-quantized weight, value for value, and the table to equal the fp16 grid;
:meth:`CoreMLTarget.runner` executes the saved program with a MIL interpreter so that the build can
score the artifact itself. ``apps/ios/profile_coreml.py`` runs the artifact with Core ML on a Mac.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import importlib
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn

from calibration.deploy import DeployMode
from srcore.model import WindowAttention
from targets.base import (
    ChannelGrid,
    PalettizedWeight,
    StoredConstant,
    Target,
    TargetError,
    export_copy,
    match_channel_grids,
    quiet_tools,
    tensor_io,
)
from targets.coreml_mil import MilInterpreter, mil_program

__all__ = ["CoreMLTarget"]

INPUT_NAME, OUTPUT_NAME = "lr", "sr"
_LUT = "_COREML_/weight/lut"
_COMPRESSION = "_COREML_/weight/compression_type"
_PALETTIZATION, _QUANTIZATION = 2, 3  # coremltools' compression-type codes: lookup table, linear quantization
_QUANTIZATION_BITS, _QUANTIZATION_SCALE = "_COREML_/weight/quantization_n_bits", "_COREML_/weight/quantization_scale"


# coremltools' modules that draw progress bars while converting and compressing, and the name they call tqdm by.
_PROGRESS_BARS = (("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
                  ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
                  ("coremltools.optimize.coreml._post_training_quantization", "tqdm"),
                  ("coremltools.optimize.coreml._quantization_passes", "tqdm"))


@contextlib.contextmanager
def _no_progress_bars():
    """coremltools draws a bar per pass pipeline (about ten per build) and has no switch for it; tqdm reads its
    ``TQDM_DISABLE`` setting only at import, so the modules' own tqdm name is pointed at a disabled one meanwhile."""
    from tqdm import tqdm

    with contextlib.ExitStack() as patches:
        for module, name in _PROGRESS_BARS:
            patches.enter_context(mock.patch.object(importlib.import_module(module), name,
                                                    functools.partial(tqdm, disable=True)))
        yield


_INLINE_BELOW_ELEMENTS = 256


@contextlib.contextmanager
def _small_constants_inline():
    """Write constants under 256 elements, and all-zero ones, into the program instead of weight.bin.

    coremltools stores every constant of 10 or more elements in weight.bin behind a 64-byte header,
    padded to 64 bytes: the biases, LayerNorm affines, small tables and channel scales of SwinIR-light
    (253 of 278 blobs at x4) spent 48 KB of the W4 package on headers and padding. Inline they cost their bytes, and equal ones
    merge (:func:`_compact_program`); all-zero ones are the biases coremltools gives bias-free linears,
    which :func:`_compact_program` then drops. The value is the same either way (an immediate tensor,
    which coremltools already uses below 10 elements). coremltools has no option for the threshold, so
    its exporter's test is wrapped meanwhile (pinned coremltools 9.0; the compaction tests fail if the
    hook stops applying).
    """
    from coremltools.converters.mil.backend.mil import load

    original = load.should_use_weight_file

    def should_use_weight_file(val, *args, **kwargs) -> bool:
        return original(val, *args, **kwargs) and np.size(val) >= _INLINE_BELOW_ELEMENTS and bool(np.any(val))

    with mock.patch.object(load, "should_use_weight_file", should_use_weight_file):
        yield


def _with_compression_buffers(deploy: nn.Module, weights: list[PalettizedWeight],
                              convs: Sequence[ChannelGrid]) -> nn.Module:
    """A copy of ``deploy`` with route-A buffers: one (groups, 1, 2^b, 1) table per quantized Linear, and
    per int8 convolution its bits and (out, 1) scales (coremltools recomputes the codes as ``round(w / s)``)."""
    model = copy.deepcopy(deploy)
    for w in weights:
        linear = model.get_submodule(w.path)
        linear.register_buffer(_COMPRESSION, torch.tensor([_PALETTIZATION]))
        linear.register_buffer(_LUT, w.grids().reshape(w.groups, 1, 2**w.bits, 1))
    for g in convs:
        conv = model.get_submodule(g.path)
        conv.register_buffer(_COMPRESSION, torch.tensor([_QUANTIZATION]))
        conv.register_buffer(_QUANTIZATION_BITS, torch.tensor(8))
        conv.register_buffer(_QUANTIZATION_SCALE, g.scales.view(-1, 1))
    model.register_buffer("_COREML_/metadata_version", torch.tensor(2))
    return model


_MIN_COMPACT_ELEMENTS = 4096
_PALETTE_BITS = (1, 2, 3, 4, 6, 8)  # index widths of an iOS18 constexpr_lut_to_dense: at most 256 entries


def _distinct_bit_patterns(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a float array and each element's index among them, compared bit for bit.

    Why bits and not floats: numpy 2.4.6 sorts float16 wrongly on CPUs with AVX512_ICL but not
    AVX512_SPR (``NPY_DISABLE_CPU_FEATURES=AVX512_SPR`` reproduces it on an SPR host): a float
    ``np.unique`` of the 64 px shift mask {0, -100} returns 8451 values there, and the package grew
    by 0.5 MB on such hosts. Integer sorting is not affected, and equal bits are equal values, so
    the table is exact and the decision the same on every host.

    Returns:
        ``(table, indices)``: the distinct values (``value.dtype``) and, per element of the
        flattened ``value``, its position in ``table``.
    """
    bits = value.reshape(-1).view(f"u{value.dtype.itemsize}")
    patterns, indices = np.unique(bits, return_inverse=True)
    return patterns.view(value.dtype), indices.reshape(-1)


def _palette_bits(value: np.ndarray) -> int | None:
    """Narrowest index width whose table holds every distinct value, or None (2 values -> 1, 225 -> 8)."""
    count = len(_distinct_bit_patterns(value)[0])
    return next((bits for bits in _PALETTE_BITS if count <= 2**bits), None)


def _exact_palette(bits: int):
    """A coremltools ``lut_function``: the group's distinct values padded to 2**bits, and its indices."""

    def lut_function(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        table, indices = _distinct_bit_patterns(value)
        padded = np.zeros(2**bits, dtype=value.dtype)
        padded[: len(table)] = table
        return padded, indices.astype(np.uint8)

    return lut_function


def _compact_derived_constants(mlmodel):
    """Store large constants with few distinct values as exact lookup tables (deployment.md §4.4).

    The export graph expands the biases and the mask from small tables (``SwinIR.freeze_shape``);
    what can still grow is the windows' (nW, k) one-hot choice of a mask pattern ({0, 1}: uint1, from 296 px
    tiles; the patterns themselves are stored as their tokens' regions, 3 x 64 x 4 values), and a graph whose
    biases were folded (at most 225 distinct values per head: uint8 indices per head) would be
    shrunk the same way. Where that saves bytes, they are palettized losslessly with tables of their
    distinct bit patterns (:func:`_distinct_bit_patterns`, the same decision on every host); each one
    is checked after the fact. Parameters (``p_*`` consts, e.g. the convs) are left alone.

    Returns:
        ``(mlmodel, summary)`` with the count and bytes of the compacted constants.
    """
    import coremltools.optimize.coreml as cto
    from coremltools.optimize._utils import lut_to_dense

    configs, originals = {}, {}
    for op in mlmodel._mil_program.functions["main"].operations:
        value = getattr(getattr(op, "val", None), "val", None) if op.op_type == "const" else None
        if op.name.startswith("p_") or not isinstance(value, np.ndarray) or value.size < _MIN_COMPACT_ELEMENTS:
            continue
        if value.dtype.kind != "f" or len(_distinct_bit_patterns(value)[0]) == 1:
            continue  # one value (the zero bias of the mask's linear): palettize_weights leaves no table for it
        whole = _palette_bits(value)
        if whole is not None and value.size * whole / 8 + 2**whole * value.itemsize < value.nbytes:
            configs[op.name] = cto.OpPalettizerConfig(mode="custom", lut_function=_exact_palette(whole),
                                                      granularity="per_tensor", weight_threshold=0)
        else:  # e.g. the (heads, N, N) bias: up to 225 values per head, more in all
            per_channel = [_palette_bits(channel) for channel in value] if value.ndim >= 2 else [None]
            if None in per_channel:
                continue
            bits = max(per_channel)
            if value.size * bits / 8 + len(value) * 2**bits * value.itemsize >= value.nbytes:
                continue  # a table per channel would outweigh the values (the stacked bias tables)
            configs[op.name] = cto.OpPalettizerConfig(mode="custom", lut_function=_exact_palette(bits),
                                                      granularity="per_grouped_channel", group_size=1,
                                                      channel_axis=0, weight_threshold=0)
        originals[op.name] = value
    if not configs:
        return mlmodel, {"constants": 0, "bytes_before": 0}
    compacted = cto.palettize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=configs))
    decoded = {op.name: lut_to_dense(op.indices.val, op.lut.val, None)
               for op in compacted._mil_program.functions["main"].operations if op.op_type == "constexpr_lut_to_dense"}
    for name, value in originals.items():
        matches = [v for key, v in decoded.items() if key.startswith(name)]
        if len(matches) != 1 or not np.array_equal(matches[0].reshape(value.shape), value):
            raise TargetError(f"compacting constant {name} changed its values")
    return compacted, {"constants": len(originals), "bytes_before": int(sum(v.nbytes for v in originals.values()))}


def _is_zero(value) -> bool:
    """Whether a const's value is an immediate tensor whose elements are all zero bits (fp32 -0.0 counts too)."""
    if not value.HasField("immediateValue"):
        return False
    tensor = value.immediateValue.tensor
    field = tensor.WhichOneof("value")
    return field is not None and not any(getattr(tensor, field).values)


def _compact_program(program) -> None:
    """Shrink an ML program's protobuf in place, losslessly: no zero biases, one const per distinct small value,
    short value names.

    coremltools writes every small constant (shapes, axes, permutations) as its own named const op
    and names each value after the PyTorch node it came from; at x4 that is 3705 ops and 598 KB of
    model.mlmodel, as large as the 4-bit weights. A ``linear``'s all-zero bias (coremltools adds one to
    every bias-free linear; the op's bias is optional) is dropped, with every const no op reads any more.
    Equal immediate consts are merged into the first, and every value is renamed ``v<hex>`` except the
    function's inputs and outputs and the decompressed weights (``constexpr_*`` ops, named
    ``p_<module path>_weight...``, by which :meth:`CoreMLTarget.verify` finds each one). Weights in
    weight.bin are untouched.
    """
    for function in program.functions.values():
        keep = {value.name for value in function.inputs}
        for block in function.block_specializations.values():
            keep |= set(block.outputs)
            keep |= {out.name for op in block.operations if op.type.startswith("constexpr_") for out in op.outputs}
            zeros = {op.outputs[0].name for op in block.operations if op.type == "const" and _is_zero(op.attributes["val"])}
            for op in block.operations:
                if op.type == "linear" and "bias" in op.inputs and any(b.name in zeros for b in op.inputs["bias"].arguments):
                    del op.inputs["bias"]
            read = keep | {binding.name for op in block.operations for argument in op.inputs.values()
                           for binding in argument.arguments if binding.WhichOneof("binding") == "name"}
            first, alias = {}, {}
            for op in block.operations:
                value = op.attributes["val"] if op.type == "const" else None
                if value is not None and value.HasField("immediateValue") and op.outputs[0].name not in keep:
                    alias[op.outputs[0].name] = first.setdefault(value.SerializeToString(), op.outputs[0].name)
            alias = {name: into for name, into in alias.items() if name != into}
            ops = [op for op in block.operations
                   if not (op.type == "const" and (op.outputs[0].name in alias or op.outputs[0].name not in read))]
            del block.operations[:]
            block.operations.extend(ops)
            names: dict[str, str] = {}

            def short(name: str) -> str:
                name = alias.get(name, name)
                if name in keep:
                    return name
                return names.setdefault(name, f"v{len(names):x}")

            for op in block.operations:
                for out in op.outputs:
                    out.name = short(out.name)
                if "name" in op.attributes:
                    strings = op.attributes["name"].immediateValue.tensor.strings.values
                    strings[0] = short(strings[0])
                for argument in op.inputs.values():
                    for binding in argument.arguments:
                        if binding.WhichOneof("binding") == "name":
                            binding.name = short(binding.name)


def _io_dtypes(spec) -> dict[str, str]:
    """Multi-array dtype of every model input and output, as numpy names (``float16``, ``float32``)."""
    from coremltools.proto import FeatureTypes_pb2

    names = {FeatureTypes_pb2.ArrayFeatureType.FLOAT16: "float16", FeatureTypes_pb2.ArrayFeatureType.FLOAT32: "float32"}
    return {f.name: names.get(f.type.multiArrayType.dataType, str(f.type.multiArrayType.dataType))
            for f in list(spec.description.input) + list(spec.description.output)}


def function_name(size: int, tile: int) -> str:
    """The package's function for LR tile side ``size``: ``main`` runs the build's own ``tile``."""
    return "main" if size == tile else f"tile_{size}"


def _content(op) -> tuple | None:
    """What a constant op stores (type, dtype, shape, bytes of each array input), for finding it in another function."""
    arrays = [v.val for v in op.inputs.values() if isinstance(getattr(v, "val", None), np.ndarray)]
    if op.op_type == "const" and isinstance(op.val.val, np.ndarray):
        arrays = [op.val.val]
    elif not op.op_type.startswith("constexpr_"):
        return None
    return (op.op_type, *((a.dtype.str, a.shape, a.tobytes()) for a in arrays))


def _op_name(path: str) -> str:
    """The MIL const name coremltools gives a module's weight (``p_`` + path with dots as underscores)."""
    return "p_" + path.replace(".", "_") + "_weight"


def _stored_int8_convs(ops: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """(codes, scales (out,)) of every int8 convolution weight (``constexpr_blockwise_shift_scale``) in the program."""
    found = []
    for op in ops:
        if op.op_type != "constexpr_blockwise_shift_scale":
            continue
        if op.offset is not None or op.data.val.dtype != np.int8:
            raise TargetError(f"{op.name}: stored as {op.data.val.dtype} with offset {op.offset}, expected int8 and none")
        found.append((op.data.val, op.scale.val.reshape(-1).astype(np.float32)))
    return found


class CoreMLTarget(Target):
    """Exact lookup tables for the quantized linears; options from :class:`targets.config.CoreMLConfig`."""

    name = "coreml"
    extension = ".mlpackage"
    bits = (2, 3, 4, 8)
    runtime = "MIL interpreter (targets.coreml_mil): the artifact's program, fp16 between ops, on this host"
    deploy_mode = DeployMode.FP16  # float activations (fp32 compute is closer to it than to A4 fake-quant)

    @property
    def compute_precision(self) -> str:
        return self.config.compute_precision.value

    def lower(self, deploy: nn.Module, weights: list[PalettizedWeight], tile: int, artifact: Path,
              convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        """One program per tile size: ``main`` runs ``tile``, a function ``tile_<n>`` each further size.

        Each size is converted on its own; several are then merged by coremltools' ``save_multifunction``,
        which stores equal constants (the palettized weights, the tables) once for all functions.
        """
        self.require_convs(convs)
        sizes = self._sizes(tile)
        if len(sizes) == 1:
            return self._convert(deploy, weights, tile, artifact, convs)
        with quiet_tools():
            import coremltools as ct
            from coremltools.models.utils import MultiFunctionDescriptor, save_multifunction

        with tempfile.TemporaryDirectory(prefix=".functions-", dir=artifact.parent) as parts:
            descriptor, described = MultiFunctionDescriptor(), {}
            for size in sizes:
                part = str(Path(parts) / f"{size}.mlpackage")
                described[size] = self._convert(deploy, weights, size, Path(part), convs)
                descriptor.add_function(part, "main", function_name(size, tile))
            descriptor.default_function_name = "main"
            merged = Path(parts) / "merged.mlpackage"
            with self._writing():
                save_multifunction(descriptor, str(merged))
                # The merge writes the program anew, with long names again: compacted once more.
                _, merged_bytes = self._save(ct.models.MLModel(str(merged), skip_model_load=True), artifact)
        return {**described[tile], "functions": {function_name(size, tile): size for size in sizes},
                "program_bytes": {str(size): d["program_bytes"] for size, d in described.items()}
                | {"merged": merged_bytes}}

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """coremltools quiet and without progress bars, writing small constants inline when compacting."""
        inline = _small_constants_inline() if self.config.compact_constants else contextlib.nullcontext()
        with quiet_tools(), _no_progress_bars(), inline:
            yield

    def _save(self, mlmodel, artifact: Path) -> tuple[Any, dict[str, int]]:
        """Write ``mlmodel`` to ``artifact``, its program compacted (:func:`_compact_program`) when configured;
        returns the saved spec and the program's bytes before and after."""
        import coremltools as ct

        spec = mlmodel.get_spec()
        program_bytes = {"before": spec.ByteSize()}
        if self.config.compact_constants:
            _compact_program(spec.mlProgram)
            program_bytes["after"] = spec.ByteSize()
        ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True).save(str(artifact))
        return spec, program_bytes

    def _convert(self, deploy: nn.Module, weights: list[PalettizedWeight], tile: int, artifact: Path,
                 convs: Sequence[ChannelGrid]) -> dict[str, Any]:
        """The package of one tile size (its function ``main``)."""
        # Frozen for the tile: the mask and biases expand in the graph from small tables (SwinIR.freeze_shape).
        model = _with_compression_buffers(export_copy(deploy, tile), weights, convs)
        example = torch.rand(1, 3, tile, tile)
        with quiet_tools():
            import coremltools as ct

        with self._writing():
            # A tile that is a multiple of the window (export_copy checks) needs no pad or crop: no alias op.
            program = torch.export.export(model, (example,)).run_decompositions({})
            precision = ct.precision.FLOAT16 if self.compute_precision == "fp16" else ct.precision.FLOAT32
            if self.compute_precision == "fp16" and self.config.fp32_ops:
                keep = set(self.config.fp32_ops)
                precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type not in keep)
            mlmodel = ct.convert(
                program, minimum_deployment_target=ct.target.iOS18, compute_precision=precision,
                inputs=[ct.TensorType(name=INPUT_NAME, shape=example.shape)], outputs=[ct.TensorType(name=OUTPUT_NAME)],
            )
            compacted = {"constants": 0, "bytes_before": 0}
            if self.config.compact_constants:
                mlmodel, compacted = _compact_derived_constants(mlmodel)
            mlmodel.short_description = "sr2bit SwinIR-light super-resolution, palettized weights"
            spec, program_bytes = self._save(mlmodel, artifact)
        io_types = _io_dtypes(spec)  # coremltools picks fp16 I/O for an fp16 iOS18 program
        return {
            "deployment_target": "iOS18 / macOS15 (ML program)",
            "compute_precision": self.compute_precision,
            "fp32_ops": list(self.config.fp32_ops),
            **tensor_io(deploy, tile, (io_types[INPUT_NAME], io_types[OUTPUT_NAME]), (INPUT_NAME, OUTPUT_NAME)),
            "activations": f"{self.compute_precision} (not quantized)",
            "compacted_constants": compacted,
            "program_bytes": program_bytes,
        }

    def verify(self, artifact: Path, weights: list[PalettizedWeight], convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        """Every function (tile size) of the package holds each weight as its exact table and indices."""
        program, spec = mil_program(artifact)
        found = {name: self._verify_function(list(function.operations), weights, convs)
                 for name, function in program.functions.items()}
        weight_file = Path(artifact) / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
        return {**found["main"], "functions": sorted(found), "spec_version": spec.specificationVersion,
                "weight_bin_bytes": weight_file.stat().st_size}

    def _verify_function(self, ops: list, weights: list[PalettizedWeight], convs: Sequence[ChannelGrid]) -> dict[str, Any]:
        with quiet_tools():
            from coremltools.converters.mil.mil import types
            from coremltools.optimize._utils import lut_to_dense

        luts = {op.name: op for op in ops if op.op_type == "constexpr_lut_to_dense"}
        dtype = np.float16 if self.compute_precision == "fp16" else np.float32
        checked, index_dtypes = [], collections.Counter()
        for w in weights:
            prefix = _op_name(w.path)
            found = [op for name, op in luts.items() if name.startswith(prefix)]
            if len(found) != 1:
                raise TargetError(f"{w.path}: expected one palettized weight {prefix}*, found {len(found)}")
            op = found[0]
            dense = lut_to_dense(op.indices.val, op.lut.val, None)
            expected = w.weight.numpy().astype(dtype)
            table = op.lut.val.reshape(w.groups, 2**w.bits)
            if dense.shape != expected.shape or not np.array_equal(dense, expected):
                bad = np.abs(dense.astype(np.float64) - expected) if dense.shape == expected.shape else None
                raise TargetError(f"{w.path}: decompressed weight differs from the fake-quantized one"
                                  + (f" (max |diff| {bad.max():.3g})" if bad is not None else f" (shape {dense.shape})"))
            if not np.array_equal(table, w.grids().numpy().astype(dtype)):
                raise TargetError(f"{w.path}: lookup table is not the calibrated grid")
            index_dtype = types.builtin_to_string(op.indices.dtype)
            if index_dtype != f"uint{w.bits}":
                raise TargetError(f"{w.path}: indices are {index_dtype}, expected uint{w.bits}")
            index_dtypes[index_dtype] += 1
            checked.append(w.path)
        int8_convs = _stored_int8_convs(ops)
        match_channel_grids(convs, int8_convs)
        return {
            "int8_convolutions": len(int8_convs),
            "palettized_linears": len(checked),
            "quantized_linears": len(weights),
            "index_dtypes": dict(index_dtypes),
            "lut_equals_grid": True,
            "decompressed_equals_fake_quant": f"exact ({np.dtype(dtype).name})",
            "op_counts": dict(collections.Counter(op.op_type for op in ops).most_common()),
        }

    def graph_summary(self, artifact: Path) -> dict[str, Any]:
        """MIL operations by type over every function, the highest rank of any value they produce (constants
        included), and the operations that read or write a value above rank 4, by type (the Neural Engine's
        layout is 4-D)."""
        program, _ = mil_program(artifact)
        ops = [op for function in program.functions.values() for op in function.operations]
        ranks = [len(out.shape) for op in ops for out in op.outputs if out.shape is not None]
        above = collections.Counter(
            op.op_type for op in ops
            if any(v.shape is not None and len(v.shape) > 4 for v in [*op.outputs, *op.inputs.values()]
                   if hasattr(v, "shape")))
        return {"ops": dict(collections.Counter(op.op_type for op in ops).most_common()), "max_rank": max(ranks),
                "above_rank_4": dict(above.most_common())}

    def stored_constants(self, artifact: Path, weights: list[PalettizedWeight]) -> list[StoredConstant]:
        """The saved program's constants: each lookup table with its packed indices, and each plain const not feeding one.

        The quantized linears' indices and tables are known by name (``p_<path>_weight``), int8
        convolutions by their op; every other table (compacted constants) is decoded and recognised by its values.
        A function (tile size) after the first adds only the constants no earlier one holds: weight.bin keeps
        one copy of each (``save_multifunction``); an equal small constant written into each function's
        program is then counted once, and its other copies fall to "graph and metadata".
        """
        program, _ = mil_program(artifact)
        linears = tuple(_op_name(w.path) for w in weights)
        found, earlier = [], set()
        for function in program.functions.values():
            held = [(op, _content(op)) for op in function.operations]
            found += self._function_constants([op for op, key in held if key not in earlier], linears)
            earlier |= {key for _, key in held}
        return found

    @staticmethod
    def _function_constants(ops: list, linears: tuple[str, ...]) -> list[StoredConstant]:
        with quiet_tools():
            from coremltools.converters.mil.mil import types
            from coremltools.optimize._utils import lut_to_dense

        found = []
        for op in ops:
            if op.op_type == "constexpr_lut_to_dense":
                indices, lut = op.indices.val, op.lut.val
                bits = int(types.builtin_to_string(op.indices.dtype).removeprefix("uint"))
                index_bytes = -(-indices.size * bits // 8)
                if op.name.startswith(linears):
                    found += [StoredConstant(index_bytes, component="linear weights"),
                              StoredConstant(lut.nbytes, component="linear scales and tables")]
                else:
                    found.append(StoredConstant(index_bytes + lut.nbytes, lut_to_dense(indices, lut, None)))
            elif op.op_type == "constexpr_blockwise_shift_scale":
                found.append(StoredConstant(op.data.val.nbytes + op.scale.val.nbytes, component="convolutions"))
            elif op.op_type == "const" and isinstance(op.val.val, np.ndarray):
                if all(child.op_type.startswith("constexpr_") for child in op.outputs[0].child_ops):
                    continue  # counted with the table it feeds
                found.append(StoredConstant(op.val.val.nbytes, op.val.val))
        return found

    def probe(self, deploy: nn.Module, crops: torch.Tensor) -> dict[str, Any]:
        """fp16 headroom of LayerNorm, attention logits and activations (:func:`fp16_headroom`)."""
        headroom = fp16_headroom(deploy, crops)
        warning = None
        if self.compute_precision == "fp16" and headroom["min_margin"] < FP16_MARGIN_WARNING:
            worst = min((k for k in headroom if isinstance(headroom[k], dict)), key=lambda k: headroom[k]["margin"])
            warning = (f"fp16 headroom is only {headroom['min_margin']:.1f}x ({worst} reaches "
                       f"{headroom[worst]['max']:.4g} of 65504) on the calibration crops; consider "
                       "CoreMLConfig(fp32_ops=('layer_norm', 'softmax')) (--fp32-ops) or compute_precision fp32")
        return {"fp16_headroom": headroom, "warning": warning}

    def runner(self, artifact: Path, threads: int | None = None, tile: int | None = None):
        """LR tile -> SR tile through the artifact's own program (Core ML cannot run here; see :mod:`targets.coreml_mil`).

        ``tile``: the function whose input has that side (default ``main``, the build's own tile).
        ``threads`` is accepted for the common interface: the interpreter uses torch's own threads.
        """
        interpreter = MilInterpreter(artifact, tile)

        def run(lr: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(interpreter(**{INPUT_NAME: lr.numpy()})[OUTPUT_NAME])

        return run

    def tool_versions(self) -> dict[str, str]:
        return {"coremltools": metadata.version("coremltools"), "torch": torch.__version__}



FP16_MAX = 65504.0
FP16_MARGIN_WARNING = 4.0  # below this factor of headroom the build warns


def fp16_headroom(deploy: nn.Module, crops: torch.Tensor) -> dict[str, Any]:
    """How far the largest fp16 intermediates of ``deploy`` on ``crops`` stay below 65504 (fp16's largest value).

    Core ML runs LayerNorm and softmax in fp16 on the GPU and Neural Engine; the MIL interpreter here
    computes inside an op in fp32, so it cannot see an overflow inside one. Measured in fp32 PyTorch:
    each LayerNorm input's sum of squares over channels (what a one-pass fp16 LayerNorm accumulates),
    every attention logit ``q k^T + bias`` before the mask, and every module's output.

    Returns:
        per quantity ``{"max", "margin"}`` (margin = 65504 / max), ``min_margin`` and the crops' shape.
    """
    peaks = {"layer_norm_sum_of_squares": 0.0, "attention_logit": 0.0, "activation": 0.0}
    queries: dict[nn.Module, torch.Tensor] = {}

    def norm_input(module, args):
        peaks["layer_norm_sum_of_squares"] = max(peaks["layer_norm_sum_of_squares"],
                                                 args[0].float().pow(2).sum(-1).max().item())

    def output(module, args, out):
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            peaks["activation"] = max(peaks["activation"], out.abs().max().item())

    def query(attention):
        return lambda module, args, out: queries.__setitem__(attention, out)

    def key(attention):
        def hook(module, args, out):
            heads, n = attention.num_heads, attention.window_size**2
            logits = torch.bmm(queries.pop(attention), out.transpose(1, 2)).view(-1, heads, n, n)
            logits = logits + attention.relative_position_bias()
            peaks["attention_logit"] = max(peaks["attention_logit"], logits.abs().max().item())
        return hook

    handles = []
    for module in deploy.modules():
        if isinstance(module, nn.LayerNorm):
            handles.append(module.register_forward_pre_hook(norm_input))
        if isinstance(module, WindowAttention):
            handles += [module.bmm1_q.register_forward_hook(query(module)), module.bmm1_k.register_forward_hook(key(module))]
        if not list(module.children()):
            handles.append(module.register_forward_hook(output))
    try:
        with torch.no_grad():
            deploy(crops)
    finally:
        for handle in handles:
            handle.remove()
    report = {name: {"max": peak, "margin": FP16_MAX / peak if peak else float("inf")} for name, peak in peaks.items()}
    return {**report, "min_margin": min(r["margin"] for r in report.values()), "crops": list(crops.shape)}
