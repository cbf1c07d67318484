"""Helpers shared by the tests of the core package ``ramit`` (no training framework is imported here).

Test files import them as ``from tests.ramit.conftest import ...`` (pytest has loaded this module under that name
before it collects them; see tests/conftest.py for the fixtures of ../shared).
"""
import math
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ramit.hub import PUBLISHED, lookup
from ramit.images import read_image
from ramit.inference import load_network
from ramit.network import RAMiT

# The eight published checkpoints in ../shared/ramit_reference/weights (the RAMiT_* ones are not there).
REFERENCE_NAMES = ['RAMiT-1_X2', 'RAMiT-1_X3', 'RAMiT-1_X4', 'RAMiT-1_CDN', 'RAMiT-slimSR_X2', 'RAMiT-slimSR_X3',
                   'RAMiT-slimSR_X4', 'RAMiT-slimLLE_LLE']
# A tiny network with every part (two blocks in two stages, both attentions, shifted windows).
TINY = dict(dim=16, depths=(1, 2, 1, 2), num_heads=(2, 2, 2, 2), chsa_head_ratio=0.5, window_size=4)
# The smallest network `ramit demo` trains (one block per stage).
SMALLEST = dict(dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)


def weights_path(reference_dir: Path, name: str) -> Path:
    """The file of the published checkpoint ``name`` in ../shared/ramit_reference/weights."""
    return reference_dir / 'weights' / PUBLISHED[name].file


def published(reference_dir: Path, name: str, device: Union[str, torch.device] = 'cpu') -> RAMiT:
    """The published checkpoint ``name`` loaded as `ramit infer` loads it (eval mode), on ``device``."""
    return load_network(weights_path(reference_dir, name), published=lookup(name)).to(device)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of ``a`` against ``b``, computed in float64."""
    mse = (a.double() - b.double()).square().mean().item()
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


def photo_tensor(path: os.PathLike, box: Optional[tuple] = None) -> torch.Tensor:
    """An image file as `ramit infer` reads it: RGB [1, 3, H, W] float32 in [0, 1]; ``box`` = (top, left, h, w)
    crops it."""
    rgb = read_image(path).rgb
    if box is not None:
        top, left, h, w = box
        rgb = rgb[top:top + h, left:left + w]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].contiguous()


def perturbed(net: RAMiT, seed: int = 0) -> RAMiT:
    """Random-init network with non-zero bias tables and logit scales, so every term of the fast path counts."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return net.eval()


def tiny_network(seed: int = 0, **arguments) -> RAMiT:
    """A random tiny RAMiT (``SMALLEST`` sizes; RAMiT-1 x2 SR unless ``arguments`` say otherwise) in eval mode."""
    torch.manual_seed(seed)
    return perturbed(RAMiT(**dict(dict(variant='RAMiT-1', task='sr', upscale=2, **SMALLEST), **arguments)), seed)
