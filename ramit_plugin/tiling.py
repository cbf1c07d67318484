"""Memory-aware tiling: the largest tile that fits the memory free on the device, or none when the image fits.

A forward pass's peak memory grows linearly with the (padded) pixel count, so it is modelled as
``fixed + per_pixel * pixels`` from two measured passes on the device and dtype that will run; the tile is the
largest multiple of the network's padding unit whose predicted peak fits a fraction of the free memory.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from .memory import available_bytes, limit_heap_retention, measure

# Share of the free memory a tile may plan to use: allocator fragmentation and other users need the rest.
MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class MemoryModel:
    """Predicted peak bytes of one forward pass: fixed + per_pixel * (batch * padded input pixels)."""

    fixed: float
    per_pixel: float

    def peak(self, pixels: int) -> float:
        """Predicted peak bytes for ``pixels`` padded input pixels (batch included)."""
        return self.fixed + self.per_pixel * pixels


def padded(size: int, unit: int) -> int:
    """``size`` rounded up to a multiple of ``unit`` (what the network pads to)."""
    return -(-size // unit) * unit


def fit_memory_model(net: nn.Module, device: torch.device, dtype: torch.dtype) -> MemoryModel:
    """Measure two forward passes (2x and 4x the padding unit, twice each, the larger kept) and fit the line.

    On the CPU, large freed blocks are returned to the OS first (glibc), so a pass's resident-set rise is what
    it needed rather than what an earlier pass left behind.
    """
    if device.type == 'cpu':
        limit_heap_retention()
    unit = getattr(net, 'pad_unit', 32)
    in_chans = getattr(net, 'in_chans', 3)
    sizes = (4 * unit, 8 * unit)
    peaks = []
    with torch.no_grad():
        for side in sizes:
            x = torch.rand(1, in_chans, side, side, device=device, dtype=dtype)
            runs = [measure(lambda: net(x), device)['peak_mib'] for _ in range(2)]
            if any(r is None for r in runs):
                raise RuntimeError(f'peak memory cannot be measured on {device} here; give --tile N')
            peaks.append(max(runs) * 2 ** 20)
    per_pixel = max((peaks[1] - peaks[0]) / (sizes[1] ** 2 - sizes[0] ** 2), 0.0)
    fixed = max(peaks[0] - per_pixel * sizes[0] ** 2, 0.0)
    return MemoryModel(fixed, per_pixel)


def choose_tile(model: MemoryModel, height: int, width: int, unit: int, budget: float, batch: int = 1,
                out_bytes_per_pixel: float = 0.0) -> Optional[int]:
    """Largest tile side (input pixels, a multiple of ``unit``) whose pass fits ``budget`` bytes; None: no tiling.

    ``out_bytes_per_pixel`` (per input pixel) is memory a tiled run holds beside the passes on the same device
    (the blended output); ValueError when not even a tile of 2 units fits.
    """
    if model.peak(padded(height, unit) * padded(width, unit)) <= budget:
        return None
    room = budget - out_bytes_per_pixel * height * width - model.fixed
    side = int(math.sqrt(max(room, 0.0) / (model.per_pixel * batch))) // unit * unit if model.per_pixel else 0
    if side < 2 * unit:
        raise ValueError(f'not enough free memory for a {2 * unit}-pixel tile ({budget / 2 ** 20:.0f} MiB usable, '
                         f'{model.peak(batch * (2 * unit) ** 2) / 2 ** 20:.0f} MiB needed)')
    return min(side, padded(max(height, width), unit))


def auto_tile(net: nn.Module, height: int, width: int, batch: int = 1, model: Optional[MemoryModel] = None
              ) -> Optional[int]:
    """`--tile auto`: the tile for a height x width image on the network's device and dtype (None: untiled)."""
    param = next(net.parameters())
    model = model or fit_memory_model(net, param.device, param.dtype)
    free = available_bytes(param.device)
    if free is None:
        raise RuntimeError(f'free memory on {param.device} is unknown here; give --tile N')
    scale = getattr(net, 'upscale', 1)
    # Tiled output is blended in float32 on the CPU (image + weights): it competes with the passes there.
    out_bytes = (getattr(net, 'in_chans', 3) + 1) * 4 * scale ** 2 if param.device.type == 'cpu' else 0.0
    return choose_tile(model, height, width, getattr(net, 'pad_unit', 32), MEMORY_FRACTION * free, batch, out_bytes)
