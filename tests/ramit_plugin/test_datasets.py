"""The plugin's BasicSR datasets (read through ramit.datasets.ImageSource): NoisyImageDataset (protocol noise at test
time, blind noise in training, gray mode) and PairedRestorationDataset (pairing rules, aligned crops); both read
folders and LMDBs, 16-bit images in full precision, and name the file, key or line at fault in one line."""
from pathlib import Path
from typing import List

import cv2
import lmdb
import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader

import ramit_plugin  # noqa: F401  (registers the datasets)
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from ramit.datasets import DatasetError
from ramit.noise import reference_noise
from ramit.training import SampleKey, stop_loader_workers
from ramit_plugin.data import NoisyImageDataset, PairedRestorationDataset
from ramit_plugin.dataprep import make_lmdb
from ramit_plugin.pipeline import SeededDataset

SIZE = 40


def photos(count: int, size: int = SIZE) -> List[np.ndarray]:
    """BGR uint8 crops of scikit-image's bundled photos (real texture, saturated pixels included)."""
    from skimage import data
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return [np.ascontiguousarray(sources[i % 4][20 * i:20 * i + size, 30 * i:30 * i + size, ::-1])
            for i in range(count)]


def noisy_options(root: Path, phase: str = 'test', **extra) -> dict:
    """NoisyImageDataset options on ``root`` (test noise sigma 25, or blind training noise and 32-pixel crops)."""
    opt = dict(name='noisy', type='NoisyImageDataset', phase=phase, dataroot_gt=str(root),
               io_backend=dict(type='disk'))
    training = dict(sigma_range=[0, 50], gt_size=32, use_hflip=True, use_rot=True)
    opt.update(training if phase == 'train' else dict(sigma=25))
    opt.update(extra)
    return opt


def paired_options(lq: Path, gt: Path, phase: str = 'val', **extra) -> dict:
    """PairedRestorationDataset options on the folders (or LMDBs) ``lq`` and ``gt``."""
    opt = dict(name='pairs', type='PairedRestorationDataset', phase=phase, dataroot_lq=str(lq), dataroot_gt=str(gt),
               io_backend=dict(type='disk'))
    opt.update(extra)
    return opt


def write_pair(lq_path: Path, gt_path: Path, seed: int, size=(36, 44)) -> None:
    """A random gt and its 'degraded' lq = gt // 2, so any lq pixel tells where it came from."""
    gt = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    for path, img in ((lq_path, gt // 2), (gt_path, gt)):
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)


def write_lmdb_pairs(root: Path) -> None:
    """Pairs a.png, b.png in root/lq, root/gt and the same as root/lq.lmdb, root/gt.lmdb (BasicSR's own writer)."""
    names = ['a.png', 'b.png']
    for i, name in enumerate(names):
        write_pair(root / 'lq' / name, root / 'gt' / name, i)
    for side in ('lq', 'gt'):
        make_lmdb_from_imgs(str(root / side), str(root / f'{side}.lmdb'), names, ['a', 'b'], n_thread=1)


def lmdb_dataset(kind: str, root: Path, **extra):
    """A NoisyImageDataset on root/gt.lmdb or a PairedRestorationDataset on root/lq.lmdb + root/gt.lmdb."""
    lmdb_backend = dict(io_backend=dict(type='lmdb'), **extra)
    if kind == 'noisy':
        return NoisyImageDataset(noisy_options(root / 'gt.lmdb', **lmdb_backend))
    return PairedRestorationDataset(paired_options(root / 'lq.lmdb', root / 'gt.lmdb', **lmdb_backend))


def label(kind: str) -> str:
    """How the errors of lmdb_dataset(kind) name the dataset."""
    return "dataset 'noisy'" if kind == 'noisy' else "dataset 'pairs'"


# ------------------------------------------------------------------------------------------- NoisyImageDataset
@pytest.fixture(scope='module')
def clean_dir(tmp_path_factory) -> Path:
    """Six clean PNGs (one in a subfolder: folders are searched recursively) plus a file that is not an image."""
    root = tmp_path_factory.mktemp('clean')
    (root / 'sub').mkdir()
    for i, img in enumerate(photos(6)):
        cv2.imwrite(str(root / ('sub' if i == 5 else '.') / f'img{i}.png'), img)
    (root / 'README.txt').write_text('not an image')
    return root


def test_test_noise_is_the_protocol_noise_on_the_clean_rgb_image(clean_dir):
    dataset = build_dataset(noisy_options(clean_dir, sigma=15))
    assert len(dataset) == 6 and dataset.paths[-1].endswith('sub/img5.png')
    item = dataset[0]
    bgr = cv2.imread(str(clean_dir / 'img0.png'))
    assert torch.equal(item['gt'][0], torch.from_numpy(bgr[..., 2].astype(np.float32) / 255.0))  # channel 0 = red
    assert torch.equal(item['lq'] - item['gt'], (item['gt'] + reference_noise((3, SIZE, SIZE), 15)) - item['gt'])
    assert item['lq_path'] == item['gt_path'] == str(clean_dir / 'img0.png')
    assert item['lq'].min() < 0 or item['lq'].max() > 1, 'noisy inputs are not clipped'


def test_test_noise_does_not_depend_on_runs_or_worker_processes(clean_dir):
    dataset = NoisyImageDataset(noisy_options(clean_dir, phase='val'))
    torch.manual_seed(99)
    inline = [b['lq'] for b in DataLoader(dataset, batch_size=1, num_workers=0)]
    torch.manual_seed(7)
    workers = [b['lq'] for b in DataLoader(NoisyImageDataset(noisy_options(clean_dir, phase='val')), batch_size=1,
                                           num_workers=2)]
    assert len(workers) == 6 and all(torch.equal(a, b) for a, b in zip(inline, workers))


def test_gray_mode_gives_one_channel_with_opencv_weights(clean_dir):
    item = NoisyImageDataset(noisy_options(clean_dir, gray=True))[1]
    rgb = cv2.cvtColor(cv2.imread(str(clean_dir / 'img1.png')), cv2.COLOR_BGR2RGB)
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    assert item['gt'].shape == item['lq'].shape == (1, SIZE, SIZE)
    assert torch.equal(item['gt'][0], torch.from_numpy(expected))
    assert torch.equal(item['lq'] - item['gt'], (item['gt'] + reference_noise((1, SIZE, SIZE), 25)) - item['gt'])
    train = NoisyImageDataset(noisy_options(clean_dir, phase='train', gray=True))[0]
    assert train['gt'].shape == train['lq'].shape == (1, 32, 32)


def test_training_sigma_is_uniform_over_the_configured_range(clean_dir):
    torch.manual_seed(0)
    dataset = NoisyImageDataset(noisy_options(clean_dir, phase='train', sigma_range=[5, 45]))
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
    dataset = NoisyImageDataset(noisy_options(clean_dir, phase='train', use_hflip=False, use_rot=False,
                                              gt_size=SIZE))
    dataset[0]  # a generator made in the parent process must not be inherited by the workers as it is
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    noises = [b['lq'] - b['gt'] for _ in range(2) for b in loader]  # two epochs, 12 samples
    distinct = {round(float(n.std()) * 255, 4) for n in noises}
    assert len(distinct) == len(noises)


def test_lmdb_and_meta_info_file_give_the_same_items_as_the_folder(clean_dir, tmp_path):
    names = ['img0.png', 'img1.png', 'img2.png']
    lmdb_dir = tmp_path / 'clean.lmdb'
    make_lmdb_from_imgs(str(clean_dir), str(lmdb_dir), names, [n[:-4] for n in names], n_thread=1)
    meta = tmp_path / 'meta.txt'
    meta.write_text('img2.png (40,40,3)\nimg0.png (40,40,3)\n')
    from_lmdb = NoisyImageDataset(noisy_options(lmdb_dir, io_backend=dict(type='lmdb')))
    subset = NoisyImageDataset(noisy_options(clean_dir, meta_info_file=str(meta)))
    folder = NoisyImageDataset(noisy_options(clean_dir))
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
    opt = noisy_options(clean_dir, phase=change.pop('phase', 'test'))
    opt.update(change)
    with pytest.raises(DatasetError) as err:
        NoisyImageDataset(opt)
    assert str(err.value).startswith(message) and '\n' not in str(err.value)


def test_empty_or_missing_folders_are_named(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    with pytest.raises(DatasetError, match=rf"^dataset 'noisy': dataroot_gt: no images \(.*\) found in "
                                           rf"{tmp_path / 'empty'}$"):
        NoisyImageDataset(noisy_options(tmp_path / 'empty'))
    with pytest.raises(DatasetError, match=rf"^dataset 'noisy': dataroot_gt: folder {tmp_path / 'nope'} does not"):
        NoisyImageDataset(noisy_options(tmp_path / 'nope'))
    with pytest.raises(DatasetError, match='is not an LMDB folder'):
        NoisyImageDataset(noisy_options(tmp_path / 'empty', io_backend=dict(type='lmdb')))


# ------------------------------------------------------------------------------------ PairedRestorationDataset
def test_same_name_pairs_in_lol_layout(tmp_path):
    for i in (1, 22, 3):
        write_pair(tmp_path / 'low' / f'{i}.png', tmp_path / 'high' / f'{i}.png', i)
    dataset = build_dataset(paired_options(tmp_path / 'low', tmp_path / 'high'))
    assert [Path(p['lq_path']).name for p in dataset.paths] == ['1.png', '22.png', '3.png']
    item = dataset[1]
    bgr = cv2.imread(str(tmp_path / 'high' / '22.png'))
    assert item['gt'].shape == item['lq'].shape == (3, 36, 44)
    assert torch.equal(item['gt'][0], torch.from_numpy(bgr[..., 2].astype(np.float32) / 255.0))  # RGB order
    assert torch.equal(item['lq'], torch.from_numpy(cv2.imread(str(tmp_path / 'low' / '22.png'))[..., ::-1]
                                                    .transpose(2, 0, 1).astype(np.float32) / 255.0))
    assert item['lq_path'] == str(tmp_path / 'low' / '22.png')


def test_training_crops_and_augments_both_images_alike(tmp_path):
    write_pair(tmp_path / 'input' / 'a.png', tmp_path / 'target' / 'a.png', 0)
    dataset = PairedRestorationDataset(paired_options(tmp_path / 'input', tmp_path / 'target', phase='train',
                                                      gt_size=16, use_hflip=True, use_rot=True))
    seen = set()
    for _ in range(12):
        item = dataset[0]
        assert item['lq'].shape == item['gt'].shape == (3, 16, 16)
        assert torch.equal(torch.floor(item['gt'] * 255 / 2), torch.round(item['lq'] * 255))
        seen.add(item['gt'].sum().item())
    assert len(seen) > 6, 'random crops'


def test_rain100h_rule_pairs_rain_with_norain(tmp_path):
    for i in (1, 2):
        write_pair(tmp_path / 'rainy' / f'rain-{i:03d}.png', tmp_path / 'clean' / f'norain-{i:03d}.png', i)
    dataset = PairedRestorationDataset(paired_options(tmp_path / 'rainy', tmp_path / 'clean', pairing='rain100h'))
    assert [(Path(p['lq_path']).name, Path(p['gt_path']).name) for p in dataset.paths] == [
        ('rain-001.png', 'norain-001.png'), ('rain-002.png', 'norain-002.png')]
    templates = PairedRestorationDataset(paired_options(tmp_path / 'rainy', tmp_path / 'clean', lq_tmpl='rain-{}',
                                                        gt_tmpl='norain-{}'))
    assert templates.paths == dataset.paths


def test_ve_lol_rule_mixes_with_same_name_sets_in_subfolders(tmp_path):
    write_pair(tmp_path / 'low' / 'VE-LOL' / 'low00007.png', tmp_path / 'high' / 'VE-LOL' / 'normal00007.png', 7)
    write_pair(tmp_path / 'low' / 'LOL' / '7.png', tmp_path / 'high' / 'LOL' / '7.png', 8)
    dataset = PairedRestorationDataset(paired_options(tmp_path / 'low', tmp_path / 'high', pairing='ve-lol'))
    pairs = [(Path(p['lq_path']).relative_to(tmp_path).as_posix(), Path(p['gt_path']).relative_to(tmp_path).as_posix())
             for p in dataset.paths]
    assert pairs == [('low/LOL/7.png', 'high/LOL/7.png'), ('low/VE-LOL/low00007.png', 'high/VE-LOL/normal00007.png')]


def test_unmatched_pairs_are_listed_in_one_line(tmp_path):
    for i in range(8):
        write_pair(tmp_path / 'lq' / f'{i}.png', tmp_path / 'gt' / f'{i}.png', i)
    (tmp_path / 'gt' / '3.png').rename(tmp_path / 'gt' / '3_clean.png')
    for i in range(8, 15):  # seven extra inputs: only the first five are listed
        write_pair(tmp_path / 'lq' / f'{i}.png', tmp_path / 'unused' / f'{i}.png', i)
    with pytest.raises(DatasetError) as err:
        PairedRestorationDataset(paired_options(tmp_path / 'lq', tmp_path / 'gt'))
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith("dataset 'pairs': unmatched pairs (lq_tmpl '{}', gt_tmpl '{}'): 8 in dataroot_lq "
                              f"without a partner: {tmp_path / 'lq' / '10.png'}, {tmp_path / 'lq' / '11.png'}, ")
    assert message.endswith(f" ...; 1 in dataroot_gt without a partner: {tmp_path / 'gt' / '3_clean.png'}")


def test_lmdb_pairs_read_the_same_images(tmp_path):
    write_lmdb_pairs(tmp_path)
    from_lmdb = lmdb_dataset('pairs', tmp_path)
    disk = PairedRestorationDataset(paired_options(tmp_path / 'lq', tmp_path / 'gt'))
    assert from_lmdb.paths == [{'lq_path': 'a', 'gt_path': 'a'}, {'lq_path': 'b', 'gt_path': 'b'}]
    assert torch.equal(from_lmdb[1]['lq'], disk[1]['lq']) and torch.equal(from_lmdb[1]['gt'], disk[1]['gt'])


def test_damaged_lmdbs_are_named_before_anything_reads_them(tmp_path):
    """A truncated data.mdb would end the process by SIGBUS at the first read, without a word."""
    write_lmdb_pairs(tmp_path)
    data = tmp_path / 'lq.lmdb' / 'data.mdb'
    intact = data.read_bytes()
    for damage, message in ((lambda: data.write_bytes(intact[:9000]), f'{data} is truncated: 9000 bytes, but the '
                                                                      'database uses '),
                            (lambda: data.write_bytes(b''), f'{data} is empty (0 bytes)'),
                            (lambda: (data.write_bytes(intact), (tmp_path / 'lq.lmdb' / 'meta_info.txt').write_text(
                                'a.png (36,44,3) 1\nc.png (36,44,3) 1\n')),
                             f"{tmp_path / 'lq.lmdb' / 'meta_info.txt'} lists 1 key(s) that {tmp_path / 'lq.lmdb'} "
                             'does not hold, e.g. c')):
        damage()
        with pytest.raises(DatasetError) as err:
            lmdb_dataset('pairs', tmp_path)
        assert str(err.value).startswith(f"dataset 'pairs': dataroot_lq: {message}"), str(err.value)


def test_bad_options_and_files_are_named(tmp_path):
    write_pair(tmp_path / 'lq' / 'a.png', tmp_path / 'gt' / 'a.png', 0)
    write_pair(tmp_path / 'lq' / 'b.png', tmp_path / 'gt' / 'b.png', 1)
    write_pair(tmp_path / 'lq' / 'c.png', tmp_path / 'gt' / 'c.png', 2)
    (tmp_path / 'empty').mkdir()
    cases = [
        (dict(pairing='lol'), "dataset 'pairs': pairing must be one of same, rain100h, ve-lol, got 'lol'"),
        (dict(lq_tmpl='rain'), "dataset 'pairs': lq_tmpl must contain '{}' exactly once"),
        (dict(dataroot_gt=str(tmp_path / 'empty')), "dataset 'pairs': dataroot_gt: no images"),
        (dict(phase='train'), "dataset 'pairs': set gt_size"),
    ]
    for change, message in cases:
        with pytest.raises(DatasetError) as err:
            PairedRestorationDataset(dict(paired_options(tmp_path / 'lq', tmp_path / 'gt'), **change))
        assert str(err.value).startswith(message) and '\n' not in str(err.value)

    dataset = PairedRestorationDataset(paired_options(tmp_path / 'lq', tmp_path / 'gt'))
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / 'lq' / 'b.png').write_bytes(b'')  # e.g. a copy that was cut short
    (tmp_path / 'gt' / 'c.png').unlink()  # deleted after the dataset was indexed
    errors = [
        f"dataset 'pairs': {tmp_path / 'lq' / 'a.png'} is 44x36 but its target {tmp_path / 'gt' / 'a.png'} is 30x20",
        f"dataset 'pairs': {tmp_path / 'lq' / 'b.png'}: cannot be read as an image (corrupt file or unsupported "
        'format)',
        f"dataset 'pairs': {tmp_path / 'gt' / 'c.png'}: No such file or directory",
    ]
    for index, message in enumerate(errors):
        with pytest.raises(DatasetError) as err:
            dataset[index]
        assert str(err.value) == message


# ------------------------------------------------------------------------- reading through ramit's ImageSource
def corrupt_png(png: bytes) -> bytes:
    """``png`` with its header kept and its pixel data overwritten: the size is readable, the pixels are not."""
    return png[:45] + b'\xff' * (len(png) - 57) + png[-12:]


def replace_value(lmdb_dir: Path, key: str, change) -> None:
    """Replace the value under ``key`` in an LMDB with change(value), as a bad copy or a bit rot would."""
    with lmdb.open(str(lmdb_dir), map_size=1 << 26) as env, env.begin(write=True) as txn:
        assert txn.put(key.encode(), change(txn.get(key.encode())))


@pytest.mark.parametrize('kind', ['noisy', 'pairs'])
@pytest.mark.parametrize('change', [
    pytest.param(corrupt_png, id='corrupt-png'),  # the example
    pytest.param(lambda value: b'', id='empty'),  # variants: an empty value, text where an image should be
    pytest.param(lambda value: b'this is not an image', id='text'),
])
def test_an_unreadable_lmdb_value_is_named_by_database_and_key(tmp_path, kind, change):
    write_lmdb_pairs(tmp_path)
    replace_value(tmp_path / 'gt.lmdb', 'b', change)
    dataset = lmdb_dataset(kind, tmp_path)
    dataset[0]  # the intact key reads
    message = f"{label(kind)}: {tmp_path / 'gt.lmdb'} key 'b': cannot be read as an image (corrupt file or " \
              'unsupported format)'
    with pytest.raises(DatasetError) as err:
        dataset[1]
    assert str(err.value) == message
    # The same line from the training pipeline's dataset (per-sample seeds) ...
    with pytest.raises(DatasetError) as err:
        SeededDataset(dataset)[SampleKey(1, 7)]
    assert str(err.value) == message
    if kind == 'pairs' and change is corrupt_png:  # ... and from a data-loader worker
        batches = iter(DataLoader(SeededDataset(dataset), batch_size=1, num_workers=1))
        with pytest.raises(DatasetError) as err:
            list(batches)
        stop_loader_workers(batches)  # at once, as the pipelines do (a later collection would wait 5 s)
        assert str(err.value) == message


@pytest.mark.parametrize('kind, backend, side', [
    ('noisy', 'lmdb', 'gt'),  # the example: an LMDB's meta_info.txt
    ('pairs', 'lmdb', 'lq'),
    ('pairs', 'disk', 'gt'),  # a variant: the meta_info_file option of a folder dataset
])
def test_a_meta_info_line_starting_with_a_dot_is_named_by_file_and_line(tmp_path, kind, backend, side):
    """BasicSR keys a meta_info name by what precedes its first '.': '.DS_Store' or '.a.png' would give the key ''."""
    write_lmdb_pairs(tmp_path)
    meta = tmp_path / f'{side}.lmdb' / 'meta_info.txt'
    if backend == 'disk':
        meta = tmp_path / 'meta_info.txt'
    meta.write_text('a.png (36,44,3) 1\n\n.b.png (36,44,3) 1\n')
    with pytest.raises(DatasetError) as err:
        if backend == 'lmdb':
            lmdb_dataset(kind, tmp_path)
        else:
            PairedRestorationDataset(paired_options(tmp_path / 'lq', tmp_path / 'gt', meta_info_file=str(meta)))
    assert str(err.value) == (f"{label(kind)}: dataroot_{side}: {meta}, line 3: '.b.png' gives an empty LMDB key (a "
                              "name must not start with '.')")


# 16-bit samples that 8-bit reading (OpenCV's IMREAD_COLOR keeps the high byte) cannot tell apart: 258 and 511 both
# read as 1/255, 65534 as 255/255. (257 is no test of it: 257/65535 is exactly 1/255.)
DEEP_VALUES = np.array([0, 1, 257, 258, 511, 32768, 65534, 65535], np.uint16)


def write_16bit(folder: Path, name: str, channels: int) -> np.ndarray:
    """A 16-bit PNG (8 x 8, every DEEP_VALUES sample in each channel); returns it in RGB order (or gray)."""
    img = np.stack([np.roll(np.tile(DEEP_VALUES, (8, 1)), c, axis=1) for c in range(channels)], axis=-1)
    img = img[..., 0] if channels == 1 else img
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / name), img)
    return img if channels == 1 else img[..., ::-1]


@pytest.mark.parametrize('backend', ['disk', 'lmdb'])
def test_16_bit_images_are_read_in_full_precision(tmp_path, backend):
    rgb = write_16bit(tmp_path / 'gt', 'deep.png', 3)
    gray = write_16bit(tmp_path / 'lq', 'deep.png', 1)
    root = {'disk': lambda side: tmp_path / side, 'lmdb': lambda side: tmp_path / f'{side}.lmdb'}[backend]
    if backend == 'lmdb':
        for side in ('lq', 'gt'):
            make_lmdb(tmp_path / side, root(side))
    io = dict(io_backend=dict(type=backend))
    expected = torch.from_numpy(rgb.astype(np.float32) / 65535).permute(2, 0, 1)
    item = PairedRestorationDataset(paired_options(root('lq'), root('gt'), **io))[0]
    assert torch.equal(item['gt'], expected)
    assert len(item['gt'].unique()) == len(DEEP_VALUES)
    # What reading the 8 high bits would give differs: the check above tells full precision from 8 bits.
    assert not torch.equal(expected, torch.from_numpy((rgb >> 8).astype(np.float32) / 255).permute(2, 0, 1))
    # A gray file is three equal channels, still 16-bit.
    assert torch.equal(item['lq'], torch.from_numpy(gray.astype(np.float32) / 65535).expand(3, 8, 8))
    clean = NoisyImageDataset(noisy_options(root('gt'), **io))[0]['gt']
    assert torch.equal(clean, expected)
    # Gray mode converts on the 16-bit integers (OpenCV's weights), as on 8-bit ones.
    gray_mode = NoisyImageDataset(noisy_options(root('gt'), gray=True, **io))[0]['gt']
    deep_gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    assert deep_gray.dtype == np.uint16
    assert torch.equal(gray_mode[0], torch.from_numpy(deep_gray.astype(np.float32) / 65535))
