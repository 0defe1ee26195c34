"""Data parallelism under ``torchrun``: one process (rank) per device, each computing a share of the global batch.

Why: training SwinIR-light to the official quality is about a GPU-day, and DQC at the paper's length
minutes to tens of minutes per model and bit width; ``torchrun --nproc_per_node N -m pipeline ...``
spreads both over N devices. ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
without them (a plain ``python -m pipeline``) :func:`process_group` yields :data:`SINGLE` and
nothing here costs anything.

The protocol the loops follow (``pipeline.train``, ``calibration.dqc``):

- Every rank draws the same global batch plan and computes only its rows, :meth:`Distributed.shard`
  (B / N consecutive rows): the crops of a step are those of one process, whatever N.
- :meth:`Distributed.wrap` puts the model in ``DistributedDataParallel``, which averages the
  gradients; with a mean loss per rank, that is the one-process mean over the global batch.
- Only rank 0 (:attr:`Distributed.is_main`) validates, logs, shows progress and writes files.
- Ctrl-C: ``torchrun`` and every rank get SIGINT (torchrun also forwards its own). A rank interrupted
  at its own moment may be inside a collective while another has already left, so under torchrun
  SIGINT only sets a flag and :meth:`Distributed.end_step` (one all-reduce with the loss) tells
  every rank to stop after the same step; the loops then raise ``KeyboardInterrupt`` together and
  rank 0 saves its checkpoint. A rank that fails closes its connections: the others' next
  collective raises (gloo: "Connection closed by peer"), and ``torchrun`` sends SIGTERM (then
  SIGKILL after 30 s) to whatever still runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator

import torch
import torch.distributed as torch_dist
from torch import nn

__all__ = ["SINGLE", "Distributed", "process_group"]

log = logging.getLogger(__name__)


class Distributed:
    """This process's place among the ranks, and the few collectives the training loops need.

    Args:
        rank: 0 .. world_size - 1.
        world_size: number of processes sharing each global batch.
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank, self.world_size = rank, world_size
        self._stop_requested = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, logs, shows progress and writes files."""
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size``: e.g. 8 over 2 ranks, rank 1 -> rows 4:8.

        Raises:
            ValueError: ``batch_size`` is not a multiple of the world size (unequal shards would
                make DDP's mean of per-rank means differ from the mean over the batch).
        """
        if batch_size % self.world_size:
            raise ValueError(f"the batch size {batch_size} does not divide among {self.world_size} processes; "
                             f"use a multiple of {self.world_size}")
        n = batch_size // self.world_size
        return slice(self.rank * n, (self.rank + 1) * n)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` (which averages the gradients of its trainable
        parameters in backward and starts every rank from rank 0's values), or ``model`` itself
        on one process. Set ``requires_grad`` before: DDP only syncs what is trainable then."""
        if not self.enabled:
            return model
        device = next(model.parameters()).device
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False,  # synced once at init; SwinIR's buffers are constants
        )

    def end_step(self, loss: torch.Tensor) -> tuple[float, bool]:
        """The mean of ``loss`` over the ranks and whether any rank got Ctrl-C, in one all-reduce.

        Every rank must call it once per step, so that all of them stop after the same step.
        """
        if not self.enabled:
            return loss.item(), False
        packed = torch.stack([loss.detach().float().reshape(()),
                              torch.tensor(float(self._stop_requested), device=loss.device)])
        torch_dist.all_reduce(packed)
        total, stops = packed.tolist()
        return total / self.world_size, stops > 0

    def _request_stop(self, signum, frame) -> None:
        if not self._stop_requested:
            log.warning("rank %d: interrupted; every rank stops after this step", self.rank)
        self._stop_requested = True


SINGLE = Distributed()  # one process: every helper above is a no-op


@contextlib.contextmanager
def process_group(device: str | torch.device) -> Iterator[Distributed]:
    """Join the ``torchrun`` process group for the duration (NCCL on CUDA, gloo on CPU), or yield :data:`SINGLE`.

    On CUDA each rank uses the GPU ``LOCAL_RANK``, made the current device so that ``"cuda"``
    means it. Under torchrun SIGINT only requests a stop (:meth:`Distributed.end_step`).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield SINGLE
        return
    missing = [name for name in ("RANK", "LOCAL_RANK") if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set: launch with torchrun")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    ctx = Distributed(rank, world_size)
    previous = signal.signal(signal.SIGINT, ctx._request_stop)
    try:
        yield ctx
    finally:
        signal.signal(signal.SIGINT, previous)
        torch_dist.destroy_process_group()
