"""The paper's evaluation protocol (README, "Testing with the published weights"), shared by BasicSR, mmengine and
`ramit infer`: mirror-pad the input on the right and bottom to a multiple of the network's padding unit
(``RAMiT.pad_unit``, 4 x window size: 32 for the published models), restore, crop the output back."""
from typing import Optional

import torch
import torch.nn as nn

Tensor = torch.Tensor


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


def protocol_forward(net: nn.Module, lq: Tensor, scale: Optional[int] = None, multiple: Optional[int] = None
                     ) -> Tensor:
    """Symmetric-pad ``lq`` to ``multiple`` (default ``net.pad_unit``), run ``net``, crop back to (H*s, W*s)."""
    h, w = lq.shape[-2:]
    s = scale if scale is not None else getattr(net, 'upscale', 1)
    out = net(pad_symmetric(lq, net.pad_unit if multiple is None else multiple))
    return out[..., :h * s, :w * s]
