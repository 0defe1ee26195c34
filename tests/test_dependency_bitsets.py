"""The partitioners' reachability as bitsets (targets.dependency_bitsets) equals their own node sets."""

import pytest
import torch
from torch import nn

from srcore.model import SwinIR, SwinIRConfig
from targets.dependency_bitsets import BitsetDependencyViewer, bitset_dependency_views
from targets.executorch import export_graph

group_partitioner = pytest.importorskip("executorch.exir.backend.canonical_partitioners.group_partitioner")


def _chunked_graph() -> torch.fx.GraphModule:
    """A tiny SwinIR traced in window chunks: branches, joins and repeated pieces, as the lowered graphs have."""
    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(embed_dim=12, depths=(2,), num_heads=(2,))).eval()
    return torch.export.export(export_graph(model, 16, window_chunk=2), (torch.rand(1, 3, 16, 16),)).graph_module


def test_bitsets_hold_the_same_nodes_as_the_partitioners_sets():
    graph_module = _chunked_graph()
    theirs = group_partitioner._DependencyViewer(graph_module)  # downstreams and upstreams as sets
    ours = BitsetDependencyViewer(graph_module)
    nodes = list(graph_module.graph.nodes)
    assert len(nodes) > 200
    for node in nodes:
        down, up = ours.downstreams_of(node), ours.upstreams_of(node)
        assert list(down) == [n for n in nodes if n in theirs.downstreams_of(node)]  # graph order
        assert list(up) == [n for n in nodes if n in theirs.upstreams_of(node)]
        assert len(down) == len(theirs.downstreams_of(node)) and len(up) == len(theirs.upstreams_of(node))
        assert all(n in down for n in theirs.downstreams_of(node))
        assert node not in down and node not in up
    stranger = torch.fx.Graph().placeholder("x")  # a node made after the viewer: reaches nothing, as before
    assert list(ours.downstreams_of(stranger)) == [] and stranger not in ours.downstreams_of(nodes[0])


def test_the_patch_applies_only_inside_the_context():
    from torch.fx.passes.infra import partitioner

    before = (partitioner._DependencyViewer, group_partitioner._DependencyViewer)
    with bitset_dependency_views():
        assert partitioner._DependencyViewer is BitsetDependencyViewer
        assert group_partitioner._DependencyViewer is BitsetDependencyViewer
    assert (partitioner._DependencyViewer, group_partitioner._DependencyViewer) == before
    with pytest.raises(RuntimeError), bitset_dependency_views():
        raise RuntimeError("a failed lowering")
    assert (partitioner._DependencyViewer, group_partitioner._DependencyViewer) == before


def test_same_partitions_with_bitsets():
    """XNNPACK's partitioner proposes the same partitions (same node names) with either viewer."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge

    class TwoPaths(nn.Module):  # a supported and an unsupported path that join: merging must avoid a cycle
        def forward(self, x):
            y = torch.relu(x) + 1
            z = torch.cumsum(y, dim=-1)  # not an XNNPACK op, between two supported parts
            return torch.relu(y * z) + y

    def partitions() -> list[list[str]]:
        edge = to_edge(torch.export.export(TwoPaths(), (torch.rand(2, 8),)))
        result = XnnpackPartitioner().partition(edge.exported_program())
        tags = {}
        for node in result.tagged_exported_program.graph.nodes:
            if "delegation_tag" in node.meta:
                tags.setdefault(node.meta["delegation_tag"], []).append(node.name)
        return sorted(tags.values())

    plain = partitions()
    with bitset_dependency_views():
        assert partitions() == plain
    assert len(plain) >= 2
