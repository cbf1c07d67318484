"""Datasets in mmengine's DATASETS: paired SR, paired LLE/DR and noisy-clean denoising, from folders or LMDB.

They list, pair and read images with the same framework-neutral code as the plugin's BasicSR datasets
(``ramit.datasets``: recursive folders or LMDB, pairing templates, one-line errors), but follow mmengine's
``BaseDataset`` conventions (``data_root`` + ``data_prefix``, ``pipeline``, ``test_mode``). Samples enter the
pipeline as float32 RGB (or gray) [H, W, C] arrays in [0, 1] under 'gt' and 'lq'.
"""
import os
from typing import Callable, Iterator, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset, InfiniteSampler

from ramit.datasets import (DatasetError, ImageSource, as_rgb, image_index, pair_images, pairing_templates,
                            rgb_to_gray, to_unit_range)
from ramit.training import SampleKey, sample_seed, seeded

from ..registry import DATA_SAMPLERS, DATASETS, TRANSFORMS

BACKENDS = ('disk', 'lmdb')


class _ImageDataset(BaseDataset):
    """data_root + data_prefix folders (keys FOLDERS), the I/O backend, and reading one image as RGB/gray floats."""

    FOLDERS = ('gt',)

    def __init__(self, data_root: str = '', data_prefix: Optional[dict] = None, io_backend: str = 'disk',
                 pipeline: Sequence[Union[dict, Callable]] = (), **kwargs) -> None:
        self.label = f'{type(self).__name__}'
        if io_backend not in BACKENDS:
            raise DatasetError(f"{self.label}: io_backend must be one of {', '.join(BACKENDS)}, got {io_backend!r}")
        prefix = dict(data_prefix or {})
        missing = [key for key in self.FOLDERS if key not in prefix]
        if missing:
            raise DatasetError(f'{self.label}: data_prefix needs the folders {list(self.FOLDERS)}, missing {missing}')
        self.io_backend = io_backend
        # Built from ramit_plugin's registry, so the dataset works outside a Runner's default scope too.
        pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(data_root=data_root, data_prefix=prefix, pipeline=pipeline, **kwargs)
        self.source = ImageSource(io_backend, {k: self.data_prefix[k] for k in self.FOLDERS}, self.label)

    def _join_prefix(self) -> None:
        """mmengine's data_root + data_prefix join, without the trailing '/' an empty prefix leaves (LMDB roots)."""
        super()._join_prefix()
        self.data_prefix = {key: os.path.normpath(path) if path else path for key, path in self.data_prefix.items()}

    def __getitem__(self, idx):
        """BaseDataset's, loading a SampleKey's sample inside seeded(key.seed) (SeededInfiniteSampler)."""
        if isinstance(idx, SampleKey):
            with seeded(idx.seed):
                return super().__getitem__(idx.index)
        return super().__getitem__(idx)

    def images(self, key: str) -> dict:
        """Image key -> path (or LMDB key) of the ``key`` folder."""
        return image_index(self.data_prefix[key], self.io_backend, f'{self.label}: data_prefix.{key}')

    def read(self, path: str, key: str, gray: bool = False) -> np.ndarray:
        """One image as float32 [H, W, C] in [0, 1]: RGB, or OpenCV's RGB2GRAY of the uint8 image if ``gray``."""
        img = as_rgb(self.source.read(path, key), self.label, path)
        return to_unit_range(rgb_to_gray(img)[..., None] if gray else img)


@DATASETS.register_module()
class PairedRestorationDataset(_ImageDataset):
    """LQ/GT pairs (``data_prefix=dict(lq=..., gt=...)``): super-resolution, low-light enhancement, deraining.

    SR with BasicSR/EDSR names: ``scale=2, lq_tmpl='{}x2'`` (LR_bicubic/X2/babyx2.png <-> HR/baby.png); LLE/DR
    pairs have the same names (the default) or follow ``pairing`` ('rain100h', 've-lol') or ``lq_tmpl``/``gt_tmpl``.
    In ``test_mode`` GT is cropped to LQ * scale, as BasicSR does for HR sizes that are not a multiple of the scale;
    in training the sizes must match exactly.
    """

    FOLDERS = ('lq', 'gt')

    def __init__(self, scale: int = 1, pairing: str = 'same', lq_tmpl: Optional[str] = None,
                 gt_tmpl: Optional[str] = None, **kwargs) -> None:
        self.scale = scale
        opt = dict(pairing=pairing, lq_tmpl=lq_tmpl, gt_tmpl=gt_tmpl)
        self.templates = pairing_templates({k: v for k, v in opt.items() if v is not None}, type(self).__name__)
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        """Pair every GT image with its LQ image."""
        pairs = pair_images(self.images('lq'), self.images('gt'), self.templates, self.label, 'data_prefix.lq',
                            'data_prefix.gt')
        return [dict(pair, key=os.path.splitext(os.path.basename(pair['gt_path']))[0], scale=self.scale)
                for pair in pairs]

    def prepare_data(self, idx: int) -> dict:
        """Read the pair, check the sizes against the scale, run the pipeline."""
        info = self.get_data_info(idx)
        gt = self.read(info['gt_path'], 'gt')
        lq = self.read(info['lq_path'], 'lq')
        want = (lq.shape[0] * self.scale, lq.shape[1] * self.scale)
        if gt.shape[0] < want[0] or gt.shape[1] < want[1] or (not self.test_mode and gt.shape[:2] != want):
            raise DatasetError(f"{self.label}: {info['lq_path']} ({lq.shape[1]}x{lq.shape[0]}) and "
                               f"{info['gt_path']} ({gt.shape[1]}x{gt.shape[0]}) do not fit scale {self.scale}")
        info.update(gt=gt[:want[0], :want[1]], lq=lq)
        return self.pipeline(info)


@DATASETS.register_module()
class NoisyImageDataset(_ImageDataset):
    """Clean images (``data_prefix=dict(gt=...)``) for denoising; the pipeline's AddGaussianNoise makes the input.

    ``gray=True`` converts the colour images with OpenCV's RGB2GRAY on uint8, as the paper's gray sets.
    Until the noise is added, 'lq' is a copy of the clean image, so the paired crop/flip transforms apply as is.
    """

    def __init__(self, gray: bool = False, **kwargs) -> None:
        self.gray = gray
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        """Every image of the clean folder (or LMDB)."""
        return [dict(gt_path=path, key=os.path.basename(key), scale=1) for key, path in self.images('gt').items()]

    def prepare_data(self, idx: int) -> dict:
        """Read the clean image and run the pipeline."""
        info = self.get_data_info(idx)
        gt = self.read(info['gt_path'], 'gt', gray=self.gray)
        # A copy: basicsr's augment flips in place, and flipping one shared array twice would undo the flip.
        info.update(gt=gt, lq=gt.copy())
        return self.pipeline(info)


@DATA_SAMPLERS.register_module()
class SeededInfiniteSampler(InfiniteSampler):
    """mmengine's InfiniteSampler (the same order) yielding SampleKeys for the plugin's datasets: each sample's
    crop, flips and noise draw from a seed of (the run's seed, its position in the stream of samples), whichever
    data-loader worker loads it, so a resumed run (mmengine replays the stream) repeats them exactly."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.position = self.rank  # in the stream over all processes; mmengine keeps one index stream per sampler

    def __iter__(self) -> Iterator[SampleKey]:
        for index in super().__iter__():
            position, self.position = self.position, self.position + self.world_size
            yield SampleKey(index, sample_seed(self.seed, 0, position))
