"""The paper's evaluation protocol, shared by BasicSR, mmengine, spandrel, `ramit infer` and the ONNX export:
mirror-pad the input on the right and bottom to a multiple of the network's padding unit (``RAMiT.pad_unit``,
4 x window size: 32 for the published models), restore, crop the output back.

The padding is one gather per axis whose indices follow from the size, so a traced graph (ONNX) keeps it for every
input size, tiny ones included.
"""
from typing import Optional

import torch
import torch.nn as nn

Tensor = torch.Tensor


def mirror_indices(size, target: int, device: torch.device) -> Tensor:
    """Indices 0..size-1, then size-1..0, then 0.. again, ``target`` of them: symmetric padding (the edge pixel
    repeated) that also covers pads longer than the image."""
    j = torch.arange(target, device=device) % (2 * size)
    return torch.where(j < size, j, 2 * size - 1 - j)


def pad_symmetric(x: Tensor, multiple: int) -> Tensor:
    """Mirror-pad (edge pixel repeated) the bottom and right of [B, C, H, W] up to a multiple of ``multiple``."""
    for dim in (2, 3):
        size = x.shape[dim]
        x = x.index_select(dim, mirror_indices(size, (size + multiple - 1) // multiple * multiple, x.device))
    return x


def protocol_forward(net: nn.Module, lq: Tensor, scale: Optional[int] = None, multiple: Optional[int] = None
                     ) -> Tensor:
    """Symmetric-pad ``lq`` to ``multiple`` (default ``net.pad_unit``), run ``net``, crop back to (H*s, W*s)."""
    h, w = lq.shape[-2:]
    s = scale if scale is not None else getattr(net, 'upscale', 1)
    out = net(pad_symmetric(lq, net.pad_unit if multiple is None else multiple))
    return out[..., :h * s, :w * s]


class ProtocolNetwork(nn.Module):
    """A network wrapped in the protocol: what ``ramit export`` traces, so the ONNX graph restores as `ramit infer`
    does."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, lq: Tensor) -> Tensor:
        return protocol_forward(self.net, lq)
