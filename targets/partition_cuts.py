"""Cutting partitions out of a method without copying and recompiling the whole method after each cut.

ExecuTorch cuts each partition out of a method's graph with ``create_submodule_from_nodes``, which then
re-sorts the whole remaining graph with torch's ``legalize_graph``: it copies every node into a new graph in
topological order and sets that graph on the module, which regenerates the module's Python source
(``GraphModule.recompile``) and that of every partition cut so far. All of it once per partition, so it grows
as the square of a method's partitions: in the default x4 W4 build (64 + 128 px, 170 partitions) it was 23 s
of the 197 s of its lowering (node copies, ``py-spy``) and 72 s of regenerated code of 807 under ``cProfile``.

Inside :func:`cuts_sorted_in_place` the graph being partitioned is re-sorted in place instead: the same
order (``legalize_graph``'s own queue), and what a copy would renew is renewed (each node's users in that
order, its metadata a shallow copy, the graph's names and node lookup table as a new graph builds them, the
tracer fields a new graph has), so the graph is the one ``legalize_graph`` makes, on the same node objects.
Nothing runs or reads the module's code while its partitions are cut (``_create_partitions_in_graph_module``
and what it calls work on the graph), so the code is regenerated once, when the cutting ends. A test compares
the re-sort with ``legalize_graph`` node by node, and one lowers the tiny model with and without: equal bytes.
The default x4 W4 .pte lowers in 177 s instead of 201, the 4-size one in 631 s instead of 794 (README).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import operator
from collections.abc import Iterator
from unittest import mock

import torch

__all__ = ["cuts_sorted_in_place", "sort_like_legalize_graph"]

# torch 2.13's legalize_graph (torch/fx/passes/tools_common.py) moves these to the front of its queue.
_PRIORITIZED_OPS = (
    operator.add, operator.mul, operator.sub, operator.floordiv, operator.truediv, operator.mod, operator.le,
    operator.lt, operator.ge, operator.gt, operator.eq, operator.ne,
    torch.ops.aten.sym_constrain_range.default, torch.ops.aten.sym_constrain_range_for_size.default,
    torch.ops.aten._assert_async.msg, torch.ops.aten.scalar_tensor.default, torch.ops.aten._assert_scalar.default,
)


def _legalized_order(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The order in which ``legalize_graph`` copies the nodes of ``graph``."""
    indeg = dict.fromkeys(graph.nodes, 0)
    for node in graph.nodes:
        for user in node.users:
            indeg[user] += 1
    queue = collections.deque(node for node in graph.nodes if indeg[node] == 0)
    order = []
    while queue:
        current = queue.popleft()
        order.append(current)
        for user in current.users:
            indeg[user] -= 1
            if indeg[user] == 0:
                if user.op == "call_function" and user.target in _PRIORITIZED_OPS:
                    queue.appendleft(user)
                else:
                    queue.append(user)
    if len(order) < len(indeg):
        raise RuntimeError(f"Input graph has cycles, unable to add {[n for n in indeg if indeg[n] != 0]}")
    return order


def sort_like_legalize_graph(graph: torch.fx.Graph) -> None:
    """Make ``graph`` the graph that ``legalize_graph`` would set on its module, without copying its nodes and
    without regenerating the module's code."""
    from torch.fx.graph import _FindNodesLookupTable, _Namespace

    order = _legalized_order(graph)
    position = {node: i for i, node in enumerate(order)}
    names, lookup = _Namespace(), _FindNodesLookupTable()
    for node in order:
        graph._root._prepend(node)  # to the end: the nodes end in `order`
        names.associate_name_with_obj(names.create_name(node.name, None), node)  # (unique names stay as they are)
        lookup.insert(node)
        node.meta = copy.copy(node.meta)
        users = sorted(node.users, key=position.__getitem__)  # a copy's users are listed as they were copied
        node.users.clear()
        node.users.update(dict.fromkeys(users))
    graph._graph_namespace, graph._find_nodes_lookup_table = names, lookup
    graph._tracer_cls = graph._tracer_extras = None
    graph._co_fields = {}


@contextlib.contextmanager
def cuts_sorted_in_place() -> Iterator[None]:
    """While inside, ExecuTorch's re-sort after each partition cut out of a method sorts it in place
    (:func:`sort_like_legalize_graph`), and the method's code is regenerated once after its last cut (also after a
    failure). A re-sort of any other graph module is ``legalize_graph``'s own."""
    from executorch.exir import lowered_backend_module
    from executorch.exir.backend import backend_api

    legalize, create_partitions = lowered_backend_module.legalize_graph, backend_api._create_partitions_in_graph_module
    partitioning: list = []  # the graph modules whose partitions are being cut, innermost last

    def legalize_in_place(graph_module):
        if not partitioning or graph_module is not partitioning[-1]:
            return legalize(graph_module)
        sort_like_legalize_graph(graph_module.graph)
        return graph_module

    def create_partitions_then_recompile(tagged_graph_module, *args, **kwargs):
        partitioning.append(tagged_graph_module)
        try:
            return create_partitions(tagged_graph_module, *args, **kwargs)
        finally:
            partitioning.pop()
            tagged_graph_module.recompile()

    with (mock.patch.object(lowered_backend_module, "legalize_graph", legalize_in_place),
          mock.patch.object(backend_api, "_create_partitions_in_graph_module", create_partitions_then_recompile)):
        yield
