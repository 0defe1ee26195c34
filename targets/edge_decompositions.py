"""One decomposition of each method instead of two when XNNPACK keeps every op it asked to keep.

``to_edge_transform_and_lower`` asks the partitioner which ATen ops to keep whole (XNNPACK: ``linear`` and the
like) and a check of each instance. With a check, ExecuTorch takes its EDGE_DO_NOT_DECOMP path: the method is
decomposed twice more after functionalisation, the instances that pass renamed out of the way in between, so
that only those stay whole (``executorch/exir/program/_program.py``, ``_gen_edge_manager_for_partitioners``).
Without a check it keeps every instance and decomposes once, not at all when nothing left to decompose occurs
(``_can_skip_using_EDGE_DO_NOT_DECOMP``). When every instance passes the check the two keep the same ops, so
inside :func:`one_decomposition_when_every_kept_op_passes` ExecuTorch takes the second path then. The check
runs here on the functionalised method, where ExecuTorch runs it after one more decomposition that keeps those
ops: the same nodes for this model, whose methods hold only ``linear`` among them (every one XNNPACK's); a test
lowers the tiny model with and without (equal bytes), and so did the default x4 build (``cmp``). The default x4
W4 .pte lowers in 152 s instead of 177 (README).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

__all__ = ["one_decomposition_when_every_kept_op_passes"]


@contextlib.contextmanager
def one_decomposition_when_every_kept_op_passes() -> Iterator[None]:
    """While inside, ExecuTorch skips its EDGE_DO_NOT_DECOMP path for a method whose every instance of an op the
    partitioner keeps passes the partitioner's check."""
    from executorch.exir.program import _program

    def every_kept_op_passes(partitioner, program) -> bool:
        kept, check = partitioner.ops_to_not_decompose(program)
        return check is None or all(check(node) for node in program.graph_module.graph.nodes
                                    if node.op == "call_function" and node.target in kept)

    with mock.patch.object(_program, "_can_skip_using_EDGE_DO_NOT_DECOMP", every_kept_op_passes):
        yield
