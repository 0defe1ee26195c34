"""Lowering without copying every node's provenance at every pass.

torch.fx records where each node came from as a chain of ``NodeSource`` records in ``node.meta["from_node"]``,
one link per pass that re-created the node, and each new record deep-copies the whole chain before it
(``torch/fx/traceback.py``, ``NodeSource.__init__``, called from ``set_current_meta`` for every node an
``ExportPass`` re-creates). ExecuTorch runs dozens of such passes over every node, and XNNPACK's preprocessing
another dozen over every partition, so the copies grow as the square of the number of passes: in the default
x4 W4 build (64 + 128 px, 170 XNNPACK partitions) they were a fifth of the lowering's time (``cProfile``:
``copy.deepcopy`` 165 s of 760). The records are never changed once made (readers such as ExecuTorch's
``DebugHandleGeneratorPass`` only follow a chain to its first node), so while inside :func:`shared_node_provenance`
a new record shares the chain before it instead of copying it: the same records, the same debug handles, the
same .pte byte for byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from unittest import mock

__all__ = ["shared_node_provenance"]


@contextlib.contextmanager
def shared_node_provenance() -> Iterator[None]:
    """While inside, ``NodeSource(node)`` keeps a shallow copy of ``node.meta["from_node"]`` (a new list of the
    same records) instead of a deep one."""
    from torch.fx import traceback as fx_traceback

    # fx_traceback.copy is the module `copy`; NodeSource.__init__ is its only caller of deepcopy.
    with mock.patch.object(fx_traceback, "copy", SimpleNamespace(deepcopy=list, copy=fx_traceback.copy.copy)):
        yield
