"""ExecuTorch target: a .pte, fully delegated to XNNPACK, whose Linears hold the calibrated grid as int4 codes.

XNNPACK stores a weight as ``scale * code`` per output channel with zero point 0 (QC4W: codes in
[-8, 7]). A 2DQuant grid ``l + k s`` is snapped to ``l = z s`` by default
(:func:`calibration.snapping.snap_weight_bounds`), or, with ``int_grid="exact"``, stored exactly as codes
``k + z`` plus one extra output row per grid that adds its offset ``c = l - z s``
(:class:`targets.base.OffsetLinear`). The graph is quantized with PT2E's XNNPACK quantizer (dynamic
int8 activations per token, 4-bit per-channel weights on every ``nn.Linear``) and its weight codes
and scales are replaced by ours before lowering, so the kernel is
``Fully Connected (NC, QDU8, F32, QC4W)``: int8 per-token activations times the exact grid.
Convolutions (stored as fp16 filters by default, :func:`fp16_conv_filters`; ``conv_weights="int8"``: int8
filters on fp32 inputs, as patches times a fully connected op, :mod:`targets.xnnpack_convs`), attention
matmuls, softmax and the rest run in fp32. 2- and 3-bit grids use the same 4-bit container: XNNPACK has no
smaller one, so they cost the same bytes and time as 4 bits.

For one XNNPACK partition the export graph is the deploy model frozen for the tile (``SwinIR.freeze_shape``:
mask and biases expanded in the graph from small tables by matmuls XNNPACK runs, no gather) and LayerNorm written with two ``F.linear`` reductions
(XNNPACK has no layer norm); ../shared/docs/deployment.md §5 has the measurements behind this.
:meth:`ExecuTorchTarget.verify` reads the XNNPACK payload back out of the .pte and compares every
stored code and scale with the calibrated ones.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

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
from targets.config import ConvWeights, Precision
from targets.dependency_bitsets import bitset_dependency_views
from targets.edge_decompositions import one_decomposition_when_every_kept_op_passes
from targets.partition_cuts import cuts_sorted_in_place
from targets.pte_program import SEGMENT_ALIGNMENT, compact_program
from targets.shared_provenance import shared_node_provenance
from targets.xnnpack_convs import PatchConv, conv_codes, int8_patch_filters
from targets.xnnpack_payloads import compact_xnnpack_payloads
from targets.xnnpack_pieces import one_constant_per_piece, piecewise_xnnpack_partitioner
from targets.xnnpack_preprocess_cache import preprocess_equal_partitions_once

__all__ = ["ExecuTorchTarget", "LinearMeanLayerNorm", "conv_filter_types", "export_graph",
           "fp16_conv_filters", "stored_constants", "stored_weights"]


class LinearMeanLayerNorm(nn.Module):
    """LayerNorm over the last dim with both means as ``F.linear`` against a 1/C row (XNNPACK has no layer norm)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        (channels,) = norm.normalized_shape
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.register_buffer("average", torch.full((1, channels), 1.0 / channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = x - F.linear(x, self.average)
        variance = F.linear(centered * centered, self.average)
        return centered * torch.rsqrt(variance + self.eps) * self.weight + self.bias


def export_graph(deploy: nn.Module, tile: int, window_chunk: int | None = None, fp16_tables: bool = False,
                 shared_pieces: bool = False) -> nn.Module:
    """A copy of ``deploy`` for a fixed (1, 3, tile, tile) input that lowers to XNNPACK, one partition or, with
    ``shared_pieces``, one per Swin-block piece and stage between them (``window_chunk``, ``shared_pieces``:
    :class:`targets.config.ExecuTorchConfig`).

    The shift mask's one-hots are kept in fp16, which holds their zeros and ones exactly, and so are the
    bias tables with ``fp16_tables`` (their values must be fp16 ones already, :func:`targets.base.with_fp16_values`).
    XNNPACK's partitioner takes no fp16 constant into an fp32 graph, so each is widened by the portable
    runtime before the partition (:func:`srcore.model.widened`): a few microseconds per run for half the
    bytes. The bias offsets' one-hot stays fp32, the static weight of a fully connected op (widened, it
    would turn the op into a batch matmul).
    """
    model = export_copy(deploy, tile, LinearMeanLayerNorm, window_chunk, always_pieces=shared_pieces)
    for name in ("frozen_mask_windows", "frozen_mask_regions") + (("frozen_bias_tables",) if fp16_tables else ()):
        narrow = getattr(model, name).half()
        if not torch.equal(narrow.float(), getattr(model, name)):
            raise TargetError(f"{name} is not exact in fp16")
        setattr(model, name, narrow)
    return model


def _is_conv_filter(node: torch.fx.Node) -> bool:
    """Whether ``node`` is only ever the filter (second argument) of convolutions."""
    return bool(node.users) and all("convolution" in str(user.target) and user.args[1] is node for user in node.users)


@contextlib.contextmanager
def fp16_conv_filters() -> Iterator[None]:
    """While lowering: serialize every float convolution filter as an XNNPACK fp16 static tensor.

    XNNPACK runs an fp32 convolution from fp16 filters (``xnn_create_convolution2d_nhwc_f32_f16`` widens
    them to fp32 when the program loads: ``src/subgraph/convolution-2d.c``, the fp16 filter case of its fp32
    output, at 92a7ad501b, the XNNPACK of ExecuTorch's main branch near 1.5; the 1.5.1 wheel runs it, as the
    tests check), and ExecuTorch's runtime passes the serialized type through (``XNNCompiler.cpp``,
    ``getDataType``). But its serializer writes a float convolution's filter as fp32
    (``backends/xnnpack/operators/op_conv2d.py``: ``force_fp32=True``) and no fp16 constant can be traced
    into an fp32 graph, so the serializer is told here. Every filter must hold fp16 values already
    (:func:`targets.base.with_fp16_values`), or the lowering fails.
    """
    from executorch.backends.xnnpack.operators import node_visitor
    from executorch.backends.xnnpack.serialization.xnnpack_graph_schema import XNNDatatype

    visitor, get_param = node_visitor.NodeVisitor, node_visitor.get_param_tensor
    buffer_index, serialized_dtype = visitor.get_serialized_buffer_index, visitor.get_serialized_dtype

    def narrowed(program, node):
        tensor = get_param(program, node)
        if not _is_conv_filter(node) or tensor is None or tensor.dtype != torch.float32:
            return tensor
        if not torch.equal(tensor.half().float(), tensor):
            raise TargetError(f"convolution filter {node.name} is not exact in fp16 (targets.base.with_fp16_values)")
        return tensor.half()

    def buffer_index_fp16(self, tensor, graph, ids, nhwc, swap, quant_params, force_fp32=False, groups=1):
        filter_ = quant_params is None and _is_conv_filter(tensor)
        return buffer_index(self, tensor, graph, ids, nhwc, swap, quant_params, force_fp32 and not filter_, groups)

    def dtype_fp16(self, quant_params, node, force_fp32=False):
        if quant_params is None and _is_conv_filter(node):
            return XNNDatatype.xnn_datatype_fp16
        return serialized_dtype(self, quant_params, node, force_fp32)

    with (mock.patch.object(node_visitor, "get_param_tensor", narrowed),
          mock.patch.multiple(visitor, get_serialized_buffer_index=buffer_index_fp16, get_serialized_dtype=dtype_fp16)):
        yield


def _owner(node: torch.fx.Node) -> str:
    """Module path of the Linear or convolution that consumes a dequantized weight."""
    for user in node.users:
        stack = user.meta.get("nn_module_stack")
        if stack:
            return list(stack.values())[-1][0]
    raise TargetError(f"cannot tell which module uses {node.name}")


def _with_our_codes(graph_module: torch.fx.GraphModule, weights: list[PalettizedWeight]) -> torch.fx.GraphModule:
    """Point every ``dequantize_per_channel`` of a Linear's weight at our codes, channel scales and zero points 0."""
    by_path = {w.path: w.stored() for w in weights}
    graph, replaced, replaced_getters = graph_module.graph, set(), set()
    nodes = [n for n in graph.nodes if n.target == torch.ops.quantized_decomposed.dequantize_per_channel.default]
    for i, node in enumerate(nodes):
        owner = _owner(node).removesuffix(".kernel")  # an OffsetLinear's int4 Linear is its .kernel
        if owner not in by_path:
            raise TargetError(f"{owner} was quantized but has no calibrated grid")
        codes, scales = by_path[owner]
        tensors = {"codes": codes, "scales": scales.float(), "zero_points": torch.zeros(len(scales), dtype=torch.int64)}
        getters = []
        for kind, tensor in tensors.items():
            name = f"sr2bit_{kind}_{i}"
            graph_module.register_buffer(name, tensor.clone())
            with graph.inserting_before(node):
                getters.append(graph.get_attr(name))
        replaced_getters.update(a.target for a in node.args[:3] if isinstance(a, torch.fx.Node) and a.op == "get_attr")
        node.args = (*getters, *node.args[3:])
        replaced.add(owner)
    if replaced != set(by_path):
        raise TargetError(f"{len(by_path) - len(replaced)} calibrated Linears were not quantized by the XNNPACK "
                          f"quantizer")
    graph.eliminate_dead_code()
    # The quantizer's own codes, scales and zero points are unused now, but export would still lift every
    # attribute the module holds into the program as a constant (691 KB of int8 codes at x4): drop them.
    still_used = {n.target for n in graph.nodes if n.op == "get_attr"}
    for target in replaced_getters - still_used:
        delattr(graph_module, target)
    graph_module.recompile()
    return graph_module


def method_name(tile: int, primary: int) -> str:
    """The .pte method that runs ``tile``: ``forward`` for the build's own tile, ``tile_<n>`` for the others."""
    return "forward" if tile == primary else f"tile_{tile}"


def _lower(methods: dict[str, tuple[nn.Module, torch.Tensor]], artifact: Path, pieces: bool = False) -> dict[str, Any]:
    """Export each ``name: (graph, example input)`` as one method, lower all to XNNPACK in one program, write ``artifact``.

    XNNPACK stores constants under the sha256 of their bytes, so the methods share one copy of every weight; its
    graphs are written compactly (:func:`targets.xnnpack_payloads.compact_xnnpack_payloads`). ``pieces``: one
    partition per Swin-block piece, equal ones stored once (:mod:`targets.xnnpack_pieces`). Equal ops run once
    (ExecuTorch's ``CSEPass``): each shifted block slices the same pieces of the shift mask, and with pieces
    each slice is a tensor of ExecuTorch's planned memory, all made before the first block (the 128 px
    method's plan: 65 -> 24 MB, peak RSS 463 -> 420 MB). Faster, the same bytes: provenance records share their
    chains (:mod:`targets.shared_provenance`), equal partitions are preprocessed once
    (:mod:`targets.xnnpack_preprocess_cache`), a method's graph is re-sorted in place after each partition is cut
    out of it and its code regenerated once (:mod:`targets.partition_cuts`), and decomposed once, not twice, when
    XNNPACK keeps every instance of the ops it asks to keep (:mod:`targets.edge_decompositions`).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.cse_pass import CSEPass

    start = time.perf_counter()
    with shared_node_provenance():  # each pass's provenance records share the chains before them, not copy them
        programs = {name: torch.export.export(model, (example,)) for name, (model, example) in methods.items()}
        for program in programs.values():  # equal ops once: the shifted blocks' equal slices of the mask
            CSEPass()(program.graph_module)
        if pieces:
            programs = {name: one_constant_per_piece(program) for name, program in programs.items()}
        # The partitioners' node sets grow as the square of the graph: bitset_dependency_views; equal pieces are
        # preprocessed once (their compacted payloads are equal bytes); a method is re-sorted in place after each
        # partition cut out of it, not copied and recompiled, and decomposed once where XNNPACK keeps every op it
        # asked to keep.
        with (bitset_dependency_views(), compact_xnnpack_payloads(), cuts_sorted_in_place(),
              one_decomposition_when_every_kept_op_passes(), preprocess_equal_partitions_once() as preprocessed):
            lowered = to_edge_transform_and_lower(programs, partitioner=[
                piecewise_xnnpack_partitioner() if pieces else XnnpackPartitioner()])
        partitions, outside = {}, collections.Counter()
        for name in programs:
            calls = [n for n in lowered.exported_program(name).graph_module.graph.nodes if n.op == "call_function"]
            partitions[name] = sum("executorch_call_delegate" in str(n.target) for n in calls)
            outside.update(str(n.target).replace("<EdgeOpOverload: ", "").split(">")[0].split(":")[0] for n in calls
                           if "executorch_call_delegate" not in str(n.target) and "getitem" not in str(n.target))
        with compact_program():
            program = lowered.to_executorch(ExecutorchBackendConfig(segment_alignment=SEGMENT_ALIGNMENT))
    artifact.write_bytes(program.buffer)
    return {"xnnpack_partitions": max(partitions.values()),  # in any one method
            "xnnpack_partitions_lowered": sum(partitions.values()),  # in all methods, and preprocessed of them:
            "xnnpack_partitions_preprocessed": preprocessed.get("preprocessed"),  # one per fingerprint
            "xnnpack_graphs_stored": len(program.executorch_program.backend_delegate_data),  # equal ones once
            "ops_outside_xnnpack": dict(outside), "lowering_seconds": round(time.perf_counter() - start, 1)}


def _lower_tiles(graphs: dict[int, nn.Module], artifact: Path, pieces: bool = False) -> dict[str, Any]:
    """:func:`_lower` of tile side -> graph (the build's own tile first), one method per side, named by :func:`method_name`."""
    primary = next(iter(graphs))
    methods = {method_name(tile, primary): (graph, torch.rand(1, 3, tile, tile)) for tile, graph in graphs.items()}
    return {"methods": {str(tile): method_name(tile, primary) for tile in graphs}, **_lower(methods, artifact, pieces)}


def _xnnpack_graphs(pte) -> Any:
    """Each XnnpackBackend payload of a deserialized .pte: (method name, its XNNGraph flatbuffer as JSON).

    The flatbuffer is decoded with the schema shipped in executorch.
    """
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (
        XNNHeader,
        _get_schema_bytes,
    )
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    for plan in pte.program.execution_plan:
        for delegate in plan.delegates:
            if delegate.id != "XnnpackBackend":
                continue
            blob = pte.program.backend_delegate_data[delegate.processed.index].data
            header = XNNHeader.from_bytes(blob[: XNNHeader.EXPECTED_LENGTH])
            with tempfile.TemporaryDirectory() as tmp:
                schema, payload = Path(tmp, "schema.fbs"), Path(tmp, "graph.bin")
                schema.write_bytes(_get_schema_bytes())
                payload.write_bytes(blob[header.flatbuffer_offset: header.flatbuffer_offset + header.flatbuffer_size])
                _flatc_decompile(tmp, str(schema), str(payload), ["--raw-binary"])
                # flatc writes infinite floats (an unbounded clamp's output_max) bare, as JSON has no literal for them.
                text = re.sub(r"(?<=[:\[,\s])(-?)inf\b", r"\1Infinity", Path(tmp, "graph.json").read_text())
                yield plan.name, json.loads(text)


def _named_constant(pte, key: str) -> bytes:
    named = pte.named_data
    return named.buffers[named.pte_data[key].buffer_index]


def _decoded(artifact: Path) -> tuple[Any, list[tuple[str, Any]]]:
    """The deserialized program of a .pte and its XNNPACK graphs (:func:`_xnnpack_graphs`), read once."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(Path(artifact).read_bytes())
    return pte, list(_xnnpack_graphs(pte))


def stored_weights(artifact: Path) -> dict[str, list[dict[str, Any]]]:
    """Per method, every per-channel integer weight its XNNPACK payloads hold: ``{"codes", "scales": (out,)}``,
    codes int (out, in) for a Linear's 4-bit ones, (out, in, kh, kw) for a convolution's int8 ones.

    Reads the program, each XnnpackBackend payload (:func:`_xnnpack_graphs`) and the named constant
    data the payload points to. 4-bit codes are stored two per byte, low nibble first, offset by 8
    (XNNPACK's unsigned QC4W layout); convolution filters as int8 patch filters, (out, kh * kw * in).
    """
    return _weights_in(*_decoded(artifact))


def _weights_in(pte, graphs: list[tuple[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for method, graph in graphs:
        for value in graph["xvalues"]:
            tensor = value["xvalue_union"].get("tensor_value", {})
            datatype, dims = tensor.get("datatype"), tensor.get("dims", [])
            if not tensor.get("constant_buffer_idx") or datatype not in ("xnn_datatype_qcint4", "xnn_datatype_qcint8"):
                continue
            params = value["xvalue_union"]["quant_params"]
            data = graph["constant_data"][tensor["constant_buffer_idx"]]
            raw = _named_constant(pte, data["named_key"])
            if datatype == "xnn_datatype_qcint4":
                packed = np.frombuffer(raw, dtype=np.uint8)
                codes = np.stack([packed & 0xF, packed >> 4], axis=1).reshape(-1)[: int(np.prod(dims))]
                codes = codes.astype(np.int16).reshape(dims) - 8
            else:  # a 3x3 convolution's patch filter (targets.xnnpack_convs.PatchConv)
                codes = conv_codes(np.frombuffer(raw, dtype=np.int8)[: int(np.prod(dims))].astype(np.int16).reshape(dims))
            scale_data = graph["constant_data"][params["scale_buffer_idx"]]
            scales = np.frombuffer(_named_constant(pte, scale_data["named_key"]), dtype=np.float32)[: params["num_scales"]]
            found.setdefault(method, []).append({"codes": codes, "scales": scales.copy(),
                                                 "channel_dim": params["channel_dim"]})
    return found


def conv_filter_types(artifact: Path) -> dict[str, list[str]]:
    """Per method, the XNNPACK datatype of each convolution's filter, in graph order (``xnn_datatype_fp16``, ...)."""
    return _filter_types_in(_decoded(artifact)[1])


def _filter_types_in(graphs: list[tuple[str, Any]]) -> dict[str, list[str]]:
    found = {}
    for method, graph in graphs:
        types = {}
        for value in graph["xvalues"]:
            union = value["xvalue_union"]
            tensor = union.get("tensor_value", union)
            types[tensor["id_out"]] = tensor["datatype"]
        found.setdefault(method, []).extend(types[node["xnode_union"]["filter_id"]] for node in graph["xnodes"]
                                            if node["xnode_union_type"] == "XNNConv2d")  # a method's graphs in order
    return found


# numpy dtypes of the XNNPACK and ExecuTorch tensor types a float constant can have here.
_XNN_FLOATS = {"xnn_datatype_fp32": np.float32, "xnn_datatype_fp16": np.float16}
_ET_FLOATS = {6: np.float32, 5: np.float16}  # executorch ScalarType FLOAT, HALF


def stored_constants(artifact: Path) -> list[StoredConstant]:
    """Every constant of a .pte, once: XNNPACK's named data (by the payload's tensors) and the program's own buffers.

    Integer weights are known by their XNNPACK type (qcint4: Linear codes, their scales; qcint8:
    convolutions); float ones come with their values for :func:`targets.base.size_breakdown`. The
    program's constant buffers hold what XNNPACK takes as a run-time input (e.g. the bias tables
    that ``0 * x`` keeps in the graph).
    """
    pte, graphs = _decoded(artifact)
    found, seen = [], set()

    def add(key: str, component: str | None, dtype=None, count: int = 0) -> None:
        if key in seen:
            return
        seen.add(key)
        data = _named_constant(pte, key)
        values = None if component else np.frombuffer(data, dtype=dtype)[:count]
        found.append(StoredConstant(len(data), values, component))

    for _, graph in graphs:
        for value in graph["xvalues"]:
            union = value["xvalue_union"]
            tensor = union.get("tensor_value", union)
            index = tensor.get("constant_buffer_idx", 0)
            if not index:
                continue
            datatype, key = tensor["datatype"], graph["constant_data"][index]["named_key"]
            if datatype in _XNN_FLOATS:
                add(key, None, _XNN_FLOATS[datatype], int(np.prod(tensor["dims"])))
                continue
            component = {"xnn_datatype_qcint4": "linear weights", "xnn_datatype_qcint8": "convolutions"}.get(datatype,
                                                                                                          "other constants")
            add(key, component)
            if "quant_params" in union and "scale_buffer_idx" in union["quant_params"]:
                scale_key = graph["constant_data"][union["quant_params"]["scale_buffer_idx"]]["named_key"]
                add(scale_key, "linear scales and tables" if component == "linear weights" else component)
    buffers = pte.program.constant_buffer
    for plan in pte.program.execution_plan:
        for value in plan.values:
            tensor = value.val
            index = getattr(tensor, "data_buffer_idx", 0)
            if not index or f"buffer {index}" in seen:
                continue
            seen.add(f"buffer {index}")
            storage = bytes(buffers[index].storage)
            dtype = _ET_FLOATS.get(int(tensor.scalar_type))
            count = int(np.prod(tensor.sizes))
            found.append(StoredConstant(len(storage), np.frombuffer(storage, dtype=dtype)[:count] if dtype else None,
                                        None if dtype else "other constants"))
    return found


class ExecuTorchTarget(IntegerTarget):
    name = "executorch"
    extension = ".pte"
    simulation = ("PyTorch fp32, weights codes*scale, Linear inputs dynamic int8 per token (XNNPACK qd8), "
                  "bias tables and convolution filters as stored (ExecuTorchConfig.bias_tables, conv_weights)")
    runtime = "ExecuTorch runtime (Python bindings) with the XNNPACK delegate, this host's CPU"
    runtime_modules = ("executorch.runtime",)

    def lower(self, deploy: nn.Module, weights: list[PalettizedWeight], tile: int, artifact: Path,
              convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        self.require_codes(weights)
        self.require_convs(convs)
        with quiet_tools():
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import (
                convert_pt2e,
                prepare_pt2e,
            )

            quantizer = XNNPACKQuantizer()
            quantizer.set_module_type(nn.Linear, get_symmetric_quantization_config(
                is_per_channel=True, is_dynamic=True, weight_qmin=-8, weight_qmax=7))
            graphs = {}
            deploy = self.as_stored(deploy)
            for size in self._sizes(tile):
                model = export_graph(deploy, size, self.config.window_chunk,  # checks the tile first
                                     fp16_tables=self.config.bias_tables is Precision.FP16,
                                     shared_pieces=self.config.shared_pieces)
                example = torch.rand(1, 3, size, size)
                for grid in convs:  # a module of no Linear type: the quantizer leaves it in fp32
                    model.set_submodule(grid.path, PatchConv(model.get_submodule(grid.path)))
                exported = torch.export.export(with_offset_rows(model, weights), (example,)).module()
                prepared = prepare_pt2e(exported, quantizer)
                prepared(example)
                graphs[size] = _with_our_codes(convert_pt2e(prepared), weights)
            filters = {ConvWeights.FP16: fp16_conv_filters(), ConvWeights.INT8: int8_patch_filters(convs)}
            with filters.get(self.config.conv_weights, contextlib.nullcontext()):
                described = _lower_tiles(graphs, artifact, self.config.shared_pieces)
        int8_convs = ("; int8 convolutions: fp32 inputs x int8 per-channel filters, over 3x3 patches "
                      "(Fully Connected (NC, F32, QC8W))" if convs else "")
        return {"deployment_target": "ExecuTorch 1.5 runtime, XNNPACK delegate (Android/iOS/Linux CPU)",
                **tensor_io(deploy, tile), **described, "window_chunk": self.config.window_chunk,
                "shared_pieces": self.config.shared_pieces,
                "bias_tables": self.config.bias_tables.value,
                "activations": "fp32; quantized Linears: dynamic int8 per token x int4 per-channel weights (QC4W)"
                               + int8_convs,
                "stored_bits": 4}

    def lower_baseline(self, deploy: nn.Module, tile: int, artifact: Path) -> dict[str, Any]:
        with quiet_tools():  # the same methods as the artifact, so that their sizes compare like with like
            pieces = self.config.shared_pieces
            return _lower_tiles({size: export_graph(deploy, size, self.config.window_chunk, shared_pieces=pieces)
                                 for size in self._sizes(tile)}, artifact, pieces)

    def verify(self, artifact: Path, weights: list[PalettizedWeight], convs: Sequence[ChannelGrid] = ()) -> dict[str, Any]:
        with quiet_tools():
            pte, graphs = _decoded(artifact)
            stored, filters = _weights_in(pte, graphs), _filter_types_in(graphs)
        fp16 = self.config.conv_weights is ConvWeights.FP16
        verified = []
        for method in self._methods(artifact):  # every method holds every grid (one shared copy in the file)
            tensors = stored.get(method, [])
            match_stored_weights(weights, [(t["codes"], t["scales"]) for t in tensors if t["codes"].ndim == 2])
            match_channel_grids(convs, [(t["codes"], t["scales"]) for t in tensors if t["codes"].ndim == 4])
            narrow = filters[method].count("xnn_datatype_fp16")
            if narrow != (len(filters[method]) if fp16 else 0) or (convs and filters[method]):
                raise TargetError(f"{method}: {narrow} of its {len(filters[method])} convolution filters are fp16, but "
                                  f"the config stores them as {self.config.conv_weights.value!r}")
            verified.append(method)
        return {
            "methods_verified": verified,
            "quantized_linears": len(weights),
            "palettized_linears": len(weights),
            "index_dtypes": {"qcint4 (codes k+z, zero point 0)": len(weights)},
            "offset_rows": offset_rows(weights),
            "int8_convolutions": len(convs),
            "convolution_filters": dict(collections.Counter(t.removeprefix("xnn_datatype_") for t in filters[verified[0]])),
            "stored_equals_calibrated": "exact (int4 codes, int8 convolution codes and fp32 channel scales read back "
                                        "from the .pte)",
        }

    def stored_constants(self, artifact: Path, weights: list[PalettizedWeight]) -> list[StoredConstant]:
        with quiet_tools():
            return stored_constants(artifact)

    @staticmethod
    def _methods(artifact: Path) -> list[str]:
        from executorch.runtime import Runtime

        with quiet_tools():
            return sorted(Runtime.get().load_program(Path(artifact)).method_names)

    def runner(self, artifact: Path, threads: int | None = None, tile: int | None = None):
        """LR tile -> SR tile through the ExecuTorch runtime; ``threads`` sizes XNNPACK's pool (before loading).

        ``tile``: the method ``tile_<tile>`` where the .pte has one, else ``forward`` (the build's own tile).
        """
        with quiet_tools():
            from executorch.runtime import Runtime

            if threads is not None:
                from executorch.extension.pybindings.portable_lib import (
                    _unsafe_reset_threadpool,
                )

                _unsafe_reset_threadpool(threads)  # must precede load_program (deployment.md §5.5)
            program = Runtime.get().load_program(Path(artifact))
            name = f"tile_{tile}" if f"tile_{tile}" in program.method_names else "forward"
            method = program.load_method(name)

        def run(lr: torch.Tensor) -> torch.Tensor:
            return method.execute([lr.contiguous()])[0]

        return run

    def op_profile(self, artifact: Path, example: torch.Tensor, runs: int) -> list[dict[str, Any]]:
        """Per-operator time from ETDump: XNNPACK kernels by kind (``#N`` instances summed), median over ``runs``."""
        with quiet_tools():
            from executorch.devtools import Inspector
            from executorch.runtime import Runtime

            program = Runtime.get().load_program(Path(artifact), enable_etdump=True, debug_buffer_size=0)
            method = program.load_method("forward")
            for _ in range(runs):
                method.execute([example])
            with tempfile.TemporaryDirectory() as tmp:
                etdump = Path(tmp) / "run.etdp"
                program.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
                frame = Inspector(etdump_path=str(etdump)).to_dataframe()
        frame = frame[frame["event_block_name"] == "Execute"]
        kinds: dict[str, dict[str, float]] = {}
        for name, p50 in zip(frame["event_name"], frame["p50 (ms)"]):
            if name in ("Method::execute", "Program::load_method"):
                continue
            kind = name.split(" #")[0]
            entry = kinds.setdefault(kind, {"op": kind, "instances": 0, "median_ms": 0.0})
            entry["instances"] += 1
            entry["median_ms"] += float(p50)
        return sorted(kinds.values(), key=lambda e: -e["median_ms"])

    def graph_summary(self, artifact: Path) -> dict[str, Any]:
        """XNNPACK nodes by type over every delegate call of every method (``graphs``: the calls), the highest
        rank of any XNNPACK value, and the nodes that read or write a tensor above rank 4, by type."""
        with quiet_tools():
            graphs = [graph for _, graph in _decoded(artifact)[1]]
        ops, above = collections.Counter(), collections.Counter()
        ranks = []
        for graph in graphs:
            rank = {}
            for value in graph["xvalues"]:
                tensor = value["xvalue_union"].get("tensor_value", value["xvalue_union"])
                rank[tensor.get("id_out")] = len(tensor.get("dims", []))
            ranks += rank.values()
            for node in graph["xnodes"]:
                ops[node["xnode_union_type"]] += 1
                ids = [v for k, v in node["xnode_union"].items() if k.endswith("_id") and isinstance(v, int)]
                if any(rank.get(i, 0) > 4 for i in ids):
                    above[node["xnode_union_type"]] += 1
        return {"ops": dict(ops.most_common()), "graphs": len(graphs), "max_rank": max(ranks),
                "above_rank_4": dict(above.most_common())}

    def tool_versions(self) -> dict[str, str]:
        return {p: metadata.version(p) for p in ("executorch", "torchao")} | {"torch": torch.__version__}

