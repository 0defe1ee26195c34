"""Int8 convolution filters that XNNPACK runs on fp32 inputs: the convolution as patches times a fully connected op.

XNNPACK's convolution takes an int8 filter only with int8 inputs (XNNPACK 92a7ad501b, the one ExecuTorch 1.5.1
vendors, ``src/subgraph/convolution-2d.c``: a ``qcint8`` filter runs in ``qd8``, ``qdu8`` or ``qs8`` kernels), so
int8 filters there meant quantizing each tile's input too, and an artifact that no longer equalled its
simulation. Its fully connected op does take an int8 per-channel filter with fp32 inputs
(``src/subgraph/fully-connected.c``, ``fc_type_f32_f32_qc8w``), decoding the codes in the kernel. So a 3x3
convolution is written as its patches (the input in NHWC, padded, its nine shifted views side by side) times the
filter as a (out, 9 * in) matrix (:class:`PatchConv`, rank 4 throughout), and the serializer stores that matrix
as int8 codes with the grid's channel scales (:func:`int8_patch_filters`): ExecuTorch's partitioner takes no
Linear whose weight alone is quantized (``backends/xnnpack/partition/config/gemm_configs.py``: a dequantized
weight needs a dequantized input). The nine views cost copies a convolution does not make
(reports/conv_weights_executorch.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from targets.base import ChannelGrid, TargetError

__all__ = ["PatchConv", "conv_codes", "int8_patch_filters", "patch_codes"]


class PatchConv(nn.Module):
    """A 3x3, stride 1, padding 1 ``nn.Conv2d`` as ``F.linear`` over its input's patches: the same values, NCHW in
    and out."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) != ((3, 3), (1, 1), (1, 1),
                                                                                        (1, 1), 1):
            raise TargetError(f"only 3x3 convolutions of stride 1, padding 1 run as patches, got {conv}")
        weight = conv.weight.detach()
        self.register_buffer("weight", weight.permute(0, 2, 3, 1).reshape(len(weight), -1).contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))
        patches = torch.cat([padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)], dim=-1)
        return F.linear(patches, self.weight, self.bias).permute(0, 3, 1, 2)


def patch_codes(codes: torch.Tensor) -> torch.Tensor:
    """A convolution's (out, in, kh, kw) codes in :class:`PatchConv`'s (out, kh * kw * in) order."""
    return codes.permute(0, 2, 3, 1).reshape(len(codes), -1)


def conv_codes(patches: np.ndarray) -> np.ndarray:
    """:func:`patch_codes` undone, on the codes read back from a .pte: (out, kh * kw * in) -> (out, in, kh, kw)."""
    out, patch = patches.shape
    return patches.reshape(out, 3, 3, patch // 9).transpose(0, 3, 1, 2)


@contextlib.contextmanager
def int8_patch_filters(grids: Sequence[ChannelGrid]) -> Iterator[None]:
    """While lowering: serialize each :class:`PatchConv` filter of ``grids`` as XNNPACK ``qcint8`` with the grid's
    channel scales, and its bias divided by them.

    A filter is known by its values (its grid's decoded weight in :class:`PatchConv`'s order). The bias is
    divided because XNNPACK's ``f32_qc8w`` kernels scale the bias with the sum (``(bias + sum x q) * scale``:
    ``src/f32-qc8w-gemm/gen/f32-qc8w-gemm-1x8-minmax-avx2-broadcast.c``) and its packing leaves the bias as given.
    """
    from executorch.backends.xnnpack.operators import node_visitor
    from executorch.backends.xnnpack.operators.quant_params import QuantParams
    from executorch.backends.xnnpack.utils.utils import is_param_node

    scales = {patch_codes(g.weight).float().numpy().tobytes(): g.scales.float() for g in grids}
    get_param = node_visitor.get_param_tensor
    from_weights, from_bias = QuantParams.from_weights, QuantParams.from_bias
    found: set[bytes] = set()

    def scales_of(program, node) -> torch.Tensor | None:
        if not isinstance(node, torch.fx.Node) or not is_param_node(program, node):
            return None
        tensor = get_param(program, node)
        if tensor is None or tensor.dim() != 2 or tensor.dtype != torch.float32:
            return None
        key = tensor.contiguous().numpy().tobytes()
        if key not in scales:
            return None
        found.add(key)
        return scales[key]

    def bias_scales(program, node) -> torch.Tensor | None:
        for user in node.users:
            if "linear" in str(user.target) and len(user.args) > 2 and user.args[2] is node:
                return scales_of(program, user.args[1])
        return None

    def int8_weights(cls, node, program=None):
        channel = scales_of(program, node) if program is not None else None
        if channel is None:
            return from_weights(node, program)
        params = cls(per_channel=True, q_input=node, scale=channel, zp=torch.zeros(len(channel), dtype=torch.int64),
                     axis=0, dtype=torch.int8, qmax=127, qmin=-127, is_output=False, is_input=False)
        params.sr2bit_weight_only = True
        return params

    def bias_of_int8_weights(cls, bias, weight_params, input_params):
        if getattr(weight_params, "sr2bit_weight_only", False) and input_params is None:
            return None  # fp32 bias, divided by the channel scales as it is serialized
        return from_bias(bias, weight_params, input_params)

    def param_tensor(program, node):
        tensor = get_param(program, node)
        channel = bias_scales(program, node) if tensor is not None and tensor.dim() == 1 else None
        return tensor if channel is None else tensor / channel

    with (mock.patch.object(node_visitor, "get_param_tensor", param_tensor),
          mock.patch.multiple(QuantParams, from_weights=classmethod(int8_weights),
                              from_bias=classmethod(bias_of_int8_weights))):
        yield
    if len(found) != len(scales):
        raise TargetError(f"{len(scales) - len(found)} of {len(scales)} int8 convolution filters were not serialized "
                          f"as int8 (targets.xnnpack_convs.PatchConv)")
