"""Tiled inference: tile layout, exact blending for local networks, closeness to untiled on a real photo; and
`--tile auto`: the memory model, the tile it picks, and the bound that skips measuring small images."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ramit import RAMiT
from ramit.errors import OptionError
from ramit.inference import restore_tensor, torch_run
from ramit.tiling import MemoryModel, TilePlanner, choose_tile, tile_starts, tiled_forward, traced_memory_model
from tests.ramit.conftest import SMALLEST, photo_tensor, published

MIB = 2 ** 20
# The memory model is a line through two traced passes; a tiny low-light network (padding unit 16) shows it as the
# published ones do, in a fraction of the time.
TINY_LLE = dict(variant='RAMiT-1', task='lle', **SMALLEST)


class LocalNet(nn.Module):
    """A 3x3-local x2 'network': output pixels depend on a 1-pixel neighbourhood only."""

    upscale = 2
    pad_unit = 32  # the protocol's padding multiple, as RAMiT.pad_unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur over 3x3, then nearest x2 and an affine change."""
        blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode='replicate'), 3, stride=1)
        return F.interpolate(blurred, scale_factor=2, mode='nearest') * 1.5 - 0.2


@pytest.mark.parametrize('size,tile,overlap,expected', [
    (100, 128, 16, [0]), (128, 128, 16, [0]), (129, 128, 16, [0, 1]), (300, 128, 16, [0, 112, 172]),
    (512, 128, 16, [0, 112, 224, 336, 384]),
])
def test_tile_starts_cover_the_image(size, tile, overlap, expected):
    starts = tile_starts(size, tile, overlap)
    assert starts == expected
    assert starts[-1] + min(tile, size) == size
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize('tile,overlap,batch', [(16, 4, 1), (20, 6, 3), (64, 0, 2)])
def test_tiling_is_exact_for_a_local_network(tile, overlap, batch):
    """Away from the receptive field's reach blending is a convex combination of identical values."""
    net = LocalNet()
    x = torch.rand(1, 3, 45, 61, generator=torch.Generator().manual_seed(0))
    whole = net(x)
    tiled = tiled_forward(net, x, net.upscale, tile, overlap, batch)
    assert tiled.shape == whole.shape
    if overlap >= 2:
        assert torch.allclose(tiled, whole, atol=1e-6)
    else:  # no overlap: seams are allowed to differ, everything else equal
        assert (tiled - whole).abs().gt(1e-6).float().mean() < 0.1


def test_tiled_close_to_untiled_on_a_real_photo(reference_dir, datasets_dir):
    """A 160x160 Kodak crop through RAMiT-slimSR x2, tiles of 96 with 16 overlap (four tiles) vs the whole image.

    Not equal within 1/255 everywhere: CH-SA attends over the whole (tile) image, so every tile's channel
    attention sees different statistics and outputs differ slightly everywhere, not only at seams (a larger
    overlap does not help; README: tiling). Blending must keep that small.
    """
    net = published(reference_dir, 'RAMiT-slimSR_X2')
    x = photo_tensor(datasets_dir / 'Kodak24' / 'kodim05.png', box=(0, 0, 160, 160))
    run = torch_run(net)
    whole = restore_tensor(run, x, net.upscale).clamp(0, 1)
    tiled = restore_tensor(run, x, net.upscale, tile=96, overlap=16, tile_batch=3).clamp(0, 1)
    diff = (whole - tiled).abs() * 255
    assert diff.mean() < 0.5
    assert torch.quantile(diff.flatten(), 0.99) < 4
    psnr = 10 * torch.log10(1 / (whole - tiled).square().mean())
    assert psnr > 45


def test_choose_tile_is_the_largest_fitting_multiple_of_the_unit():
    model = MemoryModel(fixed=50 * MIB, per_pixel=4000.0)
    assert choose_tile(model, 300, 400, 32, budget=10_000 * MIB) is None  # the whole image fits
    budget = 400 * MIB
    tile = choose_tile(model, 3000, 4000, 32, budget)
    assert tile % 32 == 0 and model.peak(tile ** 2) <= budget < model.peak((tile + 32) ** 2)
    assert choose_tile(model, 3000, 4000, 32, budget, batch=4) < tile  # four tiles per pass
    with_output = choose_tile(model, 3000, 4000, 32, budget, out_bytes_per_pixel=16)
    assert with_output < tile  # a CPU run also holds the blended output
    with pytest.raises(OptionError, match='not enough free memory for a 64-pixel tile'):
        choose_tile(model, 3000, 4000, 32, budget=60 * MIB)
    # A batch of whole images must fit as a batch: 512x512 fits alone (1.05 GB) but not four at once.
    assert choose_tile(model, 512, 512, 32, budget=1100 * MIB) is None
    assert choose_tile(model, 512, 512, 32, budget=1100 * MIB, batch=4) is not None
    # The smallest tile leaves room for the overlap (a tile must be larger than it).
    with pytest.raises(OptionError, match='not enough free memory for a 128-pixel tile'):
        choose_tile(model, 3000, 4000, 32, budget=100 * MIB, overlap=100)


MEASURE_384 = f"""
import torch
from ramit import RAMiT
from ramit.memory import limit_heap_retention, measure
limit_heap_retention()
torch.manual_seed(0)
net = RAMiT(**{TINY_LLE!r}).eval()
x = torch.rand(1, 3, 384, 384)
with torch.no_grad():
    net(torch.rand(1, 3, 64, 64))
    print(max(measure(lambda: net(x), torch.device('cpu'))['peak_mib'] for _ in range(2)))
"""


def test_traced_model_predicts_a_measured_pass():
    """Traced at 64 and 128 pixels (4 and 8 padding units), the model predicts the resident-set peak of a
    384-pixel pass measured in a fresh process (no earlier test's memory reused) within 15 %."""
    proc = subprocess.run([sys.executable, '-c', MEASURE_384], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = float(proc.stdout.split()[-1]) * MIB
    model = traced_memory_model(RAMiT(**TINY_LLE).eval())
    assert abs(model.peak(384 ** 2) - measured) < 0.15 * measured, (model, measured / MIB)


def test_planner_tiles_only_what_does_not_fit():
    net = RAMiT(**TINY_LLE).eval()
    assert TilePlanner(net, max_bytes=4096 * MIB).tile(100, 120) is None
    planner = TilePlanner(net, max_bytes=200 * MIB)
    tile = planner.tile(1000, 1200)
    assert tile % net.pad_unit == 0 and planner.model.peak(tile ** 2) <= 200 * MIB
    bf16 = TilePlanner(net.to(torch.bfloat16), max_bytes=200 * MIB)
    assert bf16.model.per_pixel < 0.8 * planner.model.per_pixel  # half-size activations (CH-SA sums stay float32)
