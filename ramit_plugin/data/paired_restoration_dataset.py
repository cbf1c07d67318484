"""Input/target image pairs for low-light enhancement and deraining, paired by name or by a naming rule."""
from typing import Dict

import numpy as np
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ramit.datasets import (DatasetError, ImageSource, as_rgb, dataset_label, image_index, pair_images,
                            pairing_templates, to_unit_range)


@DATASET_REGISTRY.register()
class PairedRestorationDataset(data.Dataset):
    """Pairs of degraded input (``dataroot_lq``) and target (``dataroot_gt``) images at the same size.

    Disk folders are searched recursively, LMDB folders (``io_backend: {type: lmdb}``) are read by key;
    ``meta_info_file`` restricts the targets. Pairing: same name (default), a rule ``pairing: rain100h | ve-lol``, or
    templates ``lq_tmpl``/``gt_tmpl`` such as 'rain-{}'/'norain-{}'. Training (phase 'train'): random ``gt_size``
    crop, ``use_hflip``, ``use_rot``. Returns dict(lq, gt, lq_path, gt_path) with RGB float32 [3, H, W] in [0, 1].
    """

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.label = dataset_label(opt)
        self.train = opt.get('phase') == 'train'
        if self.train and not opt.get('gt_size'):
            raise DatasetError(f'{self.label}: set gt_size (the training patch size)')
        backend = (opt.get('io_backend') or {}).get('type', 'disk')
        self.source = ImageSource(backend, {'lq': opt['dataroot_lq'], 'gt': opt['dataroot_gt']}, self.label)
        lq_images = image_index(opt['dataroot_lq'], backend, f'{self.label}: dataroot_lq')
        gt_images = image_index(opt['dataroot_gt'], backend, f'{self.label}: dataroot_gt', opt.get('meta_info_file'))
        self.paths = pair_images(lq_images, gt_images, pairing_templates(opt, self.label), self.label)

    def _read(self, path: str, side: str) -> np.ndarray:
        return to_unit_range(as_rgb(self.source.read(path, side), self.label, path))

    def __getitem__(self, index: int) -> Dict[str, object]:
        lq_path, gt_path = self.paths[index]['lq_path'], self.paths[index]['gt_path']
        img_lq, img_gt = self._read(lq_path, 'lq'), self._read(gt_path, 'gt')
        if img_lq.shape != img_gt.shape:
            raise DatasetError(f'{self.label}: {lq_path} is {img_lq.shape[1]}x{img_lq.shape[0]} but its target '
                               f'{gt_path} is {img_gt.shape[1]}x{img_gt.shape[0]}')
        if self.train:
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt['gt_size'], 1, gt_path)
            img_gt, img_lq = augment([img_gt, img_lq], self.opt.get('use_hflip', False),
                                     self.opt.get('use_rot', False))
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=False, float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}

    def __len__(self) -> int:
        return len(self.paths)
