"""RAMiT: Reciprocal Attention Mixing Transformer for lightweight image restoration.

Choi et al., CVPR 2024 Workshops (arXiv 2305.11474). One file, named after the
boxes of the paper's Figure 2:

    shallow          3x3 conv, image -> C features
    stage1..stage4   D-RAMiT blocks (``DRAMiTBlock``): SP-SA + CH-SA, mixed by a MobiVari
    down1, down2     downsizing (``Downsizing``)
    bottleneck       hierarchical fusion of the encoder outputs (``Bottleneck``)
    attn_mix         H-RAMi (``HRAMi``), hierarchical reciprocal attention mixing
    to_target        reconstruction (``Reconstruction``)

Every module and parameter name reproduces the authors' state-dict keys, so their
raw checkpoints load with ``strict=True``.

Two numerically equivalent forward paths (``RAMiT(fast=...)`` / ``net.set_fast``): the reference path
follows the paper's equations (Sec. 3 of arXiv 2305.11474) literally; the fast path runs on channels-last
features, replaces roll + window partition by one cached gather, uses ``scaled_dot_product_attention`` for
SP-SA with the cosine scale folded into q and the relative-position bias as the mask, and computes CH-SA on
the c x c Gram matrix. Both paths share every parameter and buffer, so checkpoints load the same way; both
run in float32, float16 and bfloat16 (autocast or converted weights), with the cosine logits and CH-SA's
sums over all pixels kept in float32.
"""
import contextlib
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .hparams import NORM_STATS, describe, minimal_arguments, norm_mode, resolve_hparams

Tensor = torch.Tensor

LOGIT_SCALE_MAX = math.log(100.0)
# Devices whose default is the fast path. CPU: measured faster (`ramit bench`, docs/benchmarks.md). CUDA: the same
# kernels with no host synchronisation (`tools/gpu_check.py` measures it). Elsewhere (MPS, XPU, ...) the
# fused attention and gathers are unmeasured, so the plain reference path runs.
FAST_PATH_DEVICES = ('cpu', 'cuda')


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample during training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, H, W] map (eps 1e-5)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MobiVariV1(nn.Module):
    """MobiVari v1 (MobileNet-v1 style): depthwise conv with skip, then pointwise conv."""

    def __init__(self, dim: int, out_dim: int, kernel_size: int = 3):
        super().__init__()
        self.dw_conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.pw_conv = nn.Conv2d(dim, out_dim, 1)
        self.act = nn.LeakyReLU()
        self.residual = dim == out_dim

    def forward(self, x: Tensor) -> Tensor:
        t = self.act(self.dw_conv(x)) + x
        y = self.act(self.pw_conv(t))
        return y + x if self.residual else y


def expanded_channels(dim: int, exp_factor: float, expand_groups: int) -> int:
    """MobiVari v2 hidden width: int(dim*e) rounded UP past the next multiple of groups (always adds)."""
    e = int(dim * exp_factor)
    return e + (expand_groups - e % expand_groups)


class MobiVariV2(nn.Module):
    """MobiVari v2 (MobileNet-v2 style): grouped expansion, depthwise conv with skip, linear projection."""

    def __init__(self, dim: int, out_dim: int, kernel_size: int = 3, exp_factor: float = 1.2,
                 expand_groups: int = 4):
        super().__init__()
        hidden = expanded_channels(dim, exp_factor, expand_groups)
        # Registration order dw, pw, exp matches the authors' checkpoint key order.
        self.dw_conv = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.pw_conv = nn.Conv2d(hidden, out_dim, 1)
        self.exp_conv = nn.Conv2d(dim, hidden, 1, groups=expand_groups)
        self.act = nn.LeakyReLU()
        self.residual = dim == out_dim

    def forward(self, x: Tensor) -> Tensor:
        u = self.act(self.exp_conv(x))
        t = self.act(self.dw_conv(u) + u)
        y = self.pw_conv(t)
        return y + x if self.residual else y


def make_mobivari(hp: dict, dim: int, out_dim: int, fuse: bool = False) -> nn.Module:
    """The MobiVari version the hyper-parameters ask for; ``fuse`` selects the bottleneck/H-RAMi expansion."""
    if hp['mv_ver'] == 1:
        return MobiVariV1(dim, out_dim)
    prefix = 'fuse_' if fuse else ''
    return MobiVariV2(dim, out_dim, exp_factor=hp[prefix + 'exp_factor'],
                      expand_groups=hp[prefix + 'expand_groups'])


class ShallowFeature(nn.Module):
    """Shallow feature extraction: a 3x3 conv from the image to C channels."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class QKVProjection(nn.Module):
    """1x1 conv C -> 3C; channel group l holds [q_l, k_l, v_l] of head l."""

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.qkv(x)


def relative_position_index(window_size: int) -> Tensor:
    """Swin's [ws^2, ws^2] index into the (2ws-1)^2-row relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[..., 0] * (2 * window_size - 1) + rel[..., 1]


def window_partition(x: Tensor, ws: int) -> Tensor:
    """[B, L, c, H, W] -> [B*nH*nW, L, ws*ws, c], tokens row-major inside a window."""
    b, heads, c, h, w = x.shape
    x = x.reshape(b, heads, c, h // ws, ws, w // ws, ws)
    return x.permute(0, 3, 5, 1, 4, 6, 2).reshape(-1, heads, ws * ws, c)


def window_reverse(x: Tensor, ws: int, b: int, h: int, w: int) -> Tensor:
    """[B*nH*nW, L, ws*ws, c] -> [B, L*c, H, W] with channels head-major."""
    heads, c = x.shape[1], x.shape[3]
    x = x.reshape(b, h // ws, w // ws, heads, ws, ws, c)
    return x.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, heads * c, h, w)


def _tracing() -> bool:
    """True under torch.compile / export / jit tracing, where Python-side caches must not be used."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def float32_math(device: torch.device):
    """Context in which matmuls stay float32 under autocast (a no-op outside autocast and on other devices).

    Cosine logits reach +-100 (logit scale up to ln 100), where float16's spacing is 0.06 and bfloat16's 0.5,
    and CH-SA sums over every pixel, which overflows float16 (max 65504) on large images.
    """
    if device.type in ('cpu', 'cuda'):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def wide(x: Tensor) -> Tensor:
    """``x`` in float32, or kept as is when already float32 or float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def window_order(h: int, w: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """Flat pixel index (y*W + x) of each token after roll(-shift) and window partition, window-major."""
    ys = (torch.arange(h, device=device) + shift) % h
    xs = (torch.arange(w, device=device) + shift) % w
    idx = ys.view(h // ws, 1, ws, 1) * w + xs.view(1, w // ws, 1, ws)
    return idx.flatten()


def cosine_logits(q: Tensor, k: Tensor, logit_scale: Tensor) -> Tensor:
    """Scaled cosine similarity q^ k^T * exp(min(logit_scale, ln 100)) over the last axis, in float32 (or 64)."""
    with float32_math(q.device):
        attn = F.normalize(wide(q), dim=-1) @ F.normalize(wide(k), dim=-1).transpose(-2, -1)
        return attn * torch.clamp(wide(logit_scale), max=LOGIT_SCALE_MAX).exp()


def unit_scaled(x: Tensor, scale) -> Tensor:
    """x * scale / max(||x||, 1e-12) along the last axis, computed in (at least) float32, returned in x's dtype.

    In float16 the 1e-12 floor underflows to 0 and a sum of squares can overflow, so the norm never runs in
    half precision; the result (at most ``scale`` <= 100 per element) fits any dtype.
    """
    xf = wide(x)
    return (xf * (scale / torch.linalg.vector_norm(xf, dim=-1, keepdim=True).clamp_min(1e-12))).to(x.dtype)


class SPSA(nn.Module):
    """SP-SA: spatial self-attention in (shifted, unmasked) windows with cosine logits and relative bias."""

    def __init__(self, head_dim: int, num_heads: int, window_size: int, shift: int, attn_drop: float,
                 proj_drop: float):
        super().__init__()
        self.num_heads, self.window_size, self.shift = num_heads, window_size, shift
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Conv2d(num_heads * head_dim, num_heads * head_dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)
        # A plain attribute, not a buffer: checkpoints keep exactly the authors' keys.
        self._index_cache: Dict[tuple, Tuple[Tensor, Tensor, Tensor]] = {}

    def relative_position_bias(self) -> Tensor:
        """[L, ws^2, ws^2] bias gathered from the table (one gather, already in head-major order).

        Recomputed on every call rather than cached: checking a cache against the table would cost a
        device-to-host synchronisation per block on CUDA, far more than this small gather.
        """
        return self.relative_position_bias_table.t()[:, self.relative_position_index]

    def _indices(self, h: int, w: int, total_heads: int, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
        """Gather indices (pixels to window tokens, qkv rows to windows, window rows back to pixels)."""
        key = (h, w, total_heads, device)
        cached = None if _tracing() else self._index_cache.get(key)
        if cached is not None:
            return cached
        heads, n = self.num_heads, self.window_size ** 2
        pos = window_order(h, w, self.window_size, self.shift, device).view(-1, 1, n)
        head = torch.arange(heads, device=device).view(1, heads, 1)
        # Rows of the [B, H*W*total_heads, 3c] qkv view, ordered (window, head, token).
        gather = (pos * total_heads + head).flatten()
        # Output row (window, head, token) belongs at pixel-major row pos*heads + head.
        scatter_to = (pos * heads + head).flatten()
        back = torch.empty_like(scatter_to).scatter_(0, scatter_to, torch.arange(scatter_to.numel(),
                                                                                 device=device))
        result = (pos.flatten(), gather, back)
        if not _tracing():
            if len(self._index_cache) >= 8:  # bounded: tiles and images of many sizes pass through
                self._index_cache.clear()
            self._index_cache[key] = result
        return result

    def forward_fast(self, qkv: Tensor, h: int, w: int, ch_helper: Optional[Tensor]) -> Tensor:
        """Fast path. qkv: [B, H*W, L_all, 3c] (pixel-major, our heads first); returns [B, L_sp*c, H, W]."""
        b, hw, total_heads, c3 = qkv.shape
        c, heads, n = c3 // 3, self.num_heads, self.window_size ** 2
        pixels, gather, back = self._indices(h, w, total_heads, qkv.device)
        # One gather does roll(-shift) + window partition + head split.
        win = qkv.reshape(b, hw * total_heads, c3).index_select(1, gather).view(-1, heads, n, c3)
        q, k, v = win.split(c, dim=-1)
        if ch_helper is not None:
            helper = ch_helper.permute(0, 2, 3, 1).reshape(b, hw, -1, c).mean(dim=2)
            v = v * helper.index_select(1, pixels).view(-1, 1, n, c)
        # The cosine scale is folded into q; the fused kernel then computes softmax in float32 itself.
        q = unit_scaled(q, torch.clamp(wide(self.logit_scale), max=LOGIT_SCALE_MAX).exp())
        k = unit_scaled(k, 1.0)
        bias = self.relative_position_bias().to(q.dtype).unsqueeze(0)  # 4-D: CPU's flash kernel needs it
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.attn_drop.p if self.training else 0.0, scale=1.0)
        # The inverse gather undoes partition and roll; proj is pointwise, so it commutes with both.
        out = out.reshape(b, -1, c).index_select(1, back).view(b, h, w, heads * c).permute(0, 3, 1, 2)
        return self.proj_drop(self.proj(out))

    def forward(self, qkv: Tensor, ch_helper: Optional[Tensor]) -> Tensor:
        """qkv: [B, L_sp, 3c, H, W]; ch_helper: previous block's CH-SA output [B, L_ch*c, H, W] or None."""
        b, _, c3, h, w = qkv.shape
        ws, s = self.window_size, self.shift
        if s:
            qkv = torch.roll(qkv, shifts=(-s, -s), dims=(3, 4))
        q, k, v = window_partition(qkv, ws).chunk(3, dim=-1)
        if ch_helper is not None:
            if s:
                ch_helper = torch.roll(ch_helper, shifts=(-s, -s), dims=(2, 3))
            ch_helper = ch_helper.reshape(b, -1, c3 // 3, h, w)
            v = v * window_partition(ch_helper, ws).mean(dim=1, keepdim=True)
        attn = cosine_logits(q, k, self.logit_scale) + wide(self.relative_position_bias())
        attn = self.attn_drop(attn.softmax(dim=-1)).to(v.dtype)
        out = self.proj_drop(self.proj(window_reverse(attn @ v, ws, b, h, w)))
        if s:
            out = torch.roll(out, shifts=(s, s), dims=(2, 3))
        return out


class CHSA(nn.Module):
    """CH-SA: channel self-attention over the whole image (c x c logits per head), cosine logits, no bias."""

    def __init__(self, head_dim: int, num_heads: int, attn_drop: float, proj_drop: float):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Conv2d(num_heads * head_dim, num_heads * head_dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, qkv: Tensor, sp_helper: Optional[Tensor]) -> Tensor:
        """qkv: [B, L_ch, 3c, H, W]; sp_helper: previous block's SP-SA output [B, L_sp*c, H, W] or None."""
        b, heads, c3, h, w = qkv.shape
        q, k, v = qkv.flatten(3).chunk(3, dim=2)
        if sp_helper is not None:
            v = v * sp_helper.mean(dim=1, keepdim=True).flatten(2).unsqueeze(1)
        attn = self.attn_drop(cosine_logits(q, k, self.logit_scale).softmax(dim=-1)).to(v.dtype)
        out = (attn @ v).reshape(b, heads * (c3 // 3), h, w)
        return self.proj_drop(self.proj(out))

    def forward_fast(self, qkv: Tensor, h: int, w: int, sp_helper: Optional[Tensor]) -> Tensor:
        """Fast path. qkv: [B, H*W, L_ch, 3c] (pixel-major view); returns [B, L_ch*c, H, W] channels-last.

        Plain matmuls on the pixel-major views, not scaled_dot_product_attention: with H*W as head dim
        SDPA was 2-3x slower here (it copies to a contiguous layout first). The cosine normalisation is
        applied to the c x c Gram matrix, with the norms from the diagonals of q^T q and k^T k: BLAS sums
        over H*W accurately, while a norm reduction along the strided pixel axis lost up to 4e-5. The sums
        over H*W run in float32 whatever the input dtype (float16 overflows past 65504).
        """
        b, hw, heads, c3 = qkv.shape
        c = c3 // 3
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split(c, dim=-1))  # [B, L, HW, c] views
        if sp_helper is not None:
            v = v * sp_helper.mean(dim=1).reshape(b, 1, hw, 1)
        with float32_math(qkv.device):
            qf, kf = wide(q), wide(k)
            qt, kt = qf.transpose(-2, -1), kf.transpose(-2, -1)
            q_norm = (qt @ qf).diagonal(dim1=-2, dim2=-1).sqrt().clamp_min(1e-12)
            k_norm = (kt @ kf).diagonal(dim1=-2, dim2=-1).sqrt().clamp_min(1e-12)
            scale = torch.clamp(wide(self.logit_scale), max=LOGIT_SCALE_MAX).exp()
            logits = (qt @ kf) / (q_norm[..., :, None] * k_norm[..., None, :]) * scale
        attn = self.attn_drop(logits.softmax(dim=-1)).to(v.dtype)
        out = v @ attn.transpose(-2, -1)  # [B, L, HW, c]
        out = out.permute(0, 2, 1, 3).reshape(b, h, w, heads * c).permute(0, 3, 1, 2)
        return self.proj_drop(self.proj(out))


class FFN(nn.Module):
    """Feed-forward network: 1x1 conv expand, exact GELU, 1x1 conv back."""

    def __init__(self, dim: int, hidden_ratio: float, drop: float):
        super().__init__()
        hidden = int(dim * hidden_ratio)
        self.hidden = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.out = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.out(self.drop(self.act(self.hidden(x)))))


class DRAMiTBlock(nn.Module):
    """D-RAMiT block: SP-SA and CH-SA heads in parallel, mixed by a MobiVari, post-norm residuals + FFN."""

    def __init__(self, hp: dict, num_heads: int, shift: int, drop_path: float, helper: bool):
        super().__init__()
        dim = hp['dim']
        self.head_dim = dim // num_heads
        self.ch_heads = int(num_heads * hp['chsa_head_ratio'])
        self.sp_heads = num_heads - self.ch_heads
        self.helper = helper
        self.qkv_proj = QKVProjection(dim, hp['qkv_bias'])
        self.sp_attn = (SPSA(self.head_dim, self.sp_heads, hp['window_size'], shift, hp['attn_drop'],
                             hp['proj_drop']) if self.sp_heads else None)
        self.ch_attn = (CHSA(self.head_dim, self.ch_heads, hp['attn_drop'], hp['proj_drop'])
                        if self.ch_heads else None)
        self.mobivari = make_mobivari(hp, dim, dim)
        self.norm1 = ChannelLayerNorm(dim)
        self.ffn = FFN(dim, hp['hidden_ratio'], hp['proj_drop'])
        self.norm2 = ChannelLayerNorm(dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, sp_prev: Optional[Tensor], ch_prev: Optional[Tensor], fast: bool = False
                ) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """Returns (output, attention map a, SP-SA output, CH-SA output); the last two feed the next block."""
        b, _, h, w = x.shape
        heads = self.sp_heads + self.ch_heads
        use_helper = self.helper and sp_prev is not None and ch_prev is not None
        ch_help, sp_help = (ch_prev, sp_prev) if use_helper else (None, None)
        if fast:
            # Pixel-major [B, H*W, heads, 3c]: a free view of channels-last features.
            qkv = self.qkv_proj(x).permute(0, 2, 3, 1).reshape(b, h * w, heads, 3 * self.head_dim)
            sp_out = self.sp_attn.forward_fast(qkv, h, w, ch_help) if self.sp_attn is not None else None
            ch_out = (self.ch_attn.forward_fast(qkv[:, :, self.sp_heads:], h, w, sp_help)
                      if self.ch_attn is not None else None)
        else:
            qkv = self.qkv_proj(x).reshape(b, heads, 3 * self.head_dim, h, w)
            sp_out = self.sp_attn(qkv[:, :self.sp_heads], ch_help) if self.sp_attn is not None else None
            ch_out = self.ch_attn(qkv[:, self.sp_heads:], sp_help) if self.ch_attn is not None else None
        a = self.mobivari(torch.cat([t for t in (sp_out, ch_out) if t is not None], dim=1))
        y = self.drop_path(self.norm1(a)) + x
        out = self.drop_path(self.norm2(self.ffn(y))) + y
        return out, a, sp_out, ch_out


class Stage(nn.Module):
    """A sequence of D-RAMiT blocks with alternating (0, ws/2) window shifts and a shared helper chain."""

    def __init__(self, hp: dict, num_heads: int, drop_paths: Sequence[float]):
        super().__init__()
        ch_heads = int(num_heads * hp['chsa_head_ratio'])
        # The reciprocal exchange needs both branches; a stage with an empty branch skips it entirely.
        helper = hp['helper'] and 0 < ch_heads < num_heads
        ws = hp['window_size']
        self.blocks = nn.ModuleDict(OrderedDict(
            (f'block{i}', DRAMiTBlock(hp, num_heads, 0 if i % 2 == 0 else ws // 2, p, helper))
            for i, p in enumerate(drop_paths)))

    def forward(self, x: Tensor, fast: bool = False) -> Tuple[Tensor, Tensor]:
        """Returns the last block's output and its attention map."""
        sp, ch, a = None, None, x
        for block in self.blocks.values():
            x, a, sp, ch = block(x, sp, ch, fast)
        return x, a


class Downsizing(nn.Module):
    """Halve H and W: 2x2 sub-grids stacked on channels (not pixel_unshuffle's order), LayerNorm, MobiVari 4C->C."""

    def __init__(self, hp: dict):
        super().__init__()
        dim = hp['dim']
        self.norm = ChannelLayerNorm(4 * dim)
        self.reduction = make_mobivari(hp, 4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]], dim=1)
        return self.reduction(self.norm(x))


class Bottleneck(nn.Module):
    """Fuse the encoder outputs at full size: each plus leaky-ReLU'd pooled shallow features, pixel-shuffled up."""

    def __init__(self, hp: dict):
        super().__init__()
        dim = hp['dim']
        self.mobivari = make_mobivari(hp, dim + dim // 4 + dim // 16, dim, fuse=True)
        self.norm = ChannelLayerNorm(dim)

    def forward(self, shallow: Tensor, feats: Sequence[Tensor]) -> Tensor:
        fused, s = [], shallow
        for i, f in enumerate(feats):
            if i:
                s = F.max_pool2d(s, 2)
            fused.append(F.pixel_shuffle(f + F.leaky_relu(s), 2 ** i))
        return self.norm(self.mobivari(torch.cat(fused, dim=1)))


class HRAMi(nn.Module):
    """H-RAMi: mix the four stages' attention maps at full size into a multiplicative modulation map."""

    def __init__(self, hp: dict):
        super().__init__()
        dim = hp['dim']
        self.mobivari = make_mobivari(hp, dim + dim // 4 + dim // 16 + dim, dim, fuse=True)

    def forward(self, attn_maps: Sequence[Tensor]) -> Tensor:
        *encoder, last = attn_maps
        maps = [F.pixel_shuffle(a, 2 ** i) for i, a in enumerate(encoder)] + [last]
        return self.mobivari(torch.cat(maps, dim=1))


class Reconstruction(nn.Module):
    """Reconstruction: tail MobiVaris, 3x3 conv to out*s^2, pixel shuffle by s, final 3x3 conv."""

    def __init__(self, hp: dict, out_chans: int, upscale: int):
        super().__init__()
        dim = hp['dim']
        self.mobivari = nn.Sequential(OrderedDict(
            (f'mobivari{i}', make_mobivari(hp, dim, dim)) for i in range(hp['tail_mv'])))
        self.conv = nn.Conv2d(dim, out_chans * upscale ** 2, 3, padding=1)
        self.upscale = upscale
        self.final_conv = nn.Conv2d(out_chans, out_chans, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_conv(F.pixel_shuffle(self.conv(self.mobivari(x)), self.upscale))


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------
class RAMiT(nn.Module):
    """RAMiT for SR x2/x3/x4 ('sr'), colour/gray denoising ('dn'/'graydn'), low-light ('lle'), deraining ('dr').

    ``variant`` and ``task`` fill in every hyper-parameter; any of ``HYPER_PARAMETERS`` can be overridden by
    keyword. ``upscale`` defaults to 2 for 'sr' and must be 1 (or omitted) for the other tasks. Inputs are
    [B, in_chans, H, W] floats in [0, 1] of any H, W; outputs are [B, in_chans, H*s, W*s], not clamped.
    ``fast``: None (default) takes the fast path on the devices in ``FAST_PATH_DEVICES`` (training and
    eval; dropout and drop-path draws differ between the paths, their distributions do not) and the
    reference path elsewhere; True / False force one path (see ``set_fast``).
    """

    def __init__(self, variant: str = 'RAMiT', task: str = 'sr', upscale: Optional[int] = None,
                 fast: Optional[bool] = None, **overrides):
        super().__init__()
        hp = resolve_hparams(variant, task, upscale, **overrides)
        self.hparams = hp
        self.fast = fast
        self.variant, self.task, self.upscale = variant, task, hp['upscale']
        self.in_chans = hp['in_chans']
        self.residual = task != 'sr'
        self.pad_unit = 2 ** (len(hp['depths']) - 2) * hp['window_size']
        self.img_norm = hp['img_norm']
        if self.img_norm:
            mean, std = NORM_STATS[norm_mode(task, self.upscale)]
            self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        # Stochastic depth rate grows linearly over all blocks of the network.
        rates = torch.linspace(0, hp['drop_path'], sum(hp['depths']), device='cpu').tolist()
        bounds = [sum(hp['depths'][:i]) for i in range(5)]
        stage = [Stage(hp, hp['num_heads'][i], rates[bounds[i]:bounds[i + 1]]) for i in range(4)]

        self.shallow = ShallowFeature(self.in_chans, hp['dim'])
        self.stage1 = stage[0]
        self.down1 = Downsizing(hp)
        self.stage2 = stage[1]
        self.down2 = Downsizing(hp)
        self.stage3 = stage[2]
        self.bottleneck = Bottleneck(hp)
        self.stage4 = stage[3]
        self.attn_mix = HRAMi(hp)
        self.to_target = Reconstruction(hp, self.in_chans, self.upscale)

    def arguments(self) -> dict:
        """The ``RAMiT(...)`` arguments that rebuild this network (variant, task, upscale and its overrides)."""
        return minimal_arguments(self.hparams)

    def describe(self) -> str:
        """One line: variant, task, scale, channels and the overrides of a custom network."""
        return describe(self.arguments())

    def set_fast(self, fast: Optional[bool]) -> 'RAMiT':
        """Choose the forward path: True fast, False reference, None by device (FAST_PATH_DEVICES); returns self."""
        if fast not in (None, True, False):
            raise ValueError(f'RAMiT.set_fast: expected True, False or None, got {fast!r}')
        self.fast = fast
        return self

    def uses_fast_path(self, device: Optional[torch.device] = None) -> bool:
        """Whether a forward call on ``device`` (default: the parameters' device) takes the fast path."""
        if self.fast is not None:
            return self.fast
        device = device if device is not None else self.shallow.conv.weight.device
        return device.type in FAST_PATH_DEVICES

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is [B, in_chans, H, W]."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            gray_hint = (' (a gray image into a colour network? convert it to RGB or use task graydn)'
                         if x.dim() == 4 and x.shape[1] == 1 else '')
            raise ValueError(f'{self.describe()} expects input of shape [B, {self.in_chans}, H, W], '
                             f'got {list(x.shape)}{gray_hint}')

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        h, w = x.shape[-2:]
        unit = self.pad_unit
        # Zero padding comes before normalisation, so padded pixels become -mean/std.
        x = F.pad(x, (0, (-w) % unit, 0, (-h) % unit))
        if self.img_norm:
            x = (x - self.mean) / self.std
        fast = self.uses_fast_path(x.device)
        if fast:
            # Channels-last makes the per-pixel LayerNorms and the attention's pixel-major views copy-free.
            x = x.contiguous(memory_format=torch.channels_last)
        shallow = self.shallow(x)
        o1, a1 = self.stage1(shallow, fast)
        o2, a2 = self.stage2(self.down1(o1), fast)
        o3, a3 = self.stage3(self.down2(o2), fast)
        o4, a4 = self.stage4(self.bottleneck(shallow, (o1, o2, o3)), fast)
        o4 = o4 * self.attn_mix((a1, a2, a3, a4))
        y = self.to_target(o4 + shallow)
        if self.residual:
            y = y + x
        if self.img_norm:
            y = y * self.std + self.mean
        s = self.upscale
        return y[..., :h * s, :w * s]
