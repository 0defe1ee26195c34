"""Smaller XNNPACK payloads in a .pte: the same graph, each distinct vector once and short constant names.

ExecuTorch 1.5.1 writes each XNNPACK graph through flatc from JSON
(``backends/xnnpack/serialization/xnnpack_graph_serialize.py``, ``convert_to_flatbuffer``), so every value's
shape and every reshape's, transpose's and slice's parameters are stored once per use, and it names each
constant by the 64 hex digits of its sha256 (``backends/xnnpack/operators/node_visitor.py``), stored once in the
graph and once in the program's named data. In the x4 W4 64 px .pte that is 248 KB of graph for 1690 nodes.
While lowering, :func:`compact_xnnpack_payloads` re-packs each graph with its equal vectors and strings shared
(:mod:`targets.flatbuffer_sharing`) and names constants by the first 16 hex digits (64 bits) of the same digest:
names stay content keys, so the methods of one program still share one copy of each weight, and two different
constants under one name would stop the build (ExecuTorch's ``NamedDataStore.add_named_data`` refuses them).
Not fewer than 64 bits: ExecuTorch's Android and Apple builds turn on its XNNPACK weights cache
(``tools/cmake/preset/android.cmake``, ``apple_common.cmake``), which finds packed weights by these names across
every program an app loads (``backends/xnnpack/runtime/XNNWeightsCache.cpp``, ``look_up``): a name two programs
shared would be a wrong weight there, not an error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from unittest import mock

from targets.flatbuffer_sharing import packed

__all__ = ["KEY_DIGITS", "compact_xnnpack_payloads", "compacted", "compacting"]

KEY_DIGITS = 16  # hex digits of sha256 kept in a constant's name: 64 bits


@functools.cache
def _graph_api() -> ModuleType:
    """flatc's Python object API for the installed ExecuTorch's XNNPACK schema, generated once per process.

    Generated rather than vendored so that it always matches the schema the wheel writes with.
    """
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import _get_schema_bytes
    from executorch.exir._serialize._flatbuffer import _run_flatc

    with tempfile.TemporaryDirectory() as folder:
        schema = Path(folder, "schema.fbs")
        schema.write_bytes(_get_schema_bytes())
        _run_flatc(["--python", "--gen-object-api", "-o", folder, str(schema)])
        (package,) = [p for p in Path(folder).iterdir() if p.is_dir()]
        sys.path.insert(0, folder)
        try:  # every module now: the generated code imports its siblings lazily, after the folder is gone
            modules = {p.stem: importlib.import_module(f"{package.name}.{p.stem}")
                       for p in sorted(package.glob("*.py")) if p.stem != "__init__"}
        finally:
            sys.path.remove(folder)
    for name, module in modules.items():
        # flatc 25 defines a union's creator camel-cased (XnodeUnionCreator) but calls it by the union's name.
        for creator in [attr for attr in vars(module) if attr.endswith("Creator")]:
            setattr(module, f"{name}Creator", getattr(module, creator))
    return modules["XNNGraph"]


def compacted(payload: bytes) -> bytes:
    """An XNNGraph flatbuffer re-packed with each distinct vector and string once (same tables, same values), its
    nodes' debug handles numbered by rank (0, 1, 2, ... in the same order, equal ones equal), its named constants
    without offset and size.

    A debug handle numbers a node of the whole method; by rank within the graph, the graphs of equal pieces and
    of equal stages between them (:mod:`targets.xnnpack_pieces`) are equal bytes, which ExecuTorch then stores
    once. Counting from the graph's first handle was not enough for the stages: their nodes' handles interleave
    with those of the pieces around them, whose count differs with the tile (the x4 192 px method's stages
    between blocks were 25 distinct graphs, 97 KB, instead of 7). The runtime reads them only to name a node in
    its logs and errors, and profiling to tell the nodes of one graph apart. A constant with a name is read from
    the program's named data by that name alone: the runtime reads ``offset`` and ``size`` only for unnamed ones
    (``XNNCompiler.cpp``, ``getConstantDataPtr``, the same from ExecuTorch 1.0 to its main of August 2026), so
    they are left at 0, which flatbuffers does not store: 16 bytes less per constant reference.
    """
    api = _graph_api()
    if not api.XNNGraph.XNNGraphBufferHasIdentifier(payload, 0):
        raise ValueError("not an XNNPACK graph flatbuffer (no XN01 identifier)")
    graph = api.XNNGraphT.InitFromObj(api.XNNGraph.GetRootAs(payload, 0))
    rank = {handle: i for i, handle in enumerate(sorted({node.debugHandle for node in graph.xnodes or ()}))}
    for node in graph.xnodes or ():
        node.debugHandle = rank[node.debugHandle]
    for constant in graph.constantData or ():
        if constant.namedKey:
            constant.offset = constant.size = 0
    return packed(graph, bytes(payload[4:8]))


class _ShortDigests:
    """``hashlib`` as ExecuTorch's XNNPACK serializer sees it: sha256 hex digests cut to :data:`KEY_DIGITS`."""

    @staticmethod
    def sha256(data: bytes) -> SimpleNamespace:
        digest = hashlib.sha256(data).hexdigest()[:KEY_DIGITS]
        return SimpleNamespace(hexdigest=lambda: digest)


@contextlib.contextmanager
def compact_xnnpack_payloads() -> Iterator[None]:
    """While lowering: XNNPACK graphs written by :func:`compacted`, constants named by :data:`KEY_DIGITS` digits."""
    from executorch.backends.xnnpack.operators import node_visitor
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as serialize

    convert = serialize.convert_to_flatbuffer
    with (mock.patch.object(serialize, "convert_to_flatbuffer", lambda graph: compacted(convert(graph))),
          mock.patch.object(node_visitor, "hashlib", _ShortDigests())):
        yield


def compacting() -> bool:
    """Whether XNNPACK graphs are being written by :func:`compacted` (inside :func:`compact_xnnpack_payloads`)."""
    from executorch.backends.xnnpack.operators import node_visitor

    return isinstance(node_visitor.hashlib, _ShortDigests)
