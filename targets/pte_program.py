"""A smaller .pte around the same graphs: the program's flatbuffer with each distinct vector once, segments on 16 bytes.

ExecuTorch 1.5.1 packs the program through its Python object API (``exir/_serialize/_flatbuffer_program.py``,
``_program_to_flatbuffer``) from lists, so every tensor record writes its own ``sizes`` and ``dim_order``
although most are equal; :func:`compact_program` re-packs the finished flatbuffer with equal vectors and strings
shared (:mod:`targets.flatbuffer_sharing`), which the runtime reads the same way. Each constant XNNPACK reads is a
segment of its own (a named data entry), and ExecuTorch starts every segment on a multiple of 128 bytes by
default; :data:`SEGMENT_ALIGNMENT` is what XNNPACK asks of its constants (``xnnpack_graph_serialize``,
``CONSTANT_TENSOR_ALIGNMENT``) and ExecuTorch of the tensors in its constant segment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock

from targets.flatbuffer_sharing import packed

__all__ = ["SEGMENT_ALIGNMENT", "compact_program", "compacted_program"]

SEGMENT_ALIGNMENT = 16


def compacted_program(flatbuffer: bytes) -> bytes:
    """A Program flatbuffer re-packed with each distinct vector and string once (same tables, same values)."""
    from executorch.exir._serialize._flatbuffer_program import _patch_generated_flatbuffer_aliases
    from executorch.exir._serialize.generated.executorch_flatbuffer.Program import Program, ProgramT

    if not Program.ProgramBufferHasIdentifier(flatbuffer, 0):
        raise ValueError("not an ExecuTorch program flatbuffer")
    _patch_generated_flatbuffer_aliases()  # as ExecuTorch's own reader does: the generated modules name their classes
    return packed(ProgramT.InitFromPackedBuf(flatbuffer), bytes(flatbuffer[4:8]))


@contextlib.contextmanager
def compact_program() -> Iterator[None]:
    """While serializing a .pte (``EdgeProgramManager.to_executorch``): its program written by :func:`compacted_program`.

    The extended header and the segment offsets are computed after this step, from the compacted bytes.
    """
    from executorch.exir._serialize import _program
    from executorch.exir._serialize._flatbuffer import _FlatbufferResult

    to_flatbuffer = _program._program_to_flatbuffer

    def compact(*args, **kwargs) -> _FlatbufferResult:
        result = to_flatbuffer(*args, **kwargs)
        return _FlatbufferResult(data=compacted_program(result.data), max_alignment=result.max_alignment)

    with mock.patch.object(_program, "_program_to_flatbuffer", compact):
        yield
