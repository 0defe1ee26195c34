"""Reading and writing SwinIR weights: the official ``{"params": state_dict}`` format and plain state dicts.

Loading is strict: every parameter of the architecture must be present with the right shape and
nothing else may be left over (except the official size-specific buffers, which this model
recomputes), so a wrong architecture or scale is an error naming the keys, never a partial load.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from srcore.model import (
    SwinIR,
    SwinIRConfig,
    relative_position_index,
    shifted_window_mask,
)

__all__ = ["CheckpointError", "read_state_dict", "load_weights_", "save_official", "weights_sha256", "infer_scale"]

# Buffers the official code stores for its 64x64 training size; this model computes them in forward.
_RECOMPUTED_BUFFERS = ("attn_mask", "relative_position_index")
_WRAPPER_KEYS = ("params", "params_ema")
_MAX_LISTED_KEYS = 8


class CheckpointError(ValueError):
    """A weights file that cannot be read or does not fit the requested model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` (official ``{"params": ...}`` or plain) or ``.safetensors`` state dict.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        size = path.stat().st_size
        raise CheckpointError(f"cannot read weights file {path} ({size} bytes; truncated or corrupt?): {err}") from err
    if isinstance(data, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"{path} does not hold a state dict (expected a dict of tensors, optionally under 'params')"
        )
    return data


def infer_scale(state_dict: dict[str, torch.Tensor]) -> int | None:
    """The upscaling factor implied by the upsampler conv (3*s^2 output channels), or None."""
    weight = state_dict.get("upsample.0.weight")
    if weight is None:
        return None
    s2, rem = divmod(weight.shape[0], 3)
    s = round(s2**0.5)
    return s if rem == 0 and s * s == s2 else None


def load_weights_(model: SwinIR, state_dict: dict[str, torch.Tensor], source: str = "weights") -> SwinIR:
    """Load ``state_dict`` into ``model`` in place, strictly.

    Official buffers (``attn_mask``, ``relative_position_index``) are dropped. Any missing,
    unexpected or mis-shaped key raises :class:`CheckpointError` listing them.
    """
    ckpt_scale = infer_scale(state_dict)
    if ckpt_scale is not None and ckpt_scale != model.scale:
        raise CheckpointError(f"{source} is a x{ckpt_scale} model, but a x{model.scale} model was requested")
    params = {k: v for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in _RECOMPUTED_BUFFERS}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(params[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(params) & set(expected)
        if params[k].shape != expected[k].shape
    )
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:_MAX_LISTED_KEYS])}{' ...' if len(keys) > _MAX_LISTED_KEYS else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{source} does not match SwinIR {model.config}: " + "; ".join(problems)
        )
    model.load_state_dict({k: v.to(torch.float32) for k, v in params.items()}, strict=True)
    return model


def save_official(model: SwinIR, path: str | os.PathLike, train_size: int = 64) -> None:
    """Save in the official SwinIR format, buffers included, so the official code (and spandrel) loads it.

    Args:
        train_size: the ``img_size`` the official ``attn_mask`` buffers are computed for.
    """
    config: SwinIRConfig = model.config
    ws = config.window_size
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mask = shifted_window_mask(train_size, train_size, ws, ws // 2)
    for name, module in model.named_modules():
        if hasattr(module, "shift"):  # a SwinTransformerBlock
            state[f"{name}.attn.relative_position_index"] = relative_position_index(ws).view(ws * ws, ws * ws)
            if module.shift:
                state[f"{name}.attn_mask"] = mask.clone()
    atomic_torch_save({"params": state}, path)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through a temp file and ``os.replace``: no half-written file on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def weights_sha256(model: torch.nn.Module) -> str:
    """Hash of the parameters (names, shapes, fp32 bytes), independent of the file format they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
