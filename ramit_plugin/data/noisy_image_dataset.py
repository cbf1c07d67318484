"""Clean images plus Gaussian noise for colour and gray denoising (blind noise to train, the paper's noise to test)."""
from typing import Dict, Optional

import numpy as np
import torch
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ramit.datasets import DatasetError, ImageSource, as_rgb, dataset_label, image_index, rgb_to_gray, to_unit_range
from ramit.noise import check_sigma, check_sigma_range, random_sigma_noise, reference_noise


@DATASET_REGISTRY.register()
class NoisyImageDataset(data.Dataset):
    """Clean images from ``dataroot_gt`` (disk folder, searched recursively, or LMDB; optional ``meta_info_file``).

    Returns dict(lq=clean + noise, gt=clean, lq_path, gt_path), RGB (or, with ``gray: true``, OpenCV RGB2GRAY)
    float32 [C, H, W] in [0, 1]; the noisy input is not clipped, as in the paper.

    Training (phase 'train'): random ``gt_size`` crop, ``use_hflip``/``use_rot``, blind noise with sigma drawn
    uniformly from ``sigma_range`` (pixel units, e.g. [0, 50]) per image.
    Validation/test: ``sigma`` (e.g. 25) with the paper's evaluation noise (``reference_noise``), the same on
    every run, machine and worker count.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.label = label = dataset_label(opt)
        self.train = opt.get('phase') == 'train'
        self.gray = bool(opt.get('gray', False))
        if self.train:
            if 'sigma_range' in opt:
                self.sigma_range = check_sigma_range(opt['sigma_range'], f'{label}: sigma_range')
            elif 'sigma' in opt:  # a fixed level, fresh noise per sample
                sigma = check_sigma(opt['sigma'], f'{label}: sigma')
                self.sigma_range = (sigma, sigma)
            else:
                raise DatasetError(f'{label}: set sigma_range (e.g. [0, 50]) for training noise')
            if not opt.get('gt_size'):
                raise DatasetError(f'{label}: set gt_size (the training patch size)')
        else:
            if 'sigma' not in opt:
                raise DatasetError(f'{label}: set sigma (e.g. 25) for the evaluation noise')
            self.sigma = check_sigma(opt['sigma'], f'{label}: sigma')
        backend = (opt.get('io_backend') or {}).get('type', 'disk')
        self.source = ImageSource(backend, {'gt': opt['dataroot_gt']}, label)
        self.paths = list(image_index(opt['dataroot_gt'], backend, f'{label}: dataroot_gt',
                                      opt.get('meta_info_file')).values())
        self._generator: Optional[torch.Generator] = None
        self._generator_seed: Optional[int] = None

    def _noise_generator(self) -> torch.Generator:
        """Generator for training noise, seeded from this process's torch seed.

        DataLoader seeds each worker's torch RNG with base_seed + worker_id (base_seed new every epoch), so
        workers never repeat each other's noise; a generator inherited from the parent process is re-seeded.
        """
        seed = torch.initial_seed()
        if self._generator is None or self._generator_seed != seed:
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_seed = seed
        return self._generator

    def _read_clean(self, path: str) -> np.ndarray:
        """float32 [H, W, C] in [0, 1]: RGB, or [H, W, 1] gray with OpenCV's RGB2GRAY on the integers."""
        img = as_rgb(self.source.read(path, 'gt'), self.label, path)
        return to_unit_range(rgb_to_gray(img)[..., None] if self.gray else img)

    def __getitem__(self, index: int) -> Dict[str, object]:
        path = self.paths[index]
        img = self._read_clean(path)
        if self.train:
            img, _ = paired_random_crop(img, img, self.opt['gt_size'], 1, path)  # basicsr's crop, one image
            img = augment(np.ascontiguousarray(img), self.opt.get('use_hflip', False), self.opt.get('use_rot', False))
        clean = img2tensor(np.ascontiguousarray(img), bgr2rgb=False, float32=True)
        if self.train:
            noise, _ = random_sigma_noise(clean.shape, self.sigma_range, self._noise_generator())
        else:
            noise = reference_noise(clean.shape, self.sigma)
        return {'lq': clean + noise, 'gt': clean, 'lq_path': path, 'gt_path': path}

    def __len__(self) -> int:
        return len(self.paths)
