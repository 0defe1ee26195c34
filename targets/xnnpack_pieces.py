"""Each Swin-block piece its own XNNPACK partition, so that the .pte stores every repeated piece once.

A 128 px tile runs each Swin block in 4 pieces of 64 windows (``IntegerConfig.window_chunk``), a 192 px one in
9, a 96 px one's 144 windows in 3 (the last over windows 80-143, dropping the 48 the piece before computed), and
a 64 px tile is one such piece (``SwinIR.freeze_shape(always_pieces=True)``): the same ops on the same shapes
with the same weights, in every piece of a block and in every method. In one XNNPACK partition per method,
each piece adds its nodes again (the 128 px graph was 0.56 MB of the default W4 .pte). ExecuTorch's emitter
keeps one copy of byte-identical delegate payloads (``exir/emit/_emitter.py``, ``_emit_delegate``:
``backend_delegate_data_cache`` by sha256), so :func:`piecewise_xnnpack_partitioner` lowers each piece
(a :class:`srcore.model.WindowPiece` call) as a partition of its own and the ops between pieces (window
partition and reverse, shifts, slices, convolutions) as partitions by stage, and the payloads are written with
debug handles numbered by rank within each graph (:mod:`targets.xnnpack_payloads`), so equal pieces, and equal
stages between them, are equal bytes. Intermediate tensors between partitions live in ExecuTorch's planned
memory; XNNPACK's workspace is shared by all partitions in the Python wheel and in ExecuTorch's Android and Apple builds
(``EXECUTORCH_XNNPACK_SHARED_WORKSPACE``, ``tools/cmake/preset/android.cmake``, ``apple_common.cmake``).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from srcore.model import WindowPiece

__all__ = ["one_constant_per_piece", "piece_of", "piecewise_xnnpack_partitioner"]

_PIECE_TYPE = f"{WindowPiece.__module__}.{WindowPiece.__qualname__}"


# Ops the quantizer inserts (dynamic int8 activations, int4 weights): their module stack is only the model's root.
_INSERTED = ("choose_qparams", "quantize_per", "getitem")


def piece_of(node: torch.fx.Node) -> str | None:
    """The :class:`srcore.model.WindowPiece` call a node was traced in (its ``nn_module_stack`` key, ``@k`` for the
    k-th call of one module), ``""`` for a node traced outside any piece, None for a node inserted after tracing
    (by the quantizer, or a pass: no module stack)."""
    stack = node.meta.get("nn_module_stack")
    if not stack or any(op in str(node.target) for op in _INSERTED):
        return None
    for key, (_, kind) in stack.items():  # kind: the module's qualified class name
        if kind == _PIECE_TYPE:
            return key
    return ""


def _pieces(nodes: list[torch.fx.Node]) -> dict[torch.fx.Node, str]:
    """Piece key (``""``: between pieces) of each node; an inserted node (:func:`piece_of` None) joins the one
    piece its placed neighbours belong to (a dynamic quantization's nodes, a weight's dequantization), else
    goes between."""
    known = {n: piece_of(n) for n in nodes}
    unknown = [n for n in nodes if known[n] is None]
    while unknown:
        settled = []
        for node in unknown:
            around = {known.get(m) for m in (*node.all_input_nodes, *node.users) if known.get(m) is not None}
            if around:
                known[node] = around.pop() if len(around) == 1 else ""
                settled.append(node)
        if not settled:  # nothing traced around them: between pieces
            for node in unknown:
                known[node] = ""
            break
        unknown = [n for n in unknown if known[n] is None]
    return known


def _constant_placeholders(program: Any) -> list[torch.fx.Node]:
    """The placeholders of ``program`` (an ``ExportedProgram``) that hold constants: all but the user inputs."""
    inputs = set(program.graph_signature.user_inputs)
    return [n for n in program.graph_module.graph.nodes if n.op == "placeholder" and n.name not in inputs]


def one_constant_per_piece(program: Any) -> Any:
    """``program`` (an ``ExportedProgram``, changed in place) with its own placeholder of each constant per piece
    that reads it (and one for the reads between pieces).

    A constant read in several partitions is copied by ExecuTorch once per *use* outside its first partition
    (``exir/backend/utils.py``, ``_maybe_duplicate_constant_nodes``; a partitioner may not change the graph), so
    a piece that reads a LayerNorm's averaging row twice would hold it twice where the same piece elsewhere
    holds it once, and their graphs would differ. XNNPACK names constants by content, so the .pte still holds
    one copy of the bytes.
    """
    from torch.export.graph_signature import InputKind, InputSpec, TensorArgument

    graph, signature = program.graph_module.graph, program.graph_signature
    piece = _pieces([n for n in graph.nodes if n.op == "call_function"])
    specs = {spec.arg.name: spec for spec in signature.input_specs}
    for node in _constant_placeholders(program):
        by_piece: dict[str, list[torch.fx.Node]] = {}
        for user in node.users:
            by_piece.setdefault(piece.get(user, ""), []).append(user)
        spec = specs[node.name]
        for key in sorted(by_piece)[1:]:
            with graph.inserting_before(node):
                twin = graph.placeholder(f"{node.name}_piece{len(specs)}")
            twin.meta.update(node.meta)
            for user in by_piece[key]:
                user.replace_input_with(node, twin)
            if spec.kind is InputKind.PARAMETER or (spec.kind is InputKind.BUFFER and spec.persistent):
                program.state_dict[twin.name] = program.state_dict[spec.target]
            else:
                program.constants[twin.name] = program.constants[spec.target]
            specs[twin.name] = InputSpec(kind=spec.kind, arg=TensorArgument(name=twin.name), target=twin.name,
                                         persistent=spec.persistent)
    signature.input_specs = [specs[n.name] for n in graph.nodes if n.op == "placeholder"]
    program.graph_module.recompile()
    return program


@functools.cache
def _partitioner_class() -> type:
    """The partitioner class, made on first use: ExecuTorch is an optional dependency."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir.backend.partitioner import PartitionResult

    class PiecewiseXnnpackPartitioner(XnnpackPartitioner):
        """``XnnpackPartitioner`` whose partitions are split into one per piece and one per stage between pieces.

        A node between pieces goes to stage ``s``: the largest number of pieces on any path to it. Each stage
        is convex (a path that leaves stage ``s`` through a piece only reaches stages above ``s``), and so is
        each piece (a module call's nodes; its inputs never depend on its outputs).
        """

        def partition(self, exported_program):
            result = super().partition(exported_program)
            graph = result.tagged_exported_program.graph_module.graph
            calls = [n for n in graph.nodes if n.op == "call_function" and "delegation_tag" in n.meta]
            piece = _pieces(calls)
            stage: dict[torch.fx.Node, int] = {}
            for node in graph.nodes:  # topological order
                stage[node] = max((stage[p] + (1 if piece.get(p) and piece.get(p) != piece.get(node) else 0)
                                   for p in node.all_input_nodes), default=0)
            tags = {}
            for node in calls:
                tag = node.meta["delegation_tag"]
                node.meta["delegation_tag"] = new = (f"{tag}_piece{piece[node]}" if piece[node]
                                                     else f"{tag}_stage{stage[node]}")
                tags[new] = result.partition_tags[tag]
            # Stages first: after each partition it cuts out, ExecuTorch re-sorts the rest of the graph
            # (``create_submodule_from_nodes``: ``legalize_graph``, breadth first), so a piece cut out before any
            # other would keep the traced order of its nodes and differ from the pieces cut out after it.
            tags = dict(sorted(tags.items(), key=lambda item: "_piece" in item[0]))
            # Every constant read only inside partitions goes into one of them, the first by tag (ExecuTorch
            # copies it into the others, _maybe_duplicate_constant_nodes; XNNPACK stores its bytes once): the
            # XNNPACK partitioner takes only the weights of the ops it lowers, and any other constant (a LayerNorm's
            # affine, a scalar operand) would be a tensor of the program passed to every call (686 in the x4
            # 128 px method). Those read outside (the fp16 tables the portable runtime widens) stay out.
            for node in _constant_placeholders(exported_program):
                users = {u.meta.get("delegation_tag") for u in node.users}
                if "delegation_tag" in node.meta and users - {None}:  # a weight: with its op's piece or stage
                    node.meta["delegation_tag"] = min(users - {None})
                elif users and None not in users:
                    node.meta["delegation_tag"] = min(users)
            return PartitionResult(tagged_exported_program=result.tagged_exported_program, partition_tags=tags)

    return PiecewiseXnnpackPartitioner


def piecewise_xnnpack_partitioner() -> Any:
    """An ``XnnpackPartitioner`` that lowers each :class:`srcore.model.WindowPiece` call as a partition of its own."""
    return _partitioner_class()()
