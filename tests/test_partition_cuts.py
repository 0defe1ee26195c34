"""Partitions cut out of a method with its graph re-sorted in place and its code regenerated once
(targets.partition_cuts)."""

import pytest
import torch
from torch import nn
from torch.fx.passes.tools_common import legalize_graph

from targets.partition_cuts import cuts_sorted_in_place, sort_like_legalize_graph

pytest.importorskip("executorch")


class Branches(nn.Module):
    """Branches whose topological order differs from the traced one, with `operator.add`s that legalize_graph
    puts first in its queue and names that repeat (add, add_1, ...)."""

    def forward(self, x, y):
        a = x + 1
        b = torch.relu(y) * 2
        c = a + b
        d = torch.sigmoid(x) - c
        return d + a, b.sum() + torch.tanh(c).mean()


def _traced_and_edited() -> torch.fx.GraphModule:
    """Branches traced, then edited as a cut edits a graph: a node inserted early whose users were listed before
    it, one replaced, one erased; every call makes the same graph."""
    module = torch.fx.symbolic_trace(Branches())
    graph = module.graph
    by_name = {node.name: node for node in graph.nodes}
    with graph.inserting_after(by_name["y"]):
        negated = graph.call_function(torch.neg, (by_name["x"],))
    by_name["sub"].replace_input_with(by_name["sigmoid"], negated)
    graph.erase_node(by_name["sigmoid"])
    with graph.inserting_before(by_name["output"]):
        extra = graph.call_function(torch.add, (by_name["relu"], negated))
    by_name["add_2"].replace_input_with(by_name["sub"], extra)  # sub loses its user, stays in the graph
    return module


def _state(module: torch.fx.GraphModule) -> dict:
    """What a later pass can see of a graph: its nodes in order with their users' order, names and lookups."""
    graph = module.graph
    return {"nodes": [(n.name, n.op, str(n.target), str(n.args), [u.name for u in n.users]) for n in graph.nodes],
            "lookup": {key: [n.name for n in nodes] for key, nodes in graph._find_nodes_lookup_table.table.items()
                       if nodes},
            "names": (graph._graph_namespace._used_names, graph._graph_namespace._base_count,
                      {n.name: name for n, name in graph._graph_namespace._obj_to_name.items()}),
            "tracer": (graph._tracer_cls, graph._tracer_extras, graph._co_fields), "code": module.code}


def test_the_in_place_sort_is_legalize_graphs_sort():
    theirs, ours = _traced_and_edited(), _traced_and_edited()
    assert _state(theirs) == _state(ours)
    metas = {node: node.meta for node in ours.graph.nodes}
    legalize_graph(theirs)
    nodes = set(ours.graph.nodes)
    sort_like_legalize_graph(ours.graph)
    ours.recompile()
    assert set(ours.graph.nodes) == nodes  # the same node objects, in legalize_graph's order
    assert all(node.meta is not metas[node] and node.meta == metas[node] for node in nodes)
    assert _state(ours) == _state(theirs)
    assert [n.name for n in ours.graph.nodes] != [n.name for n in _traced_and_edited().graph.nodes]  # it moved
    for module in (theirs, ours):  # an edit after the sort names and orders alike
        graph = module.graph
        with graph.inserting_before(graph.output_node()):
            graph.call_function(torch.add, (next(iter(graph.nodes)), 1))
        legalize_graph(module) if module is theirs else sort_like_legalize_graph(module.graph)
        module.recompile()
    assert _state(ours) == _state(theirs)
    x, y = torch.rand(3), torch.rand(3)
    assert all(torch.equal(a, b) for a, b in zip(ours(x, y), theirs(x, y)))


class ThreePartitions(nn.Module):
    """Linears that XNNPACK runs, between flips that it does not: three partitions."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = torch.relu(layer(x.flip(-1) if i else x))
        return x


def _lower(in_place: bool, monkeypatch) -> tuple[int, int, torch.Tensor]:
    """(regenerations of the code of a module being partitioned, XNNPACK partitions, the lowered program's output)
    of one lowering."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    from torch.fx import GraphModule

    calls, recompile = [], GraphModule.recompile

    def counted(self):  # a module whose graph calls submodules: the method whose partitions are cut out
        if any(node.op == "call_module" for node in self.graph.nodes):
            calls.append(self)
        return recompile(self)

    monkeypatch.setattr(GraphModule, "recompile", counted)
    example = torch.linspace(-1, 1, 16).reshape(2, 8)
    program = torch.export.export(ThreePartitions().eval(), (example,))
    if in_place:
        with cuts_sorted_in_place():
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    else:
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    regenerations = len(calls)
    graph_module = lowered.exported_program().graph_module
    partitions = sum("executorch_call_delegate" in str(n.target) for n in graph_module.graph.nodes)
    assert graph_module.code == graph_module.graph.python_code("self").src  # not stale
    output = Runtime.get().load_program(lowered.to_executorch().buffer).load_method("forward").execute([example])[0]
    return regenerations, partitions, output


def test_a_method_is_recompiled_once_after_its_partitions_are_cut(monkeypatch):
    _lower(False, monkeypatch)  # XNNPACK's partitioner traces its patterns on first use (recompiling them)
    (plain, partitions, theirs), (in_place, same, ours) = _lower(False, monkeypatch), _lower(True, monkeypatch)
    assert partitions == same == 3
    assert plain - in_place == partitions - 1  # one regeneration after the last cut instead of one after each
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(ours, ThreePartitions().eval()(torch.linspace(-1, 1, 16).reshape(2, 8)))


def test_the_patch_applies_only_inside_the_context():
    from executorch.exir import lowered_backend_module
    from executorch.exir.backend import backend_api

    before = (lowered_backend_module.legalize_graph, backend_api._create_partitions_in_graph_module)
    with pytest.raises(RuntimeError), cuts_sorted_in_place():
        assert lowered_backend_module.legalize_graph is not before[0]
        raise RuntimeError("a failed lowering")
    assert (lowered_backend_module.legalize_graph, backend_api._create_partitions_in_graph_module) == before
