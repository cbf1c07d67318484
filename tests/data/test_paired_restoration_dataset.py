"""PairedRestorationDataset: pairing rules (same name, Rain100H, VE-LOL), aligned crops, LMDB, one-line errors."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ramit_plugin  # noqa: F401  (registers the datasets)
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from ramit_plugin.data import DatasetError, PairedRestorationDataset


def write_pair(lq_path: Path, gt_path: Path, seed: int, size=(36, 44)) -> None:
    """A random gt and its 'degraded' lq = gt // 2, so any lq pixel tells where it came from."""
    gt = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    for path, img in ((lq_path, gt // 2), (gt_path, gt)):
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)


def options(lq, gt, phase='val', **extra) -> dict:
    opt = dict(name='pairs', type='PairedRestorationDataset', phase=phase, dataroot_lq=str(lq), dataroot_gt=str(gt),
               io_backend=dict(type='disk'))
    opt.update(extra)
    return opt


def test_same_name_pairs_in_lol_layout(tmp_path):
    for i in (1, 22, 3):
        write_pair(tmp_path / 'low' / f'{i}.png', tmp_path / 'high' / f'{i}.png', i)
    dataset = build_dataset(options(tmp_path / 'low', tmp_path / 'high'))
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
    dataset = PairedRestorationDataset(options(tmp_path / 'input', tmp_path / 'target', phase='train', gt_size=16,
                                               use_hflip=True, use_rot=True))
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
    dataset = PairedRestorationDataset(options(tmp_path / 'rainy', tmp_path / 'clean', pairing='rain100h'))
    assert [(Path(p['lq_path']).name, Path(p['gt_path']).name) for p in dataset.paths] == [
        ('rain-001.png', 'norain-001.png'), ('rain-002.png', 'norain-002.png')]
    templates = PairedRestorationDataset(options(tmp_path / 'rainy', tmp_path / 'clean', lq_tmpl='rain-{}',
                                                 gt_tmpl='norain-{}'))
    assert templates.paths == dataset.paths


def test_ve_lol_rule_mixes_with_same_name_sets_in_subfolders(tmp_path):
    write_pair(tmp_path / 'low' / 'VE-LOL' / 'low00007.png', tmp_path / 'high' / 'VE-LOL' / 'normal00007.png', 7)
    write_pair(tmp_path / 'low' / 'LOL' / '7.png', tmp_path / 'high' / 'LOL' / '7.png', 8)
    dataset = PairedRestorationDataset(options(tmp_path / 'low', tmp_path / 'high', pairing='ve-lol'))
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
        PairedRestorationDataset(options(tmp_path / 'lq', tmp_path / 'gt'))
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith("dataset 'pairs': unmatched pairs (lq_tmpl '{}', gt_tmpl '{}'): 8 in dataroot_lq "
                              f"without a partner: {tmp_path / 'lq' / '10.png'}, {tmp_path / 'lq' / '11.png'}, ")
    assert message.endswith(f" ...; 1 in dataroot_gt without a partner: {tmp_path / 'gt' / '3_clean.png'}")


def write_lmdb_pairs(root: Path) -> None:
    """Pairs a.png, b.png in root/lq, root/gt and the same as root/lq.lmdb, root/gt.lmdb."""
    names = ['a.png', 'b.png']
    for i, name in enumerate(names):
        write_pair(root / 'lq' / name, root / 'gt' / name, i)
    for side in ('lq', 'gt'):
        make_lmdb_from_imgs(str(root / side), str(root / f'{side}.lmdb'), names, ['a', 'b'], n_thread=1)


def test_lmdb_pairs_read_the_same_images(tmp_path):
    write_lmdb_pairs(tmp_path)
    lmdb = PairedRestorationDataset(options(tmp_path / 'lq.lmdb', tmp_path / 'gt.lmdb', io_backend=dict(type='lmdb')))
    disk = PairedRestorationDataset(options(tmp_path / 'lq', tmp_path / 'gt'))
    assert lmdb.paths == [{'lq_path': 'a', 'gt_path': 'a'}, {'lq_path': 'b', 'gt_path': 'b'}]
    assert torch.equal(lmdb[1]['lq'], disk[1]['lq']) and torch.equal(lmdb[1]['gt'], disk[1]['gt'])


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
            PairedRestorationDataset(options(tmp_path / 'lq.lmdb', tmp_path / 'gt.lmdb', io_backend=dict(type='lmdb')))
        assert str(err.value).startswith(f"dataset 'pairs': dataroot_lq: {message}"), str(err.value)


def test_bad_options_and_files_are_named(tmp_path):
    write_pair(tmp_path / 'lq' / 'a.png', tmp_path / 'gt' / 'a.png', 0)
    write_pair(tmp_path / 'lq' / 'b.png', tmp_path / 'gt' / 'b.png', 1)
    (tmp_path / 'empty').mkdir()
    cases = [
        (dict(pairing='lol'), "dataset 'pairs': pairing must be one of same, rain100h, ve-lol, got 'lol'"),
        (dict(lq_tmpl='rain'), "dataset 'pairs': lq_tmpl must contain '{}' exactly once"),
        (dict(dataroot_gt=str(tmp_path / 'empty')), "dataset 'pairs': dataroot_gt: no images"),
        (dict(phase='train'), "dataset 'pairs': set gt_size"),
    ]
    for change, message in cases:
        with pytest.raises(DatasetError) as err:
            PairedRestorationDataset(dict(options(tmp_path / 'lq', tmp_path / 'gt'), **change))
        assert str(err.value).startswith(message) and '\n' not in str(err.value)

    dataset = PairedRestorationDataset(options(tmp_path / 'lq', tmp_path / 'gt'))
    cv2.imwrite(str(tmp_path / 'gt' / 'a.png'), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / 'lq' / 'b.png').write_bytes(b'')  # e.g. a copy that was cut short
    with pytest.raises(DatasetError, match=rf"^dataset 'pairs': {tmp_path / 'lq' / 'a.png'} is 44x36 but its target "
                                           rf"{tmp_path / 'gt' / 'a.png'} is 30x20$"):
        dataset[0]
    with pytest.raises(DatasetError, match=rf"^dataset 'pairs': {tmp_path / 'lq' / 'b.png'} is missing or not an "
                                           "image OpenCV can read$"):
        dataset[1]
