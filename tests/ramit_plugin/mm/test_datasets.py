"""mmengine datasets and transforms: SR pairs with EDSR names, LMDB, protocol and blind noise, size checks."""
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from ramit.datasets import DatasetError, rgb_to_gray
from ramit.noise import reference_noise
from ramit_plugin.mm.datasets import NoisyImageDataset, PairedRestorationDataset
from ramit_plugin.mm.transforms import AddGaussianNoise, PairedRandomCrop
from ramit_plugin.registry import DATASETS

PACK = dict(type='PackRestorationInputs')


def rgb(path: Path) -> torch.Tensor:
    """The image file as a float [C, H, W] RGB tensor in [0, 1]."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255.0)


@pytest.fixture
def edsr_set5_like(tmp_path, sr_folders) -> Path:
    """HR/<name>.png and LR_bicubic/X2/<name>x2.png, with one HR one pixel too large (as Set5 is for x3)."""
    root = tmp_path / 'set'
    (root / 'HR').mkdir(parents=True)
    (root / 'LR_bicubic' / 'X2').mkdir(parents=True)
    for path in sorted(sr_folders['hr'].iterdir()):
        hr = cv2.imread(str(path))
        if path.stem == 'img0':
            hr = np.pad(hr, ((0, 1), (0, 1), (0, 0)), mode='edge')
        cv2.imwrite(str(root / 'HR' / path.name), hr)
        lr = cv2.imread(str(sr_folders['lr'] / path.name))
        cv2.imwrite(str(root / 'LR_bicubic' / 'X2' / f'{path.stem}x2.png'), lr)
    return root


def test_paired_sr_with_edsr_names_crops_gt_to_lq_times_scale_in_test_mode(edsr_set5_like):
    dataset = DATASETS.build(dict(type='PairedRestorationDataset', data_root=str(edsr_set5_like),
                                  data_prefix=dict(gt='HR', lq='LR_bicubic/X2'), lq_tmpl='{}x2', scale=2,
                                  test_mode=True, pipeline=[PACK]))
    assert len(dataset) == 4
    item = dataset[0]
    sample = item['data_samples']
    assert sample.key == 'img0' and sample.scale == 2
    assert torch.equal(item['inputs'], rgb(edsr_set5_like / 'LR_bicubic' / 'X2' / 'img0x2.png'))
    assert torch.equal(sample.gt, rgb(edsr_set5_like / 'HR' / 'img0.png')[:, :48, :48])


def test_training_pair_that_does_not_fit_the_scale_names_both_files(edsr_set5_like):
    dataset = PairedRestorationDataset(data_root=str(edsr_set5_like), data_prefix=dict(gt='HR', lq='LR_bicubic/X2'),
                                       lq_tmpl='{}x2', scale=2, pipeline=[PACK])
    with pytest.raises(DatasetError, match=r'img0x2.png \(24x24\) and .*img0.png \(49x49\) do not fit scale 2'):
        dataset[0]


def test_unpaired_and_missing_folders_are_one_line_errors(edsr_set5_like, tmp_path):
    with pytest.raises(DatasetError, match='unmatched pairs'):
        PairedRestorationDataset(data_root=str(edsr_set5_like), data_prefix=dict(gt='HR', lq='LR_bicubic/X2'))
    with pytest.raises(DatasetError, match=f"folder {tmp_path / 'nowhere'} does not exist"):
        NoisyImageDataset(data_root=str(tmp_path), data_prefix=dict(gt='nowhere'))
    with pytest.raises(DatasetError, match=r"data_prefix needs the folders \['lq', 'gt'\], missing \['lq'\]"):
        PairedRestorationDataset(data_root=str(tmp_path), data_prefix=dict(gt='HR'))


def test_lmdb_gives_the_same_training_patches_as_the_folders(sr_folders, tmp_path):
    for side in ('hr', 'lr'):
        names = sorted(p.name for p in sr_folders[side].iterdir())
        make_lmdb_from_imgs(str(sr_folders[side]), str(tmp_path / f'{side}.lmdb'), names,
                            [Path(n).stem for n in names], multiprocessing_read=False)
    pipeline = [dict(type='PairedRandomCrop', gt_patch_size=16, scale=2), dict(type='PairedFlipRotate'), PACK]
    common = dict(scale=2, pipeline=pipeline)
    disk = PairedRestorationDataset(data_root=str(sr_folders['root']), data_prefix=dict(gt='HR', lq='LR'), **common)
    lmdb = PairedRestorationDataset(data_root=str(tmp_path), data_prefix=dict(gt='hr.lmdb', lq='lr.lmdb'),
                                    io_backend='lmdb', **common)
    for index in range(4):
        # The crop and flips come from Python's and numpy's global RNGs: the same draws for both datasets.
        np.random.seed(index), random.seed(index)
        a = disk[index]
        np.random.seed(index), random.seed(index)
        b = lmdb[index]
        assert a['inputs'].shape == (3, 8, 8) and a['data_samples'].gt.shape == (3, 16, 16)
        assert torch.equal(a['inputs'], b['inputs']) and torch.equal(a['data_samples'].gt, b['data_samples'].gt)


def test_protocol_noise_colour_and_gray(sr_folders):
    noise = dict(type='AddGaussianNoise', sigma=25)
    colour = NoisyImageDataset(data_root=str(sr_folders['root']), data_prefix=dict(gt='HR'), test_mode=True,
                               pipeline=[noise, PACK])[1]
    clean = rgb(sr_folders['hr'] / 'img1.png')
    assert torch.equal(colour['data_samples'].gt, clean)
    assert torch.equal(colour['inputs'], clean + reference_noise(clean.shape, 25))  # unclipped, seed 0
    assert colour['data_samples'].sigma == 25

    gray = NoisyImageDataset(data_root=str(sr_folders['root']), data_prefix=dict(gt='HR'), gray=True,
                             test_mode=True, pipeline=[noise, PACK])[1]
    rgb_u8 = cv2.cvtColor(cv2.imread(str(sr_folders['hr'] / 'img1.png')), cv2.COLOR_BGR2RGB)
    clean_gray = torch.from_numpy(rgb_to_gray(rgb_u8)[None].astype(np.float32) / 255.0)
    assert torch.equal(gray['data_samples'].gt, clean_gray)
    assert torch.equal(gray['inputs'], clean_gray + reference_noise((1, 48, 48), 25))


def test_blind_training_noise_is_drawn_per_sample_after_the_crop(sr_folders):
    dataset = NoisyImageDataset(data_root=str(sr_folders['root']), data_prefix=dict(gt='HR'), pipeline=[
        dict(type='PairedRandomCrop', gt_patch_size=32), dict(type='PairedFlipRotate'),
        dict(type='AddGaussianNoise', sigma_range=(10, 50)), PACK])
    torch.manual_seed(0)
    items = [dataset[i % 4] for i in range(8)]
    sigmas = [item['data_samples'].sigma for item in items]
    assert all(10 <= s <= 50 for s in sigmas) and len(set(sigmas)) == 8
    for item, sigma in zip(items, sigmas):
        residual = item['inputs'] - item['data_samples'].gt
        assert item['inputs'].shape == (3, 32, 32)
        assert residual.std().item() * 255 == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize('kwargs, message', [
    (dict(), 'give exactly one of sigma'),
    (dict(sigma=25, sigma_range=(0, 50)), 'give exactly one of sigma'),
    (dict(sigma=300), r'AddGaussianNoise.sigma must be a noise level in \[0, 255\]'),
    (dict(sigma_range=(50, 0)), 'low <= high'),
])
def test_noise_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AddGaussianNoise(**kwargs)


def test_crop_in_lq_pixels_follows_the_datasets_scale(edsr_set5_like):
    crop = dict(type='PairedRandomCrop', lq_patch_size=8)
    dataset = PairedRestorationDataset(data_root=str(edsr_set5_like), data_prefix=dict(gt='HR', lq='LR_bicubic/X2'),
                                       lq_tmpl='{}x2', scale=2, pipeline=[crop, PACK])
    item = dataset[1]
    assert item['inputs'].shape == (3, 8, 8) and item['data_samples'].gt.shape == (3, 16, 16)
    for kwargs in (dict(), dict(gt_patch_size=16, lq_patch_size=8)):
        with pytest.raises(ValueError, match='give exactly one of gt_patch_size'):
            PairedRandomCrop(**kwargs)


def test_lmdb_as_data_root_with_an_empty_prefix(sr_folders, tmp_path):
    names = sorted(p.name for p in sr_folders['hr'].iterdir())
    make_lmdb_from_imgs(str(sr_folders['hr']), str(tmp_path / 'clean.lmdb'), names, [Path(n).stem for n in names],
                        multiprocessing_read=False)
    # As the denoising configs name their folder: data_root is the set, data_prefix.gt ''.
    dataset = NoisyImageDataset(data_root=str(tmp_path / 'clean.lmdb'), data_prefix=dict(gt=''), io_backend='lmdb',
                                test_mode=True, pipeline=[PACK])
    assert len(dataset) == 4 and torch.equal(dataset[1]['data_samples'].gt, rgb(sr_folders['hr'] / 'img1.png'))
