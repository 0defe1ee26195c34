"""One decomposition of each method when XNNPACK keeps every op it asked to keep (targets.edge_decompositions)."""

import pytest
import torch
from torch import nn

from targets.edge_decompositions import one_decomposition_when_every_kept_op_passes

pytest.importorskip("executorch")


class Linears(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


class Keeps:
    """A partitioner that keeps aten.linear whole where ``check`` accepts the node."""

    def __init__(self, check):
        self.check = check

    def ops_to_not_decompose(self, program):
        return [torch.ops.aten.linear.default], self.check


def test_the_single_decomposition_is_taken_only_when_every_kept_op_passes():
    from executorch.exir.program import _program

    program = torch.export.export(Linears().eval(), (torch.rand(2, 8),)).run_decompositions({})
    linears = [n for n in program.graph_module.graph.nodes if n.target == torch.ops.aten.linear.default]
    assert len(linears) == 2
    original = _program._can_skip_using_EDGE_DO_NOT_DECOMP
    with one_decomposition_when_every_kept_op_passes():
        can_skip = _program._can_skip_using_EDGE_DO_NOT_DECOMP
        assert can_skip(Keeps(None), program)
        assert can_skip(Keeps(lambda node: True), program)
        assert not can_skip(Keeps(lambda node: node is not linears[1]), program)  # one rejected: both passes
        assert not original(Keeps(lambda node: True), program)  # ExecuTorch's own: any check means both passes
    assert _program._can_skip_using_EDGE_DO_NOT_DECOMP is original


def test_a_lowering_decomposes_once_with_the_same_program(monkeypatch):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torch.export import ExportedProgram

    example = torch.rand(2, 8)
    calls, decompose = [], ExportedProgram.run_decompositions
    monkeypatch.setattr(ExportedProgram, "run_decompositions",
                        lambda self, *args, **kwargs: (calls.append(1), decompose(self, *args, **kwargs))[1])
    buffers = []
    for single in (False, False, True):  # the first traces XNNPACK's patterns (decomposing them) on first use
        calls.clear()
        program = torch.export.export(Linears().eval(), (example,))
        with one_decomposition_when_every_kept_op_passes() if single else torch.no_grad():
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        buffers.append((len(calls), lowered.to_executorch().buffer))
    _, (plain, theirs), (single, ours) = buffers
    assert (plain, single) == (3, 1)  # functionalisation, then two passes or none (nothing left to decompose)
    assert ours == theirs
