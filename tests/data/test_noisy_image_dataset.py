"""NoisyImageDataset: protocol noise at test time, blind uniform-sigma noise in training, gray mode, LMDB, errors."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader

import ramit_plugin  # noqa: F401  (registers the datasets)
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from ramit_plugin.data import DatasetError, NoisyImageDataset, reference_noise

SIZE = 40


def photos(count: int, size: int = SIZE):
    """BGR uint8 crops of scikit-image's bundled photos (real texture, saturated pixels included)."""
    from skimage import data
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return [np.ascontiguousarray(sources[i % 4][20 * i:20 * i + size, 30 * i:30 * i + size, ::-1])
            for i in range(count)]


@pytest.fixture(scope='module')
def clean_dir(tmp_path_factory) -> Path:
    """Six clean PNGs (one in a subfolder: folders are searched recursively) plus a file that is not an image."""
    root = tmp_path_factory.mktemp('clean')
    (root / 'sub').mkdir()
    for i, img in enumerate(photos(6)):
        cv2.imwrite(str(root / ('sub' if i == 5 else '.') / f'img{i}.png'), img)
    (root / 'README.txt').write_text('not an image')
    return root


def options(root, phase='test', **extra) -> dict:
    opt = dict(name='noisy', type='NoisyImageDataset', phase=phase, dataroot_gt=str(root),
               io_backend=dict(type='disk'))
    opt.update(dict(sigma=25) if phase != 'train' else dict(sigma_range=[0, 50], gt_size=32, use_hflip=True,
                                                               use_rot=True))
    opt.update(extra)
    return opt


def test_test_noise_is_the_protocol_noise_on_the_clean_rgb_image(clean_dir):
    dataset = build_dataset(options(clean_dir, sigma=15))
    assert len(dataset) == 6 and dataset.paths[-1].endswith('sub/img5.png')
    item = dataset[0]
    bgr = cv2.imread(str(clean_dir / 'img0.png'))
    assert torch.equal(item['gt'][0], torch.from_numpy(bgr[..., 2].astype(np.float32) / 255.0))  # channel 0 = red
    assert torch.equal(item['lq'] - item['gt'], (item['gt'] + reference_noise((3, SIZE, SIZE), 15)) - item['gt'])
    assert item['lq_path'] == item['gt_path'] == str(clean_dir / 'img0.png')
    assert item['lq'].min() < 0 or item['lq'].max() > 1, 'noisy inputs are not clipped'


def test_test_noise_does_not_depend_on_runs_or_worker_processes(clean_dir):
    dataset = NoisyImageDataset(options(clean_dir, phase='val'))
    torch.manual_seed(99)
    inline = [b['lq'] for b in DataLoader(dataset, batch_size=1, num_workers=0)]
    torch.manual_seed(7)
    workers = [b['lq'] for b in DataLoader(NoisyImageDataset(options(clean_dir, phase='val')), batch_size=1,
                                           num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(inline, workers)) and len(workers) == 6


def test_gray_mode_gives_one_channel_with_opencv_weights(clean_dir):
    item = NoisyImageDataset(options(clean_dir, gray=True))[1]
    rgb = cv2.cvtColor(cv2.imread(str(clean_dir / 'img1.png')), cv2.COLOR_BGR2RGB)
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    assert item['gt'].shape == item['lq'].shape == (1, SIZE, SIZE)
    assert torch.equal(item['gt'][0], torch.from_numpy(expected))
    assert torch.equal(item['lq'] - item['gt'], (item['gt'] + reference_noise((1, SIZE, SIZE), 25)) - item['gt'])
    train = NoisyImageDataset(options(clean_dir, phase='train', gray=True))[0]
    assert train['gt'].shape == train['lq'].shape == (1, 32, 32)


def test_training_sigma_is_uniform_over_the_configured_range(clean_dir):
    torch.manual_seed(0)
    dataset = NoisyImageDataset(options(clean_dir, phase='train', sigma_range=[5, 45]))
    sigmas = []
    for i in range(300):
        item = dataset[i % len(dataset)]
        assert item['gt'].shape == (3, 32, 32)
        sigmas.append(float((item['lq'] - item['gt']).std()) * 255)
    # Each estimate comes from 3,072 Gaussian samples (about 1.3% error): close enough to test the distribution.
    assert stats.kstest(sigmas, 'uniform', args=(5, 40)).pvalue > 0.01
    # The same test at the same level rejects a range only 5 off at each end: it is not too loose to fail.
    assert stats.kstest(sigmas, 'uniform', args=(0, 50)).pvalue < 0.01
    assert 4 < min(sigmas) < 7 and 43 < max(sigmas) < 46


def test_training_workers_draw_different_noise(clean_dir):
    dataset = NoisyImageDataset(options(clean_dir, phase='train', use_hflip=False, use_rot=False, gt_size=SIZE))
    dataset[0]  # a generator made in the parent process must not be inherited by the workers as it is
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    noises = [b['lq'] - b['gt'] for _ in range(2) for b in loader]  # two epochs, 12 samples
    distinct = {round(float(n.std()) * 255, 4) for n in noises}
    assert len(distinct) == len(noises)


def test_lmdb_and_meta_info_file_give_the_same_items_as_the_folder(clean_dir, tmp_path):
    names = ['img0.png', 'img1.png', 'img2.png']
    lmdb = tmp_path / 'clean.lmdb'
    make_lmdb_from_imgs(str(clean_dir), str(lmdb), names, [n[:-4] for n in names], n_thread=1)
    meta = tmp_path / 'meta.txt'
    meta.write_text('img2.png (40,40,3)\nimg0.png (40,40,3)\n')
    from_lmdb = NoisyImageDataset(options(lmdb, io_backend=dict(type='lmdb')))
    subset = NoisyImageDataset(options(clean_dir, meta_info_file=str(meta)))
    folder = NoisyImageDataset(options(clean_dir))
    assert from_lmdb.paths == ['img0', 'img1', 'img2'] and len(subset) == 2
    assert torch.equal(from_lmdb[2]['lq'], folder[2]['lq'])
    assert torch.equal(subset[0]['gt'], folder[2]['gt'])


@pytest.mark.parametrize('change, message', [
    (dict(sigma=300), "dataset 'noisy': sigma must be a noise level in [0, 255] (pixel units), got 300"),
    (dict(sigma=-5), "dataset 'noisy': sigma must be a noise level in [0, 255]"),
    (dict(phase='train', sigma_range=[0, 256]), "dataset 'noisy': sigma_range must be a noise level in [0, 255]"),
    (dict(phase='train', sigma_range=None, gt_size=32), "dataset 'noisy': sigma_range must be"),
])
def test_noise_levels_outside_0_255_are_named(clean_dir, change, message):
    opt = options(clean_dir, phase=change.pop('phase', 'test'))
    opt.update(change)
    with pytest.raises(DatasetError) as err:
        NoisyImageDataset(opt)
    assert str(err.value).startswith(message) and '\n' not in str(err.value)


def test_empty_or_missing_folders_are_named(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    with pytest.raises(DatasetError, match=rf"^dataset 'noisy': dataroot_gt: no images \(.*\) found in "
                                           rf"{tmp_path / 'empty'}$"):
        NoisyImageDataset(options(tmp_path / 'empty'))
    with pytest.raises(DatasetError, match=rf"^dataset 'noisy': dataroot_gt: folder {tmp_path / 'nope'} does not"):
        NoisyImageDataset(options(tmp_path / 'nope'))
    with pytest.raises(DatasetError, match='is not an LMDB folder'):
        NoisyImageDataset(options(tmp_path / 'empty', io_backend=dict(type='lmdb')))
