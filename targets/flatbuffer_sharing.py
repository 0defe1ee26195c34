"""FlatBuffers written with each distinct vector and string once.

A FlatBuffer may reference one vector or string from many tables (the C++ verifier checks offsets, not
uniqueness); the Python object API's ``Pack`` code just never does, so a graph's equal tensor shapes,
permutations, zero points and names are each written as often as they are used. The runtime reads the same
values either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["packed"]


def _sharing_builder(initial: int):
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        def __init__(self):
            super().__init__(initial)
            self.written: dict[tuple[str, bytes], int] = {}
            self.strings: dict[tuple[str | bytes, str], int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 (flatbuffers' name)
            key = (x.dtype.str, x.tobytes())
            if key not in self.written:
                self.written[key] = super().CreateNumpyVector(x)
            return self.written[key]

        def CreateString(self, s, encoding: str = "utf-8", errors: str = "strict") -> int:  # noqa: N802
            if (s, encoding) not in self.strings:
                self.strings[s, encoding] = super().CreateString(s, encoding, errors)
            return self.strings[s, encoding]

    return SharingBuilder()


def packed(table: Any, identifier: bytes) -> bytes:
    """The FlatBuffer of an object-API ``table`` (a generated ``...T`` instance), each equal vector and string once."""
    builder = _sharing_builder(1024)
    builder.Finish(table.Pack(builder), file_identifier=identifier)
    return bytes(builder.Output())
