"""Execute a Core ML ML program on Linux by interpreting its MIL operations (Core ML itself runs only on Apple systems).

The saved package's program (:func:`mil_program`) is walked op by op; every op is
computed in float32 with PyTorch and its result rounded to the op's declared output dtype (fp16
for this model), so values are stored between ops as Core ML stores them. It is not bit-exact
with Core ML's CPU/GPU/Neural Engine kernels (they also compute inside an op in fp16 and in
another order), but it runs the artifact's own program, tables and constants end to end: a wrong
weight, lookup table, mask or layout shows up as a large error, which the build compares against
the PyTorch simulation. Only the ops SwinIR-light's program uses are implemented; any other
raises ``NotImplementedError`` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from targets.base import TargetError, quiet_tools

__all__ = ["MilInterpreter", "mil_program"]


def mil_program(package: Path):
    """The MIL program of a saved .mlpackage, with weights loaded (works without macOS)."""
    with quiet_tools():
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import (
            load as milproto_load,
        )

        spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
        weights_dir = Path(package) / "Data" / "com.apple.CoreML" / "weights"
        return milproto_load(spec, spec.specificationVersion, file_weights_dir=str(weights_dir)), spec


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    index = []
    for axis in range(x.dim()):
        start = None if begin_mask is not None and begin_mask[axis] else int(begin[axis])
        stop = None if end_mask is not None and end_mask[axis] else int(end[axis])
        step = 1 if stride is None else int(stride[axis])
        index.append(start if squeeze_mask is not None and squeeze_mask[axis] else slice(start, stop, step))
    return x[tuple(index)]


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    if pad_type == "custom":
        top, bottom, left, right = (int(p) for p in pad)
        x = F.pad(x, (left, right, top, bottom))
    elif pad_type == "same":
        kh, kw = weight.shape[-2:]
        x = F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
    elif pad_type != "valid":
        raise NotImplementedError(f"conv pad_type {pad_type!r}")
    strides = [1, 1] if strides is None else [int(s) for s in strides]
    dilations = [1, 1] if dilations is None else [int(d) for d in dilations]
    return F.conv2d(x, weight, bias, stride=strides, dilation=dilations, groups=int(groups))


def _layer_norm(x, axes, gamma=None, beta=None, epsilon=1e-5):
    axes = sorted(int(a) % x.dim() for a in np.atleast_1d(axes))
    if axes != list(range(x.dim() - len(axes), x.dim())):
        raise NotImplementedError(f"layer_norm over non-trailing axes {axes}")
    return F.layer_norm(x, x.shape[x.dim() - len(axes):], gamma, beta, float(epsilon))


def _matmul(x, y, transpose_x=False, transpose_y=False):
    return torch.matmul(x.transpose(-1, -2) if transpose_x else x, y.transpose(-1, -2) if transpose_y else y)


def _split(x, axis, split_sizes=None, num_splits=None):
    sizes = [int(s) for s in split_sizes] if split_sizes is not None else x.shape[int(axis)] // int(num_splits)
    return torch.split(x, sizes, dim=int(axis))


def _concat(values, axis, interleave=False):
    if interleave:
        raise NotImplementedError("concat with interleave")
    return torch.cat(values, dim=int(axis))


def _squeeze(x, axes=None):
    if axes is None:
        return x.squeeze()
    for axis in sorted((int(a) % x.dim() for a in np.atleast_1d(axes)), reverse=True):
        x = x.squeeze(axis)
    return x


def _gelu(x, mode="EXACT"):
    return F.gelu(x, approximate="tanh" if mode == "TANH_APPROXIMATION" else "none")


def _lut_to_dense(indices, lut, vector_axis=None):
    from coremltools.optimize._utils import lut_to_dense

    return torch.from_numpy(lut_to_dense(indices.numpy(), lut.numpy(), None).astype(np.float32))


def _blockwise_shift_scale(data, scale, offset=None):
    if offset is not None:
        data = data.float() - offset.float()
    return data.float() * scale


_OPS = {
    "reshape": lambda x, shape: x.reshape([int(s) for s in shape]),
    "transpose": lambda x, perm: x.permute([int(p) for p in perm]),
    "linear": lambda x, weight, bias=None: F.linear(x, weight, bias),
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "real_div": lambda x, y: x / y,
    "softmax": lambda x, axis: torch.softmax(x, dim=int(axis)),
    "pixel_shuffle": lambda x, upscale_factor: F.pixel_shuffle(x, int(upscale_factor)),
    "cast": lambda x, dtype: x,  # the output dtype rounding below does the cast
    "slice_by_index": _slice_by_index,
    "conv": _conv,
    "layer_norm": _layer_norm,
    "matmul": _matmul,
    "split": _split,
    "concat": _concat,
    "squeeze": _squeeze,
    "gelu": _gelu,
    "constexpr_lut_to_dense": _lut_to_dense,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
}


def _stored(value, var):
    """``value`` rounded to ``var``'s MIL dtype (fp16 values are kept as float32 tensors holding fp16 numbers)."""
    from coremltools.converters.mil.mil import types

    if isinstance(value, torch.Tensor) and value.is_floating_point():
        value = value.float()
        if types.builtin_to_string(var.dtype) == "fp16":
            value = value.half().float()
    return value


class MilInterpreter:
    """``MilInterpreter(package, tile)(lr=array) -> {output name: float32 array}``.

    ``tile``: run the function whose input is ``tile`` pixels wide (a package may hold one per tile size);
    None: ``main``, the package's default.
    """

    def __init__(self, package: str | Path, tile: int | None = None):
        program, _ = mil_program(Path(package))
        self.function = program.functions["main" if tile is None else self._function_for(program, package, tile)]
        self._last_use = self._last_uses(self.function)

    @staticmethod
    def _function_for(program, package, tile: int) -> str:
        """The name of the function whose input is ``tile`` pixels wide."""
        sides = {name: function.inputs[next(iter(function.inputs))].shape[-1]
                 for name, function in program.functions.items()}
        named = [name for name, side in sides.items() if side == tile]
        if not named:
            raise TargetError(f"{package} runs no {tile} px tile (its functions: "
                              + ", ".join(f"{name} {side} px" for name, side in sides.items()) + ")")
        return named[0]

    @staticmethod
    def _last_uses(function) -> dict[int, list[str]]:
        """Op index -> the values no later op reads: freed after that op (a 128 px x4 tile held 8.9 GB of them)."""
        keep = {out.name for out in function.outputs}
        last = {}
        for index, op in enumerate(function.operations):
            for var in op.inputs.values():
                for v in var if isinstance(var, (list, tuple)) else [var]:
                    if v.name not in keep:
                        last[v.name] = index
        freed: dict[int, list[str]] = {}
        for name, index in last.items():
            freed.setdefault(index, []).append(name)
        return freed

    @staticmethod
    def _value(var, env: dict[str, Any]):
        if var.name in env:
            return env[var.name]
        value = var.val
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            return torch.from_numpy(value.astype(np.float32) if value.dtype.kind == "f" else value.copy())
        if isinstance(value, (np.generic,)):
            return value.item()
        return value

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        env: dict[str, Any] = {name: _stored(torch.from_numpy(np.asarray(inputs[name], dtype=np.float32)), var)
                               for name, var in self.function.inputs.items()}
        for index, op in enumerate(self.function.operations):
            if op.op_type == "const":
                continue  # read through Var.val when used
            if op.op_type not in _OPS:
                raise NotImplementedError(f"MIL op {op.op_type!r} ({op.name}) is not interpreted")
            kwargs = {}
            for key, var in op.inputs.items():
                kwargs[key] = [self._value(v, env) for v in var] if isinstance(var, (list, tuple)) else self._value(var, env)
            results = _OPS[op.op_type](**kwargs)
            results = results if isinstance(results, (list, tuple)) else [results]
            for out, value in zip(op.outputs, results):
                env[out.name] = _stored(value, out)
            for name in self._last_use.get(index, ()):
                env.pop(name, None)
        return {out.name: env[out.name].numpy() for out in self.function.outputs}
