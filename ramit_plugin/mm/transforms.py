"""Training and evaluation transforms in mmengine's TRANSFORMS, built on BasicSR's crop/augment helpers.

Each transform takes and returns the results dict of a dataset sample: 'gt' and 'lq' are float32 RGB (or gray)
[H, W, C] arrays in [0, 1] until ``PackRestorationInputs`` turns them into tensors.
"""
from typing import Optional, Sequence

import numpy as np
import torch
from basicsr.data.transforms import augment, paired_random_crop
from mmengine.structures import BaseDataElement

from ramit.datasets import DatasetError
from ramit.errors import OptionError
from ramit.noise import check_sigma, check_sigma_range, random_sigma_noise, reference_noise

from ..registry import TRANSFORMS

META_KEYS = ('key', 'gt_path', 'lq_path', 'scale', 'sigma')


@TRANSFORMS.register_module()
class PairedRandomCrop:
    """Crop a random GT patch and the LQ patch that matches it (basicsr's paired_random_crop).

    The size is ``gt_patch_size`` (GT pixels, BasicSR's gt_size) or ``lq_patch_size`` (LQ pixels: the paper's 64 at
    every SR scale). ``scale`` defaults to the sample's own (the dataset's ``scale``), so one pipeline fits x2-x4.
    """

    def __init__(self, gt_patch_size: Optional[int] = None, scale: Optional[int] = None,
                 lq_patch_size: Optional[int] = None) -> None:
        if (gt_patch_size is None) == (lq_patch_size is None):
            raise OptionError('PairedRandomCrop: give exactly one of gt_patch_size (GT pixels) and lq_patch_size '
                              '(LQ pixels)')
        self.gt_patch_size = gt_patch_size
        self.lq_patch_size = lq_patch_size
        self.scale = scale

    def __call__(self, results: dict) -> dict:
        scale = self.scale or results.get('scale', 1)
        gt_patch_size = self.gt_patch_size or self.lq_patch_size * scale
        lq_h, lq_w = results['lq'].shape[:2]
        if min(lq_h, lq_w) < gt_patch_size // scale:
            name = results.get('lq_path') or results.get('gt_path')
            raise DatasetError(f'PairedRandomCrop: {name} is {lq_w}x{lq_h}, smaller than the LQ patch '
                               f'{gt_patch_size // scale}x{gt_patch_size // scale} (GT patch {gt_patch_size} / scale '
                               f'{scale}); use larger images or a smaller patch')
        results['gt'], results['lq'] = paired_random_crop(results['gt'], results['lq'], gt_patch_size, scale,
                                                          results.get('gt_path'))
        return results


@TRANSFORMS.register_module()
class PairedFlipRotate:
    """The same random horizontal flip / vertical flip / 90-degree rotation on GT and LQ (basicsr's augment)."""

    def __init__(self, hflip: bool = True, rotation: bool = True) -> None:
        self.hflip = hflip
        self.rotation = rotation

    def __call__(self, results: dict) -> dict:
        results['gt'], results['lq'] = augment([results['gt'], results['lq']], self.hflip, self.rotation)
        return results


@TRANSFORMS.register_module()
class AddGaussianNoise:
    """LQ = GT + Gaussian noise: the paper's fixed test noise (``sigma``) or blind training noise (``sigma_range``).

    With ``sigma`` the noise is the protocol's (seed 0 for every image: ``ramit.noise.reference_noise``),
    so the numbers match the published ones; with ``sigma_range`` sigma ~ U[low, high] per sample, seeded from
    torch's global RNG (which mmengine's ``randomness`` and the dataloader seed per worker).
    """

    def __init__(self, sigma: Optional[float] = None, sigma_range: Optional[Sequence[float]] = None) -> None:
        if (sigma is None) == (sigma_range is None):
            raise OptionError('AddGaussianNoise: give exactly one of sigma (fixed test noise) and sigma_range '
                              '(blind training noise)')
        self.sigma = None if sigma is None else check_sigma(sigma, 'AddGaussianNoise.sigma')
        self.sigma_range = None if sigma_range is None else check_sigma_range(sigma_range,
                                                                              'AddGaussianNoise.sigma_range')

    def __call__(self, results: dict) -> dict:
        gt = results['gt']
        shape = (gt.shape[2], gt.shape[0], gt.shape[1])
        if self.sigma is not None:
            noise, sigma = reference_noise(shape, self.sigma), self.sigma
        else:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
            noise, sigma = random_sigma_noise(shape, self.sigma_range, generator)
        # Unclipped, added in float32 like the reference adds it to the [C, H, W] tensor.
        results['lq'] = gt + noise.permute(1, 2, 0).numpy()
        results['sigma'] = sigma
        return results


@TRANSFORMS.register_module()
class PackRestorationInputs:
    """Turn the arrays into ``inputs`` (LQ [C, H, W] tensor) and a data sample holding ``gt`` and the metainfo."""

    def __call__(self, results: dict) -> dict:
        sample = BaseDataElement(metainfo={k: results[k] for k in META_KEYS if k in results})
        sample.gt = _to_tensor(results['gt'])
        return dict(inputs=_to_tensor(results['lq']), data_samples=sample)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """[H, W, C] float array -> contiguous float32 [C, H, W] tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
