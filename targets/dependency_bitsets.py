"""Graph partitioning without all-pairs node sets: reachability as bitsets.

torch.fx's ``CapabilityBasedPartitioner`` and ExecuTorch's ``GroupBasedPartitioner`` (which the XNNPACK
partitioner runs) precompute, for every node, the Python ``set`` of every node downstream of it, and the
group partitioner every node upstream too (``torch/fx/passes/infra/partitioner.py``, ``_DependencyViewer``;
``executorch/exir/backend/canonical_partitioners/group_partitioner.py``, ``_DependencyViewer``): about
30 bytes per pair of connected nodes, up to ~15 n^2 bytes for a graph of n nodes while it is lowered. A
SwinIR graph that runs its blocks in window chunks has tens of thousands of nodes, and that is what made
ExecuTorch 1.5.1 hold 0.6-1 GB more per extra chunk (README, issue 17). One Python int per node, bit i set
when node i is reachable, takes about n/8 bytes: lowering 12 FP32 blocks at 64 px in pieces of 32 windows
peaks at 538 MB instead of 683, the pieces costing 57 MB instead of 172 (reports/lowering_memory.md). The
partitioners only iterate over and test membership in these sets, so the partitions are the same (and the
.pte byte for byte).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

import numpy as np
import torch


class NodeBitset:
    """A read-only set of graph nodes: bit i of ``bits`` is node ``nodes[i]`` (iterated in graph order)."""

    __slots__ = ("_bits", "_nodes", "_index")

    def __init__(self, bits: int, nodes: list[torch.fx.Node], index: dict[torch.fx.Node, int]):
        self._bits, self._nodes, self._index = bits, nodes, index

    def __contains__(self, node: object) -> bool:
        i = self._index.get(node)  # type: ignore[arg-type]
        return i is not None and bool(self._bits >> i & 1)

    def __iter__(self) -> Iterator[torch.fx.Node]:
        if not self._bits:
            return iter(())
        raw = np.frombuffer(self._bits.to_bytes((self._bits.bit_length() + 7) // 8, "little"), dtype=np.uint8)
        return (self._nodes[i] for i in np.flatnonzero(np.unpackbits(raw, bitorder="little")))

    def __len__(self) -> int:
        return self._bits.bit_count()


class BitsetDependencyViewer:
    """Drop-in for both partitioners' ``_DependencyViewer``: transitive down- and upstreams of every node.

    Nodes added to the graph after construction have none (as a ``defaultdict(set)`` gives them).
    """

    def __init__(self, graph_module: torch.fx.GraphModule):
        self._nodes = list(graph_module.graph.nodes)
        self._index = {node: i for i, node in enumerate(self._nodes)}
        self._down: dict[torch.fx.Node, int] = {}
        self._up: dict[torch.fx.Node, int] = {}
        for node in reversed(self._nodes):  # a graph is in topological order: users come later
            bits = 0
            for user in node.users:
                bits |= 1 << self._index[user] | self._down[user]
            self._down[node] = bits
        for node in self._nodes:
            bits = 0
            for source in node.all_input_nodes:
                bits |= 1 << self._index[source] | self._up[source]
            self._up[node] = bits

    def downstreams_of(self, node: torch.fx.Node) -> NodeBitset:
        return NodeBitset(self._down.get(node, 0), self._nodes, self._index)

    def upstreams_of(self, node: torch.fx.Node) -> NodeBitset:
        return NodeBitset(self._up.get(node, 0), self._nodes, self._index)


@contextlib.contextmanager
def bitset_dependency_views() -> Iterator[None]:
    """While inside, both partitioners build a :class:`BitsetDependencyViewer` instead of their sets."""
    from executorch.exir.backend.canonical_partitioners import group_partitioner
    from torch.fx.passes.infra import partitioner

    with (mock.patch.object(partitioner, "_DependencyViewer", BitsetDependencyViewer),
          mock.patch.object(group_partitioner, "_DependencyViewer", BitsetDependencyViewer)):
        yield
