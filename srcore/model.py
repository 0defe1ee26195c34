"""SwinIR-light (Liang et al., ICCVW 2021, arXiv 2108.10257), written for quantization and export.

Same parameters and state-dict keys as the official SwinIR code, so the official
``002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{2,3,4}.pth`` checkpoints load, but:

- the relative-position bias and the shifted-window mask are computed in ``forward`` for the
  actual (padded) input size: no size-specific buffers, any input size, one mask per forward
  shared by every shifted block, and export-friendly (no data-dependent Python control flow);
  for a fixed export size ``freeze_shape`` turns both into matmuls of small tables (no gather);
- the operands of the two attention matmuls pass through named identity modules
  (``bmm1_q`` after the ``head_dim**-0.5`` scaling, ``bmm1_k``, ``bmm2_attn`` after softmax,
  ``bmm2_v``) that calibration replaces with quantizers; the q/k/v projections are the three
  60-row slices of ``attn.qkv``, which calibration splits into three quantized linears;
- inputs are mirror-padded (``cat([x, flip(x)])``, the SwinIR/2DQuant test code) to a multiple
  of the window size and the output is cropped back.

Dimensions: ``B`` batch, ``C`` channels (embed dim), ``H, W`` feature height/width,
``L = H*W`` tokens, ``N = ws*ws`` tokens per window, ``nW`` windows per image, ``h`` heads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SwinIR", "SwinIRConfig", "VARIANTS", "build_model", "compiled_blocks", "mirror_pad"]

MASK_VALUE = -100.0  # the official code masks cross-region logits with -100, not -inf


@dataclass(frozen=True)
class SwinIRConfig:
    """Architecture of a SwinIR model with ``pixelshuffledirect`` upsampler and ``1conv`` residual."""

    scale: int = 4
    embed_dim: int = 60
    depths: tuple[int, ...] = (6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    img_range: float = 1.0
    rgb_mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)
    drop_path_rate: float = 0.0

    def __post_init__(self):
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale!r}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        for heads in self.num_heads:
            if self.embed_dim % heads:
                raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {heads} heads")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SwinIRConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SwinIRConfig keys {sorted(unknown)}; allowed {sorted(known)}")
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


# Named variants: "light" is the paper's SwinIR-light; "tiny" keeps every code path for fast tests.
VARIANTS: dict[str, dict] = {
    "light": {},
    "tiny": {"embed_dim": 12, "depths": (2, 2), "num_heads": (2, 2)},
}


def build_model(variant: str = "light", scale: int = 4, **overrides) -> SwinIR:
    """Build a named SwinIR variant (``light`` or ``tiny``) at ``scale``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; allowed {sorted(VARIANTS)}")
    return SwinIR(SwinIRConfig(scale=scale, **{**VARIANTS[variant], **overrides}))


# ----------------------------------------------------------------------------------------------
# Helpers (pure functions of shapes and tensors)


def mirror_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, 3, H, W) at the bottom/right to multiples of ``multiple`` by mirror concatenation.

    This is the SwinIR/2DQuant test-time padding ``cat([x, flip(x)])[..., :H + pad]``, which repeats
    the edge pixel (numpy's 'symmetric'), unlike ``F.pad(mode='reflect')``. Images smaller than
    the padding are mirrored repeatedly (1 px -> 2 -> 4 -> 8).
    """
    for dim in (2, 3):
        size = x.shape[dim]
        target = -(-size // multiple) * multiple
        while x.shape[dim] < target:
            x = torch.cat([x, torch.flip(x, [dim])], dim)
        if x.shape[dim] != target:
            x = x.narrow(dim, 0, target)
    return x


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, ws*ws, C), windows in row-major order.

    Written with 4-D tensors only (GPU delegates and NPUs reject rank > 4): rows of windows as
    (B*H/ws, ws, W/ws, ws*C), one transpose, then flattened.
    """
    b, h, w, c = x.shape
    x = x.reshape(b * (h // ws), ws, w // ws, ws * c).transpose(1, 2)  # (B*nH, nW, ws, ws*C)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B*nW, ws*ws, C) -> (B, H, W, C), the inverse of :func:`window_partition` (4-D tensors only)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, w // ws, ws, ws * c).transpose(1, 2)  # (B*nH, ws, nW, ws*C)
    return x.reshape(-1, h, w, c)


class PixelShuffle4D(nn.Module):
    """``nn.PixelShuffle`` with no tensor above rank 4 (the usual form is a 6-D view and permute).

    (B, C r^2, H, W) -> (B C r, H, W, r) puts each sub-pixel column last, then (B C, H, r, W r) its row.
    """

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, channels, h, w = x.shape
        r = self.upscale_factor
        c = channels // (r * r)
        x = x.reshape(b * c * r, r, h, w).permute(0, 2, 3, 1)  # (B C r_i, H, W, r_j)
        x = x.reshape(b * c, r, h, w * r).transpose(1, 2)  # (B C, H, r_i, W r)
        return x.reshape(b, c, h * r, w * r)


def cyclic_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``torch.roll(x, (shift, shift), dims=(1, 2))`` on (B, H, W, C), written as slices + concat.

    Slices and concat lower to every backend (XNNPACK has no kernel for the gather that
    ``roll`` decomposes into).
    """
    h, w = x.shape[1], x.shape[2]
    sh, sw = shift % h, shift % w
    if sh:
        x = torch.cat([x[:, h - sh :], x[:, : h - sh]], dim=1)
    if sw:
        x = torch.cat([x[:, :, w - sw :], x[:, :, : w - sw]], dim=2)
    return x


def relative_position_index(ws: int) -> torch.Tensor:
    """(N*N,) int64 index into the (2ws-1)^2 bias table, as in the official code."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # 2, N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N, N, 2
    rel = rel + (ws - 1)
    return (rel[..., 0] * (2 * ws - 1) + rel[..., 1]).reshape(-1)


def relative_offset_one_hot(ws: int) -> torch.Tensor:
    """(ws*ws, 2ws-1) float: row ``p*ws + q`` is one-hot at ``p - q + ws - 1``, the offset of coordinate p from q.

    The relative-position bias is separable through it (:func:`expand_relative_position_bias`):
    bias[h, (yi, xi), (yj, xj)] = table[h, yi - yj + ws - 1, xi - xj + ws - 1] = (E T_h E^T) up to a
    permutation, two small matmuls instead of a gather (ws = 8: a 64 x 15 table instead of 6 x 64 x 64 values).
    """
    coords = torch.arange(ws)
    offsets = (coords[:, None] - coords[None, :] + ws - 1).reshape(-1)  # (p, q) -> p - q + ws - 1
    return F.one_hot(offsets, 2 * ws - 1).to(torch.float32)


def expand_relative_position_bias(table: torch.Tensor, offsets: torch.Tensor, ws: int) -> torch.Tensor:
    """(h, N, N) biases from a ((2ws-1)^2, h) table and :func:`relative_offset_one_hot`: two matmuls, no gather.

    Exact (each output sums one table entry and zeros). ``h`` may be every block's heads side by
    side: one expansion then serves the whole model (``SwinIR.freeze_shape``).
    """
    heads, n = table.shape[1], ws * ws
    t = table.reshape(2 * ws - 1, 2 * ws - 1, heads).permute(2, 1, 0)  # h, dx, dy
    t = F.linear(t, offsets)  # h, dx, (yi, yj)
    t = F.linear(t.transpose(1, 2), offsets)  # h, (yi, yj), (xi, xj)
    # (h*yi, yj, xi, xj) -> (h*yi, xi, yj, xj): one 4-D transpose (delegates reject rank > 4).
    return t.reshape(heads * ws, ws, ws, ws).transpose(1, 2).reshape(heads, n, n)  # h, (yi, xi), (yj, xj)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device=None) -> torch.Tensor:
    """Additive attention mask (nW, N, N) for shifted windows of an (h, w) feature map.

    Tokens from different regions of the shifted map get ``MASK_VALUE`` (-100), like the official
    ``calculate_mask``; built from ``arange`` comparisons so it traces to a handful of ops.
    """
    region_windows = window_regions(h, w, ws, shift, device)  # nW, N
    different = region_windows[:, None, :] != region_windows[:, :, None]
    return different.to(torch.float32) * MASK_VALUE


def window_regions(h: int, w: int, ws: int, shift: int, device=None) -> torch.Tensor:
    """(nW, N) float region id (0..8) of every token of every window of the shifted (h, w) map."""
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    # Region id 0, 1, 2 along each axis: [0, h-ws), [h-ws, h-shift), [h-shift, h).
    row_region = (rows >= h - ws).long() + (rows >= h - shift).long()
    col_region = (cols >= w - ws).long() + (cols >= w - shift).long()
    region = (row_region[:, None] * 3 + col_region[None, :]).to(torch.float32)  # H, W
    return window_partition(region[None, :, :, None], ws).squeeze(-1)


def mask_from_regions(windows: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """(nW, 1, N, N) shift mask from a window's pattern choice (nW, k) and each pattern's token regions (k, N, m).

    Pattern p masks the pairs of tokens in different regions: ``MASK_VALUE * (1 - R_p R_p^T)`` with R_p
    one-hot per token; a window takes the pattern its one-hot row picks (none: no mask). Every product
    and sum is of zeros and ones, so the values are exactly 0 and -100, and the artifact stores k x N x m
    zeros and ones (3 x 64 x 4 at 64 px) instead of the patterns' k x N x N.
    """
    # (same - 1) * -MASK_VALUE: an int 1 - x would convert a scalar outside XNNPACK's partition
    patterns = (torch.bmm(regions, regions.transpose(1, 2)) - 1.0) * -MASK_VALUE  # k, N, N
    n = regions.shape[1]  # a 3-D bmm, not an mm: XNNPACK's partitioner in ExecuTorch 1.5.1 takes no aten.mm
    nw, k = windows.shape  # reshapes, not an unsqueeze, which it does not take either
    return torch.bmm(windows.reshape(1, nw, k), patterns.reshape(1, k, n * n)).view(nw, 1, n, n)


def widened(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` in ``x``'s dtype; a no-op (no op in an exported graph) when it is already.

    A backend may store a frozen table narrower than the graph computes (``targets.executorch.export_graph``
    keeps the shift mask's one-hots and the bias tables in fp16): the cast is then the graph's first op on it.
    """
    return t if t.dtype == x.dtype else t.to(x.dtype)


def graph_zero(x: torch.Tensor) -> torch.Tensor:
    """A (1, 1) zero computed from ``x``: added to a constant, it keeps converters from folding what follows.

    Converters fold every subgraph of constants, which would store the expanded biases and mask
    again. ``x - x`` survives all three here; litert-torch folds ``x * 0`` and coremltools
    ``clamp(x, 0, 0)``. Exact for finite inputs. The slice is taken on a 3-D view and the zero is
    2-D like the tables it is added to: LiteRT's GPU delegate slices only 3-D/4-D tensors.
    """
    first = x.reshape(1, 1, -1)[..., :1]
    return (first - first).reshape(1, 1)


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole residual branches per sample with probability ``p`` (training only)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


# ----------------------------------------------------------------------------------------------
# Modules, bottom-up


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 on (B, L, C) tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned relative-position bias.

    ``qkv`` rows are [q; k; v] (60 rows each for SwinIR-light). The four ``bmm*`` identities mark
    the matmul operands that quantization wraps.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.bmm1_q = nn.Identity()
        self.bmm1_k = nn.Identity()
        self.bmm2_attn = nn.Identity()
        self.bmm2_v = nn.Identity()
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """(h, N, N) bias gathered from the (2ws-1)^2 x h table (``SwinIR.freeze_shape`` expands all blocks' at once)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index]  # N*N, h
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B*nW, N, C); mask: (nW, 1, N, N) additive or None; bias: (h, N, N), computed here if None.
        Returns (B*nW, N, C).

        q, k and v are head slices of ``qkv``'s output and the matmuls are 3-D ``bmm`` over
        (B*nW*h) windows-and-heads: both lower to every backend without gathers or broadcasts.
        """
        if bias is None:
            bias = self.relative_position_bias()
        bn, n, c = x.shape
        heads = self.num_heads
        # (B*nW, 3h, N, d): heads first, in one transpose for q, k and v (8 ops per block instead of 12).
        qkv = self.qkv(x).reshape(bn, n, 3 * heads, c // heads).transpose(1, 2)

        def per_head(i: int) -> torch.Tensor:  # q, k or v: (B*nW*h, N, d)
            return qkv[:, i * heads : (i + 1) * heads].reshape(bn * heads, n, c // heads)

        q = self.bmm1_q(per_head(0) * self.scale)
        k = self.bmm1_k(per_head(1))
        v = self.bmm2_v(per_head(2))
        # Bias and mask are added in place: each fresh (B*nW, h, N, N) buffer costs page faults on a CPU.
        attn = torch.bmm(q, k.transpose(1, 2)).view(bn, heads, n, n).add_(bias)
        if mask is not None:  # one image (every export): a 4-D add; a batch broadcasts the mask over it
            nw = mask.shape[0]
            (attn if bn == nw else attn.view(bn // nw, nw, heads, n, n)).add_(mask)
        x = torch.bmm(self.bmm2_attn(attn.softmax(dim=-1)).view(bn * heads, n, n), v)
        return self.proj(x.view(bn, heads, n, c // heads).transpose(1, 2).reshape(bn, n, c))


class WindowPiece(nn.Module):
    """One piece of a Swin block in window order (norms, attention, MLP, residuals), as a module call of its own.

    It holds nothing: its calls mark the pieces in an exported graph (``nn_module_stack``), so that a backend
    can lower each piece as a graph of its own, stored once wherever the same piece repeats
    (:mod:`targets.xnnpack_pieces`).
    """

    def forward(self, block: SwinTransformerBlock, x: torch.Tensor, mask: torch.Tensor | None,
                bias: torch.Tensor | None) -> torch.Tensor:
        x = x + block.attn(block.norm1(x), mask, bias)
        return x + block.mlp(block.norm2(x))


class SwinTransformerBlock(nn.Module):
    """LN -> (shifted) window attention -> residual -> LN -> MLP -> residual, on (B, L, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.window_size, self.shift, self.drop_path = window_size, shift, drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.piece = WindowPiece()
        self.window_chunk: int | None = None  # set for export graphs by SwinIR.freeze_shape
        self.equal_pieces = False  # likewise: every piece exactly window_chunk windows

    def forward(self, x: torch.Tensor, hw: tuple[int, int], mask: torch.Tensor | None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, C); ``mask`` is used only by shifted blocks; ``bias``: the attention's, if computed outside."""
        h, w = hw
        b, _, c = x.shape
        ws = self.window_size
        if self.window_chunk and b == 1 and not self.training:
            return self._forward_in_window_chunks(x, hw, mask if self.shift else None, bias)
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = cyclic_shift(y, -self.shift)
        y = self.attn(window_partition(y, ws), mask if self.shift else None, bias)
        y = window_reverse(y, ws, h, w)
        if self.shift:
            y = cyclic_shift(y, self.shift)
        x = x + stochastic_depth(y.reshape(b, h * w, c), self.drop_path, self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def _forward_in_window_chunks(self, x: torch.Tensor, hw: tuple[int, int], mask: torch.Tensor | None,
                                  bias: torch.Tensor | None) -> torch.Tensor:
        """:meth:`forward` of one image with the whole block (norms, attention, MLP, residuals) in window order,
        ``window_chunk`` windows at a time, one piece after another: the same values, since all but the
        attention work token by token. Each piece's tensors then stay in the CPU's cache: a 128 px x4 tile's
        attention logits alone are 25 MB in fp32 (reports/upscale_photo.md measures the gain in XNNPACK).
        With ``equal_pieces`` a last piece of fewer windows starts earlier instead, recomputing windows of the
        piece before it and dropping them: every piece is then one graph, stored once (a 96 px tile's 144
        windows as 3 pieces of 64 for the 64 px tile's graph, :mod:`targets.xnnpack_pieces`)."""
        h, w = hw
        c, ws, step = x.shape[2], self.window_size, self.window_chunk
        y = x.view(1, h, w, c)
        if self.shift:
            y = cyclic_shift(y, -self.shift)
        windows = window_partition(y, ws)  # nW, N, C
        count = len(windows)
        if step >= count:  # one piece (SwinIR.freeze_shape with always_pieces)
            pieces = [self.piece(self, windows, mask, bias)]
        else:
            starts = list(range(0, count, step))
            if self.equal_pieces:
                starts[-1] = count - step
            pieces = [self.piece(self, windows[start : start + step],
                                 None if mask is None else mask[start : start + step], bias) for start in starts]
            if self.equal_pieces and count % step:
                pieces[-1] = pieces[-1][step - count % step :]
        y = window_reverse(torch.cat(pieces) if len(pieces) > 1 else pieces[0], ws, h, w)
        if self.shift:
            y = cyclic_shift(y, self.shift)
        return y.reshape(1, h * w, c)


@contextlib.contextmanager
def compiled_blocks(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """``torch.compile`` every Swin block of ``model`` for the duration of the context (training loops).

    Regional compilation: the 24 blocks share one code object, so dynamo builds a graph per block
    *kind* (shifted or not, quantized or FP, grad or no-grad), not per block, and compiling takes
    a minute instead of several for the whole unrolled model. The blocks are plain again on exit,
    so evaluation at new image sizes does not recompile.
    """
    blocks = [m for m in model.modules() if isinstance(m, SwinTransformerBlock)] if enabled else []
    for block in blocks:
        block.forward = torch.compile(block.forward)  # instance attribute shadows the class method
    try:
        yield model
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


class BasicLayer(nn.Module):
    """A stack of Swin blocks alternating regular and shifted windows; its output is a DQC feature."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, drop_path: list[float]):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio, drop_path[i])
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, hw: tuple[int, int], mask: torch.Tensor | None,
                biases: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        for block, bias in zip(self.blocks, [None] * len(self.blocks) if biases is None else biases):
            x = block(x, hw, mask, bias)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a 3x3 conv, and a residual connection."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, drop_path: list[float]):
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio, drop_path)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], mask: torch.Tensor | None,
                biases: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, hw, mask, biases)
        y = y.transpose(1, 2).reshape(b, c, *hw)  # B, C, H, W
        return self.conv(y).flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> LayerNorm'd (B, L, C) tokens (patch size 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


class SwinIR(nn.Module):
    """SwinIR with the lightweight (``pixelshuffledirect``) upsampler.

    ``forward`` takes (B, 3, H, W) RGB in [0, 1] of any size and returns (B, 3, H*s, W*s).
    """

    def __init__(self, config: SwinIRConfig):
        super().__init__()
        self.config = config
        dim, ws = config.embed_dim, config.window_size
        self.register_buffer("mean", torch.tensor(config.rgb_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("frozen_mask_windows", None, persistent=False)
        self.register_buffer("frozen_mask_regions", None, persistent=False)
        self.register_buffer("frozen_bias_tables", None, persistent=False)
        self.register_buffer("frozen_offsets", None, persistent=False)
        self.frozen_hw: tuple[int, int] | None = None
        self.frozen_bias_spans: list[list[tuple[int, int]]] = []  # per layer, per block: its heads' rows
        self.conv_first = nn.Conv2d(3, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(dim)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        starts = [sum(config.depths[:i]) for i in range(len(config.depths))]
        self.layers = nn.ModuleList(
            RSTB(dim, depth, heads, ws, config.mlp_ratio, rates[start : start + depth])
            for depth, heads, start in zip(config.depths, config.num_heads, starts)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(dim, 3 * config.scale**2, 3, 1, 1), PixelShuffle4D(config.scale))
        self.apply(_init_weights)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of the window -> (B, C, H, W) after the Swin body."""
        b, c, h, w = x.shape
        ws = self.config.window_size
        biases = [None] * len(self.layers)
        if self.frozen_hw == (h, w):
            # graph_zero keeps converters from folding the products back into the (nW, N, N) mask and the
            # blocks x (h, N, N) biases.
            zero = graph_zero(x)
            windows, regions, tables = (widened(t, x) for t in (
                self.frozen_mask_windows, self.frozen_mask_regions, self.frozen_bias_tables))
            mask = mask_from_regions(windows + zero, regions + zero)
            # Every block's bias in one expansion (a dozen ops instead of a dozen per block), then a slice each.
            every = expand_relative_position_bias(tables + zero, self.frozen_offsets, ws)
            biases = [[every[start:stop] for start, stop in spans] for spans in self.frozen_bias_spans]
        elif any(d > 1 for d in self.config.depths):  # (nW, 1, N, N): broadcast over heads (and batch)
            mask = shifted_window_mask(h, w, ws, ws // 2, x.device)[:, None]
        else:
            mask = None
        tokens = self.patch_embed(x)
        for layer, layer_biases in zip(self.layers, biases):
            tokens = layer(tokens, (h, w), mask, layer_biases)
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        x = mirror_pad(x, self.config.window_size)
        x = (x - self.mean) * self.config.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.upsample(x) / self.config.img_range + self.mean
        s = self.config.scale
        if x.shape[2] != h * s or x.shape[3] != w * s:
            x = x[:, :, : h * s, : w * s]
        return x

    @torch.no_grad()
    def freeze_shape(self, h: int, w: int, window_chunk: int | None = None, always_pieces: bool = False) -> SwinIR:
        """Precompute, for (h, w) inputs, the small tables from which the graph rebuilds the shift mask and the biases.

        For export at one fixed size (deployment targets): the ``arange`` comparisons and the bias-table
        gather are ops that integer backends such as XNNPACK do not run, and the expanded constants
        (24 x h x N x N biases, an nW x N x N mask) are most of an artifact's bytes. Frozen, the mask is
        an (nW, k) one-hot choice among its k <= 3 distinct window patterns, each stored as its tokens'
        one-hot regions (k, N, m <= 4; :func:`mask_from_regions`), and the
        biases of all blocks are two matmuls of their tables side by side with one (N, 2ws-1) one-hot
        (:func:`relative_offset_one_hot`), each block taking its heads' slice: all exact, no gather.
        The tables are copied: freeze the final weights. Other input sizes still work (their mask is computed).
        ``window_chunk``: each Swin block runs over at most that many windows at a time
        (``SwinTransformerBlock._forward_in_window_chunks``: faster on CPUs once a tile's tensors outgrow
        the cache; None: the whole image at once, also when it has no more windows than that, since one
        piece would only add slices: 7.6 KB of TFLite graph at 64 px). ``always_pieces``: such an image
        runs as one piece too, in window order, and a larger one's pieces all have ``window_chunk`` windows, the
        last overlapping the one before when the count leaves a remainder, so that every piece is the same
        graph as a smaller tile's (:mod:`targets.xnnpack_pieces`).
        """
        ws = self.config.window_size
        if h % ws or w % ws:
            raise ValueError(f"a frozen shape must be a multiple of the window size {ws}, got {h}x{w}")
        if window_chunk is not None and (isinstance(window_chunk, bool) or not isinstance(window_chunk, int)
                                         or window_chunk < 1):
            raise ValueError(f"window_chunk must be a positive number of windows or None, got {window_chunk!r}")
        split = window_chunk if window_chunk and ((h // ws) * (w // ws) > window_chunk or always_pieces) else None
        for block in self.modules():
            if isinstance(block, SwinTransformerBlock):
                block.window_chunk, block.equal_pieces = split, always_pieces
        # Each window's regions numbered by rank (0..m-1): windows that mask alike get the same row.
        ranks = torch.stack([row.unique(return_inverse=True)[1] for row in window_regions(h, w, ws, ws // 2)])
        patterns, which = torch.unique(ranks, dim=0, return_inverse=True)
        used = patterns.amax(1) > 0  # a window inside one region is not masked: an all-zero one-hot row
        device = self.mean.device
        self.frozen_hw = (h, w)
        self.frozen_mask_windows = F.one_hot(which, len(patterns))[:, used].float().to(device)  # nW, k
        self.frozen_mask_regions = F.one_hot(patterns[used], int(patterns.max()) + 1).float().to(device)  # k, N, m
        self.frozen_offsets = relative_offset_one_hot(ws).to(device)
        tables, self.frozen_bias_spans, start = [], [], 0
        for layer in self.layers:
            self.frozen_bias_spans.append([])
            for block in layer.residual_group.blocks:
                tables.append(block.attn.relative_position_bias_table.detach())
                self.frozen_bias_spans[-1].append((start, start + tables[-1].shape[1]))
                start += tables[-1].shape[1]
        self.frozen_bias_tables = torch.cat(tables, dim=1)  # ((2ws-1)^2, every block's heads)
        return self

    def flops(self, h: int, w: int) -> dict[str, int]:
        """MAC counts at an (h, w) LR input, by SwinIR's own ``flops()`` conventions (2DQuant §6).

        Returns ``{"linear": ..., "conv": ..., "other": ...}`` where ``linear`` is Linear + BMM.
        """
        c, ws = self.config.embed_dim, self.config.window_size
        n, hw = ws * ws, h * w
        nw = hw // n
        linear = 0
        for depth, heads in zip(self.config.depths, self.config.num_heads):
            per_window = n * c * 3 * c + heads * n * (c // heads) * n * 2 + n * c * c
            linear += depth * (nw * per_window + 2 * hw * c * int(c * self.config.mlp_ratio))
        conv = hw * 3 * c * 9 + hw * 3 * c * c + len(self.config.depths) * hw * c * c * 9
        # The upsampler term ignores the scale, as SwinIR's flops() does.
        other = hw * c + sum(self.config.depths) * 2 * c * hw + hw * c * 3 * 9
        return {"linear": linear, "conv": conv, "other": other}


def _init_weights(module: nn.Module) -> None:
    """SwinIR's initialisation: truncated-normal linears, unit LayerNorms, PyTorch-default convs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
