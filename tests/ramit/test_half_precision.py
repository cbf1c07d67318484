"""float16 and bfloat16: finite everywhere and close to float32, on both forward paths (CPU here; CUDA in gpu_check).

Cosine logits and CH-SA's sums over all pixels stay in float32 (``float32_math``, ``wide``); the rest runs in the
half type. Before that, float16 gave NaN on a 128x128 photo (the Gram diagonal over H*W overflowed 65504).
"""
import math
from typing import Tuple

import pytest
import torch

from ramit import RAMiT
from ramit.network import CHSA, SPSA
from tests.ramit.conftest import photo_tensor, psnr, published

# (checkpoint, darken) -> minimum PSNR (dB) against float32 for float16 and bfloat16.
CASES = {
    'RAMiT-1_X2': (1.0, 50.0, 45.0),
    'RAMiT-slimSR_X2': (1.0, 50.0, 45.0),
    'RAMiT-slimLLE_LLE': (0.2, 42.0, 38.0),  # low-light input: the photo scaled to 20 % brightness
}


@pytest.fixture(scope='module')
def photo(datasets_dir) -> torch.Tensor:
    """A 64x64 crop of Kodak kodim05 (busy texture), RGB [1, 3, 64, 64] in [0, 1]."""
    return photo_tensor(datasets_dir / 'Kodak24' / 'kodim05.png', box=(100, 200, 64, 64))


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
@pytest.mark.parametrize('name', list(CASES))
def test_half_precision_close_to_float32(reference_dir, photo, name, fast):
    darken, min_fp16, min_bf16 = CASES[name]
    net = published(reference_dir, name).set_fast(fast)
    x = photo * darken
    with torch.no_grad():
        full = net(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            autocast_bf16 = net(x)
        fp16 = net.half()(x.half())
        bf16 = net.float().to(torch.bfloat16)(x.bfloat16())  # from the float32 weights, not float16-rounded ones
    for label, out, bound in (('float16', fp16, min_fp16), ('bf16 autocast', autocast_bf16, min_bf16),
                              ('bf16 weights', bf16, min_bf16)):
        assert torch.isfinite(out).all(), f'{name} {label}: non-finite output'
        assert psnr(out, full) >= bound, f'{name} {label}: {psnr(out, full):.1f} dB against float32'


def test_channel_attention_float16_on_2048_squared_maps():
    """CH-SA sums over 4.2 M pixels of |x| ~ 4: float16 would overflow there; both paths stay close to float32."""
    torch.manual_seed(0)
    size, c = 2048, 4
    attn = CHSA(c, 1, 0.0, 0.0).eval()
    with torch.no_grad():
        attn.logit_scale.fill_(math.log(50.0))
    qkv = torch.randn(1, 1, 3 * c, size, size) * 4
    helper = torch.randn(1, 2 * c, size, size)

    def both(dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """(reference path, fast path) outputs of the attention in ``dtype``."""
        module, x, h = attn.to(dtype), qkv.to(dtype), helper.to(dtype)
        pixel_major = x.permute(0, 3, 4, 1, 2).reshape(1, size * size, 1, 3 * c)
        with torch.no_grad():
            return module(x, h), module.forward_fast(pixel_major, size, size, h)

    ref32, _ = both(torch.float32)
    for out in both(torch.float16):
        assert torch.isfinite(out).all()
        assert (out.float() - ref32).abs().max().item() < 1e-2  # outputs reach 2.4; float16 spacing there 2e-3


def test_spatial_attention_float16_large_values_and_zero_vectors():
    """SP-SA with |x| ~ 8, logit scale 80, a large bias and an all-zero region (norm 0): finite, close to float32.

    Its sums run over one window's 16 channels, so their size does not grow with the image: a large map is
    checked on the default (fast) path at 1024x1024, both paths against float32 on 256x256.
    """
    torch.manual_seed(0)
    c = 16
    attn = SPSA(c, 1, 8, 4, 0.0, 0.0).eval()
    with torch.no_grad():
        attn.logit_scale.fill_(math.log(80.0))
        attn.relative_position_bias_table.normal_(0, 2)

    def run(size: int, dtype: torch.dtype, fast: bool) -> torch.Tensor:
        """The attention on a size x size map of large values with a zero corner."""
        x = torch.randn(1, 1, 3 * c, size, size, generator=torch.Generator().manual_seed(1)) * 8
        x[..., :64, :64] = 0
        module, x = attn.to(dtype), x.to(dtype)
        with torch.no_grad():
            if fast:
                return module.forward_fast(x.permute(0, 3, 4, 1, 2).reshape(1, size * size, 1, 3 * c), size, size,
                                           None)
            return module(x, None)

    assert torch.isfinite(run(1024, torch.float16, fast=True)).all()
    for fast in (True, False):
        ref = run(256, torch.float32, fast)
        out = run(256, torch.float16, fast)
        assert torch.isfinite(out).all()
        assert (out.float() - ref).abs().mean().item() < 0.02 * ref.abs().mean().item()


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
def test_float16_training_steps_with_grad_scaler(photo, fast):
    """AMP float16 with a GradScaler on a tiny RAMiT (LR patch 64 of a real photo): finite, steps taken, loss falls.

    The CUDA run with the trained network and batch 32 is in tools/gpu_check.py (CPU float16 is slow).
    """
    torch.manual_seed(0)
    net = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4,
                fast=fast).train()
    x = torch.nn.functional.interpolate(photo, scale_factor=0.5, mode='bicubic', antialias=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler('cpu')
    losses, steps = [], 0
    for _ in range(4):
        opt.zero_grad()
        with torch.autocast('cpu', dtype=torch.float16):
            loss = (net(x).float() - photo).abs().mean()
        assert torch.isfinite(loss)
        scaler.scale(loss).backward()
        scale = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        steps += scaler.get_scale() >= scale  # the scale only drops when a step was skipped (inf/NaN grads)
        losses.append(loss.item())
    assert steps >= 3 and losses[-1] < losses[0]
