"""Tiled inference: tiles blended with cross-fades, and the memory-aware choice of the tile (`--tile auto`).

Tiled output cannot equal untiled output: CH-SA attends over the whole image (the paper's channel attention), so
a tile's result depends on the whole tile; docs/inference.md gives the measured PSNR of tiled against untiled output.

`--tile auto`: a forward pass's peak memory grows linearly with the (padded) pixel count, so it is modelled as
``fixed + per_pixel * pixels`` from two small passes traced on the device (the tensors alive at once, as torch's
allocator sees them; no resident-set noise); the tile is the largest multiple of the network's padding unit whose
predicted peak fits a fraction of the free memory.
"""
import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn as nn

from .errors import OptionError
from .memory import available_bytes, traced_peak_bytes

Tensor = torch.Tensor
# A backend's pass over a batch of images (or tiles), with the evaluation protocol: [B, C, H, W] -> [B, C, sH, sW].
Run = Callable[[Tensor], Tensor]


def tile_starts(size: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles covering [0, size): stride tile - overlap, the last tile flush with the end."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, lead: int, trail: int) -> Tensor:
    """1-D blending weights over the ``lead``/``trail`` pixels shared with neighbours, else 1.

    In a shared band of width L the weight is 0 over its outer quarter (a tile's edge pixels, which saw
    padding instead of image), rises linearly over the middle half and is 1 over the inner quarter; the
    neighbour's weight is the mirror image, so the two sum to 1.
    """
    w = torch.ones(length)
    pos = torch.arange(length, dtype=torch.float32) + 0.5
    if lead:
        w = torch.minimum(w, ((pos - lead / 4) / (lead / 2)).clamp(0, 1))
    if trail:
        w = torch.minimum(w, ((length - pos - trail / 4) / (trail / 2)).clamp(0, 1))
    return w


def tiled_forward(run: Run, img: Tensor, scale: int, tile: int, overlap: int, batch: int = 1) -> Tensor:
    """Output of ``run`` on [1, C, H, W] ``img`` computed in tiles of ``tile`` pixels, blended over ``overlap``.

    Tiles are run ``batch`` at a time (``run`` applies the evaluation protocol to each); outputs are accumulated
    with cross-fades (``_ramp``) on the CPU, so memory is bounded by the tile size plus the output image.
    """
    if overlap < 0 or tile <= 0 or overlap >= tile:
        raise OptionError(f'--tile {tile} --tile-overlap {overlap}: need --tile > --tile-overlap >= 0')
    _, c, h, w = img.shape
    s = scale
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = torch.zeros(c, h * s, w * s)
    weight = torch.zeros(1, h * s, w * s)
    boxes = [(y, x) for y in ys for x in xs]
    for i in range(0, len(boxes), batch):
        group = boxes[i:i + batch]
        th, tw = min(tile, h), min(tile, w)
        patches = torch.cat([img[:, :, y:y + th, x:x + tw] for y, x in group])
        results = run(patches).float().cpu()
        for (y, x), res in zip(group, results):
            # Ramps only where a neighbour tile overlaps this one; the overlap widths follow the actual starts.
            lead_y = (ys[ys.index(y) - 1] + th - y) * s if y > 0 else 0
            trail_y = (y + th - ys[ys.index(y) + 1]) * s if y != ys[-1] else 0
            lead_x = (xs[xs.index(x) - 1] + tw - x) * s if x > 0 else 0
            trail_x = (x + tw - xs[xs.index(x) + 1]) * s if x != xs[-1] else 0
            wt = _ramp(th * s, lead_y, trail_y)[:, None] * _ramp(tw * s, lead_x, trail_x)[None, :]
            out[:, y * s:(y + th) * s, x * s:(x + tw) * s] += res * wt
            weight[:, y * s:(y + th) * s, x * s:(x + tw) * s] += wt
    return out.div_(weight).unsqueeze(0)


# Share of the free memory a tile may plan to use: allocator caching, workspaces and other users need the rest.
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


def traced_memory_model(net: nn.Module) -> MemoryModel:
    """The line through the traced peaks of two small passes (4 and 8 padding units) on the network's own device
    and dtype: real kernels, so the tensors they create are exactly those of a full-size pass, per pixel."""
    unit = getattr(net, 'pad_unit', 32)
    param = next(net.parameters())
    sizes = (4 * unit, 8 * unit)
    peaks = []
    with torch.no_grad():
        for side in sizes:
            x = torch.rand(1, getattr(net, 'in_chans', 3), side, side, device=param.device, dtype=param.dtype)
            peaks.append(x.nbytes + traced_peak_bytes(lambda: net(x)))
    per_pixel = (peaks[1] - peaks[0]) / (sizes[1] ** 2 - sizes[0] ** 2)
    return MemoryModel(max(peaks[0] - per_pixel * sizes[0] ** 2, 0.0), per_pixel)


def choose_tile(model: MemoryModel, height: int, width: int, unit: int, budget: float, batch: int = 1,
                out_bytes_per_pixel: float = 0.0, overlap: int = 0) -> Optional[int]:
    """Largest tile side (input pixels, a multiple of ``unit``) whose pass of ``batch`` images or tiles fits
    ``budget`` bytes; None: no tiling.

    ``out_bytes_per_pixel`` (per input pixel) is memory a tiled run holds beside the passes on the same device
    (the blended output); OptionError when not even the smallest tile (2 units, and more than ``overlap``) fits.
    """
    if model.peak(batch * padded(height, unit) * padded(width, unit)) <= budget:
        return None
    room = budget - out_bytes_per_pixel * height * width - model.fixed
    side = int(math.sqrt(max(room, 0.0) / (model.per_pixel * batch))) // unit * unit if model.per_pixel else 0
    smallest = max(2 * unit, padded(overlap + 1, unit))
    if side < smallest:
        raise OptionError(f'not enough free memory for a {smallest}-pixel tile ({budget / 2 ** 20:.0f} MiB usable, '
                          f'{model.peak(batch * smallest ** 2) / 2 ** 20:.0f} MiB needed)')
    return min(side, padded(max(height, width), unit))


class TilePlanner:
    """`--tile auto` for one network on its device and dtype: the tile for each image size (None: untiled).

    The budget is MEMORY_FRACTION of the memory free at each call, or ``max_bytes`` (`--max-memory`).
    """

    def __init__(self, net: nn.Module, batch: int = 1, max_bytes: Optional[int] = None, overlap: int = 0):
        self.net, self.batch, self.max_bytes, self.overlap = net, batch, max_bytes, overlap
        self.device = next(net.parameters()).device
        self.model = traced_memory_model(net)

    def budget(self) -> float:
        """Bytes a pass may plan to use now."""
        if self.max_bytes is not None:
            return self.max_bytes
        free = available_bytes(self.device)
        if free is None:
            raise OptionError(f'free memory on {self.device} is unknown here; give --tile N or --max-memory MIB')
        return MEMORY_FRACTION * free

    def tile(self, height: int, width: int) -> Optional[int]:
        """The tile side for a height x width image, or None when it runs whole."""
        scale = getattr(self.net, 'upscale', 1)
        # Tiled output is blended in float32 on the CPU (image + weights): it competes with the passes there.
        out_bytes = (getattr(self.net, 'in_chans', 3) + 1) * 4 * scale ** 2 if self.device.type == 'cpu' else 0.0
        return choose_tile(self.model, height, width, getattr(self.net, 'pad_unit', 32), self.budget(), self.batch,
                           out_bytes, self.overlap)
