"""Fixtures for `basicsr train/test` tests: a tiny SR dataset (LMDB and folders) made from real photos, option files,
and `basicsr` run as a console script (a real process) or in this process (no 5 s of imports per run).

``lock_holder`` and ``umask_022`` come from tests/conftest.py."""
import contextlib
import faulthandler
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional

import cv2
import numpy as np
import pytest
import torch
import yaml

import ramit_plugin  # noqa: F401  (torchvision alias before basicsr)
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from basicsr.utils.matlab_functions import imresize

SCALE = 2
TINY_NET = dict(type='RAMiT', variant='RAMiT-1', task='sr', upscale=SCALE, dim=16, depths=[1, 1, 1, 1],
                num_heads=[2, 2, 2, 2], window_size=4)


def photo_crops(count: int, size: int) -> List[np.ndarray]:
    """``count`` BGR uint8 crops of size x size from scikit-image's bundled photos (real texture, no download)."""
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(count):
        img = photos[i % len(photos)]
        top, left = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        crops.append(np.ascontiguousarray(img[top:top + size, left:left + size, ::-1]))
    return crops


def write_pairs(root: Path, count: int = 8, size: int = 48) -> Dict[str, Path]:
    """HR/ and LR/ folders (MATLAB-bicubic x2, same names) plus both as LMDBs with meta_info.txt."""
    hr_dir, lr_dir = root / 'HR', root / 'LR'
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir()
    names = []
    for i, hr in enumerate(photo_crops(count, size)):
        lr = imresize(hr.astype(np.float64) / 255.0, 1 / SCALE)
        name = f'{i:04d}.png'
        cv2.imwrite(str(hr_dir / name), hr)
        cv2.imwrite(str(lr_dir / name), np.clip(np.round(lr * 255), 0, 255).astype(np.uint8))
        names.append(name)
    out = dict(hr=hr_dir, lr=lr_dir)
    for key, folder in (('hr_lmdb', hr_dir), ('lr_lmdb', lr_dir)):
        out[key] = root / f'{folder.name}.lmdb'
        make_lmdb_from_imgs(str(folder), str(out[key]), names, [n[:-4] for n in names], n_thread=1)
    return out


@pytest.fixture(scope='session')
def sr_data(tmp_path_factory) -> Dict[str, Path]:
    """A tiny x2 SR dataset shared by the CLI tests (read-only for them)."""
    return write_pairs(tmp_path_factory.mktemp('sr_data'))


def train_options(data: Dict[str, Path], name: str = 'tiny', total_iter: int = 20, **train) -> dict:
    """Option dict for a tiny RAMiTModel run on ``data`` (LMDB train set, folder val set)."""
    opt = dict(
        name=name, model_type='RAMiTModel', scale=SCALE, num_gpu='auto', manual_seed=0,
        datasets=dict(
            train=dict(name='tiny', type='PairedImageDataset', dataroot_gt=str(data['hr_lmdb']),
                       dataroot_lq=str(data['lr_lmdb']), io_backend=dict(type='lmdb'), gt_size=32, use_hflip=True,
                       use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=4, dataset_enlarge_ratio=1),
            val=dict(name='tinyval', type='PairedImageDataset', dataroot_gt=str(data['hr']),
                     dataroot_lq=str(data['lr']), io_backend=dict(type='disk'))),
        network_g=dict(TINY_NET),
        path=dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        train=dict(optim_g=dict(type='Adam', lr=2e-3, betas=[0.9, 0.99]),
                   scheduler=dict(type='MultiStepLR', milestones=[15], gamma=0.5), warmup_iter=5,
                   total_iter=total_iter, pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean')),
        val=dict(val_freq=10, save_img=False,
                 metrics=dict(psnr=dict(type='calculate_psnr', crop_border=SCALE, test_y_channel=True))),
        logger=dict(print_freq=5, save_checkpoint_freq=10, use_tb_logger=False),
        dist_params=dict(backend='nccl', port=29500),
    )
    opt['train'].update(train)
    return opt


def write_yaml(path: Path, opt: dict) -> Path:
    """Write an option dict as YAML."""
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def basicsr_cmd(*args: str, cwd: Path, env: Optional[dict] = None, timeout: int = 300):
    """Run the `basicsr` console script next to this Python; returns the CompletedProcess (text)."""
    import subprocess
    script = Path(sys.executable).parent / 'basicsr'
    full_env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    return subprocess.run([str(script), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def set5_test_options(variant: str, scale: int, datasets: Path, weights: Path) -> dict:
    """A `basicsr test` option dict for one published SR checkpoint on ../shared/datasets/Set5."""
    metric = dict(crop_border=scale, test_y_channel=True)
    return dict(
        name=f'{variant}_x{scale}', model_type='RAMiTModel', scale=scale, num_gpu='auto', manual_seed=0,
        datasets=dict(test_1=dict(name='Set5', type='PairedImageDataset', dataroot_gt=str(datasets / 'Set5' / 'HR'),
                                  dataroot_lq=str(datasets / 'Set5' / 'LR_bicubic' / f'X{scale}'),
                                  filename_tmpl=f'{{}}x{scale}', io_backend=dict(type='disk'))),
        network_g=dict(type='RAMiT', variant=variant, task='sr', upscale=scale),
        path=dict(pretrain_network_g=str(weights / f'{variant}_X{scale}.pth'), strict_load_g=True),
        val=dict(save_img=False, metrics=dict(psnr=dict(type='calculate_psnr', **metric),
                                              ssim=dict(type='calculate_ssim', **metric))))


@pytest.fixture(scope='session')
def set5_options():
    """Factory: `basicsr test` option dict of a published SR checkpoint on Set5 (see set5_test_options)."""
    return set5_test_options


@pytest.fixture(scope='session')
def tiny_options():
    """Factory: option dict of a tiny RAMiTModel run (see train_options)."""
    return train_options


@pytest.fixture(scope='session')
def options_file():
    """Factory: write an option dict to a YAML file and return its path."""
    return write_yaml


@pytest.fixture(scope='session')
def run_basicsr():
    """Factory: run the `basicsr` console script in a folder (see basicsr_cmd)."""
    return basicsr_cmd


class BasicsrResult(NamedTuple):
    """What an in-process `basicsr` run gives: the exit status and its output (CompletedProcess's names)."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def basicsr_log_to(stream) -> Iterator[None]:
    """Point basicsr's console log handler at ``stream`` for the block (it keeps the sys.stderr of the moment it was
    made, which may be a capture stream closed since), then at the real stderr."""
    from basicsr.utils import get_root_logger

    # Its own console handler only: pytest attaches its capture handlers (StreamHandler subclasses) to it too.
    handlers = [h for h in get_root_logger().handlers if type(h) is logging.StreamHandler]

    def point(target) -> None:
        for handler in handlers:  # not setStream: it flushes the old stream, which may be closed
            with handler.lock:
                handler.stream = target

    point(stream)
    try:
        yield
    finally:
        point(sys.__stderr__)


def basicsr_main(*args: str, cwd: Path) -> BasicsrResult:
    """`basicsr ARGS` run in this process from ``cwd``: ramit_cli.main.main with stdout and stderr (and basicsr's
    console log) captured in real files (the pipeline enables faulthandler, which needs a file descriptor)."""
    from ramit_cli.main import main

    previous = os.getcwd()
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), basicsr_log_to(err):
                try:
                    code = main(list(args), prog='basicsr')
                except SystemExit as exit_:  # argparse: --help, usage errors
                    code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os.chdir(previous)
            if faulthandler.is_enabled():  # the pipeline pointed it at ``err``, which closes now
                faulthandler.enable(file=sys.__stderr__)
        out.seek(0)
        err.seek(0)
        return BasicsrResult(code, out.read(), err.read())


@pytest.fixture(scope='session')
def basicsr():
    """Factory: `basicsr ARGS` in this process from a folder (see basicsr_main); same result fields as
    run_basicsr's subprocess."""
    return basicsr_main


def last_line(stderr: str) -> str:
    """The last line a command wrote to stderr (its error, after any log lines)."""
    return stderr.strip().splitlines()[-1]


def snapshot(folder: Path) -> Dict[Path, str]:
    """Relative path -> SHA-256 of every file below ``folder``."""
    import hashlib

    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob('*')
            if p.is_file()}


def outputs(folder: Path) -> List[str]:
    """What `basicsr train/test` left in ``folder``: every path under experiments/ and results/ except the hidden lock
    files beside the experiment folders (kept on purpose: deleting a lock file races with its next taker)."""
    return sorted(p.relative_to(folder).as_posix() for top in ('experiments', 'results')
                  for p in (folder / top).rglob('*')
                  if not (p.parent.name == top and p.name.startswith('.') and p.name.endswith('.lock')))


def tiny_network(opt: dict, **changes) -> torch.nn.Module:
    """The network of a tiny option dict (``changes`` override its arguments)."""
    from ramit.network import RAMiT

    return RAMiT(**dict({k: v for k, v in opt['network_g'].items() if k != 'type'}, **changes))


@pytest.fixture(scope='session')
def weights_dir(reference_dir) -> Path:
    """../shared/ramit_reference/weights: the published checkpoints (skipped when absent, failed when CI is set)."""
    from tests.conftest import require_shared

    return require_shared('ramit_reference', 'weights')
