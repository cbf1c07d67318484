"""The paper's evaluation protocol (ARCHITECTURE.md section 9), shared by BasicSR, mmengine and `ramit infer`."""
from typing import Optional

import torch
import torch.nn as nn

Tensor = torch.Tensor
EVAL_MULTIPLE = 32  # 4 * window_size of the published models


def pad_symmetric(x: Tensor, multiple: int) -> Tensor:
    """Mirror-pad (edge pixel repeated) the bottom and right of [B, C, H, W] up to a multiple of ``multiple``."""
    for dim in (2, 3):
        size = x.shape[dim]
        target = -(-size // multiple) * multiple
        # Each flip-and-append doubles the extent, so tiny inputs (smaller than the pad) are covered too.
        while x.shape[dim] < target:
            x = torch.cat([x, torch.flip(x, [dim])], dim)
        x = x.narrow(dim, 0, target)
    return x


def protocol_forward(net: nn.Module, lq: Tensor, scale: Optional[int] = None, multiple: int = EVAL_MULTIPLE
                     ) -> Tensor:
    """Symmetric-pad ``lq`` to ``multiple``, run ``net``, crop the output back to (H*s, W*s)."""
    h, w = lq.shape[-2:]
    s = scale if scale is not None else getattr(net, 'upscale', 1)
    out = net(pad_symmetric(lq, multiple))
    return out[..., :h * s, :w * s]

