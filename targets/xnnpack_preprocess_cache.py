"""XNNPACK's preprocessing run once per distinct partition, not once per partition.

With shared pieces (:mod:`targets.xnnpack_pieces`) most partitions of a .pte are equal: the default x4 .pte
(64 + 128 px) lowers 170 partitions whose payloads are 38 distinct graphs, a 4-size one (64, 96, 128 and 192 px)
508 and 52. ExecuTorch preprocesses each one (``XnnpackBackend.preprocess``: a dozen graph passes, then the
serialization), about 1.6 s a partition under ``cProfile`` and a third of the default build's lowering, only
for its emitter to keep one copy of each equal payload. While inside :func:`preprocess_equal_partitions_once`,
a partition whose :func:`fingerprint` was seen before gets a copy of the first one's result: the default W4
build preprocesses 50 partitions, the 4-size one 64 (some differ in what their payloads do not keep).

The fingerprint holds everything preprocessing reads: each node's op, target, arguments (other nodes by
position), the dtype, shape and strides of its value, its debug handle's rank among the partition's; each
input's kind and, for a constant, its dtype, shape and bytes; the compile specs. Debug handles count by rank,
as :func:`targets.xnnpack_payloads.compacted` writes them (equal pieces have equal payloads only thanks to it),
so the cache runs only inside :func:`targets.xnnpack_payloads.compact_xnnpack_payloads`. A test builds the tiny
model's .pte with and without the cache: equal bytes.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch

from targets.xnnpack_payloads import compacting

__all__ = ["fingerprint", "preprocess_equal_partitions_once"]


def _tensor_key(tensor: torch.Tensor) -> tuple:
    """dtype, shape, strides and a sha256 of the bytes of a constant tensor."""
    data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return str(tensor.dtype), tuple(tensor.shape), tuple(tensor.stride()), hashlib.sha256(data).hexdigest()


def _value_key(value: Any) -> Any:
    """A node's ``meta["val"]`` without its identity: dtype, shape and strides of each tensor in it."""
    if isinstance(value, torch.Tensor):
        return "tensor", str(value.dtype), tuple(value.shape), tuple(value.stride())
    if isinstance(value, (list, tuple)):
        return type(value).__name__, tuple(_value_key(v) for v in value)
    return repr(value)


def _arg_key(arg: Any, index: dict[torch.fx.Node, int]) -> Any:
    """An argument with each node replaced by its position in the graph (a tensor by its bytes: its repr elides)."""
    if isinstance(arg, torch.fx.Node):
        return "node", index[arg]
    if isinstance(arg, torch.Tensor):
        return "tensor", _tensor_key(arg)
    if isinstance(arg, (list, tuple)):
        return type(arg).__name__, tuple(_arg_key(a, index) for a in arg)
    if isinstance(arg, dict):
        return "dict", tuple((k, _arg_key(v, index)) for k, v in arg.items())
    return type(arg).__name__, repr(arg)


def fingerprint(program: Any, compile_specs: list[Any]) -> str:
    """A sha256 of what XNNPACK's preprocessing reads from ``program`` (an ``ExportedProgram``), debug handles by
    rank."""
    signature = program.graph_signature
    constants = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
                 **signature.inputs_to_lifted_tensor_constants}
    nodes = list(program.graph_module.graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    ranks = {h: i for i, h in enumerate(sorted({n.meta["debug_handle"] for n in nodes if "debug_handle" in n.meta}))}
    parts: list[Any] = [tuple((spec.key, bytes(spec.value)) for spec in compile_specs),
                        tuple(spec.kind.name for spec in signature.input_specs),
                        tuple(spec.kind.name for spec in signature.output_specs)]
    for node in nodes:
        if node.op == "placeholder" and node.name in constants:
            target = constants[node.name]
            tensor = program.state_dict[target] if target in program.state_dict else program.constants[target]
            content = _tensor_key(tensor)
        elif node.op == "get_attr":
            attribute = getattr(program.graph_module, node.target)
            content = _tensor_key(attribute) if isinstance(attribute, torch.Tensor) else repr(attribute)
        else:
            content = None
        parts.append((node.op, str(node.target) if node.op != "placeholder" else "", _arg_key(node.args, index),
                      _arg_key(node.kwargs, index), _value_key(node.meta.get("val")),
                      ranks.get(node.meta.get("debug_handle")), content))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@contextlib.contextmanager
def preprocess_equal_partitions_once() -> Iterator[dict[str, int]]:
    """While inside, ``XnnpackBackend.preprocess`` runs once per :func:`fingerprint`; yields counts of
    ``{"preprocessed": ..., "reused": ...}``. Only inside ``compact_xnnpack_payloads`` (module docstring)."""
    from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend

    if not compacting():
        raise RuntimeError("preprocess_equal_partitions_once needs compact_xnnpack_payloads (debug handles by rank)")
    original = XnnpackBackend.__dict__["preprocess"]
    results: dict[str, Any] = {}
    counts = {"preprocessed": 0, "reused": 0}

    def preprocess(edge_program, compile_specs):
        key = fingerprint(edge_program, compile_specs)
        if key in results:
            counts["reused"] += 1
        else:
            counts["preprocessed"] += 1
            results[key] = original.__func__(edge_program, compile_specs)
        return copy.deepcopy(results[key])

    with mock.patch.object(XnnpackBackend, "preprocess", staticmethod(preprocess)):
        yield counts
