"""spandrel's SwinIR as an independent reference implementation (tests and the latency benchmark).

``import spandrel`` imports every architecture, and one of them needs torchvision, which cannot
sit beside the CPU torch wheel; so the unmodified SwinIR module is imported through a stub
package (install spandrel with ``pip install --no-deps spandrel==0.4.2``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types

import torch


@functools.cache
def _swinir_class() -> type:
    spec = importlib.util.find_spec("spandrel")
    if spec is None:
        raise ImportError("spandrel is not installed: run the README's install command")
    package = types.ModuleType("spandrel")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["spandrel"] = package
    return importlib.import_module("spandrel.architectures.SwinIR.__arch.SwinIR").SwinIR


def spandrel_swinir_light(scale: int) -> torch.nn.Module:
    """spandrel's SwinIR with the SwinIR-light hyper-parameters (random weights, train mode)."""
    return _swinir_class()(
        upscale=scale, in_chans=3, img_size=64, window_size=8, img_range=1.0, depths=[6, 6, 6, 6],
        embed_dim=60, num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv",
    )
