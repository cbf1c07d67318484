"""Fixtures and helpers of the mmengine adapter's tests: generated image folders, a tiny config built on the shipped
one, tiny checkpoints and one trained tiny run that the tests reading its results share.

Test files import the helpers as ``from tests.ramit_plugin.mm.conftest import ...`` (pytest has loaded this module
under that name before it collects them; see tests/conftest.py for the fixtures of ../shared).
"""
import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple

import cv2
import numpy as np
import pytest
import torch

import ramit_plugin  # noqa: F401  (torchvision alias before basicsr)
import ramit_plugin.mm  # noqa: F401  (allows the checkpoints' numpy/HistoryBuffer globals for weights_only)
from ramit.network import RAMiT
from ramit_cli.main import main
from ramit_plugin.resources import option_file

SCALE = 2
# The smallest RAMiT (one block per stage): the generator of the tiny config.
TINY_ARGS = dict(dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
TINY_GENERATOR = dict(type='RAMiT', variant='RAMiT-1', task='sr', upscale=SCALE, **TINY_ARGS)


def smooth_image(rng: np.random.Generator, size: int, channels: int = 3) -> np.ndarray:
    """A learnable uint8 BGR image: a random sum of plane waves per channel."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)) + rng.uniform(0, 6))
                    for _ in range(channels)], -1)
    return ((img * 0.5 + 0.5) * 255).round().astype(np.uint8)


def write(path: Path, img: np.ndarray) -> None:
    """cv2.imwrite into a folder created on demand."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def tiny_network(upscale: int = SCALE, seed: int = 0) -> RAMiT:
    """The tiny config's generator (at ``upscale``) with random weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return RAMiT('RAMiT-1', 'sr', upscale, **TINY_ARGS)


def error_line(capsys: pytest.CaptureFixture) -> str:
    """The one line a command wrote to stderr (asserting that it was one)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def names(folder: Path) -> List[str]:
    """The sorted names in ``folder`` (to show that a refused command created nothing)."""
    return sorted(p.name for p in folder.iterdir())


def scalars(work_dir: Path) -> List[dict]:
    """Every training record (iter, lr, loss) the LocalVisBackend wrote under ``work_dir``, by iteration."""
    records = []
    for path in work_dir.glob('*/vis_data/scalars.json'):
        records += [r for r in map(json.loads, path.read_text().splitlines()) if 'loss' in r]
    return sorted(records, key=lambda r: r['iter'])


def generator_weights(checkpoint: dict, key: str = 'state_dict') -> Dict[str, torch.Tensor]:
    """The generator's weights in a Runner checkpoint's ``key`` entry, without the 'generator.' prefix."""
    prefix = 'module.generator.' if key == 'ema_state_dict' else 'generator.'
    return {k[len(prefix):]: v for k, v in checkpoint[key].items() if k.startswith(prefix)}


def runner_checkpoint(path: Path) -> dict:
    """A checkpoint `ramit mm-train` saved, loaded as mmengine loads it (torch.load's weights_only default)."""
    return torch.load(path, map_location='cpu')


@pytest.fixture(scope='session')
def sr_folders(tmp_path_factory) -> Dict[str, Path]:
    """HR/ (48x48) and LR/ (24x24, area-downscaled, same names) with 4 images."""
    root = tmp_path_factory.mktemp('sr')
    rng = np.random.default_rng(0)
    for i in range(4):
        hr = smooth_image(rng, 48)
        write(root / 'HR' / f'img{i}.png', hr)
        write(root / 'LR' / f'img{i}.png', cv2.resize(hr, (24, 24), interpolation=cv2.INTER_AREA))
    return dict(root=root, hr=root / 'HR', lr=root / 'LR')


def write_tiny_config(path: Path, data_root: Path, max_iters: int) -> Path:
    """A config inheriting options/mmengine_RAMiT_SRx2.py with a tiny RAMiT, the generated data and short schedule.

    Warm-up over 5 iterations from half the lr and a halving at 15, so a resumed run shows whether the schedulers
    continued at the right iteration. Every iteration is logged unsmoothed (window 1); no data-loader workers.
    """
    path.write_text(f'''
_base_ = {str(option_file('mmengine_RAMiT_SRx2.py'))!r}
model = dict(generator={TINY_GENERATOR!r})
_data = dict(data_root={str(data_root)!r}, data_prefix=dict(gt='HR', lq='LR'), io_backend='disk', lq_tmpl='{{}}')
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dict(
    _data, pipeline=[dict(type='PairedRandomCrop', gt_patch_size=32, scale=2), dict(type='PairedFlipRotate'),
                     dict(type='PackRestorationInputs')]))
val_dataloader = dict(num_workers=0, dataset=_data)
test_dataloader = val_dataloader
train_cfg = dict(max_iters={max_iters}, val_interval={max_iters})
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=5),
                   dict(type='MultiStepLR', by_epoch=False, begin=0, end=20, milestones=[15], gamma=0.5)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=10))
log_processor = dict(window_size=1)
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
''')
    return path


@pytest.fixture
def tiny_config(tmp_path, sr_folders) -> Callable[[int], Path]:
    """Write the tiny config for ``max_iters`` into tmp_path and return its path."""
    return lambda max_iters: write_tiny_config(tmp_path / 'tiny.py', sr_folders['root'], max_iters)


@pytest.fixture(scope='session')
def tiny_weights(tmp_path_factory) -> Path:
    """The tiny config's generator with random weights, saved as a raw state dict (what --checkpoint takes)."""
    path = tmp_path_factory.mktemp('weights') / 'tiny_x2.pth'
    torch.save(tiny_network().state_dict(), path)
    return path


class TinyRun(NamedTuple):
    """The shared run: its config, work dir, and what it showed its user (console output, Python warnings)."""

    config: Path
    work_dir: Path
    output: str
    warnings: List[str]


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory, sr_folders) -> TinyRun:
    """`ramit mm-train` of the tiny config for 10 iterations, then `--resume`d to 20 (checkpoints iter_10.pth and
    iter_20.pth, a validation at 10 and at 20), run once for every test that only reads its results; tests that
    change its files work on a copy."""
    root = tmp_path_factory.mktemp('tiny_run')
    config = write_tiny_config(root / 'tiny.py', sr_folders['root'], 10)
    work_dir = root / 'work'
    output = io.StringIO()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        # The logger's console handler is made inside the run, so it writes into ``output`` too.
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(output), \
                contextlib.redirect_stderr(output):
            warnings.simplefilter('always')
            assert main(['mm-train', str(config), '--work-dir', str(work_dir)], prog='ramit') == 0
            assert main(['mm-train', str(config), '--work-dir', str(work_dir), '--resume', '--cfg-options',
                         'train_cfg.max_iters=20', 'train_cfg.val_interval=10'], prog='ramit') == 0
    finally:
        os.chdir(cwd)
    return TinyRun(config, work_dir, output.getvalue(), [str(w.message) for w in caught])


@pytest.fixture(scope='session')
def task_data(tmp_path_factory) -> Dict[str, Path]:
    """4 generated images per task in the folder layouts the shipped configs name (their data_prefix).

    'sr': Set5's layout, HR/img0.png (96x96) with LR_bicubic/X{2,3,4}/img0x{s}.png; 'clean': clean images for
    denoising (48x48); 'paired': low/ + high/ (low-light) and input/ + target/ (deraining), darker LQ, same names.
    """
    root = tmp_path_factory.mktemp('tasks')
    rng = np.random.default_rng(1)
    for i in range(4):
        hr = smooth_image(rng, 96)
        write(root / 'sr' / 'HR' / f'img{i}.png', hr)
        for scale in (2, 3, 4):
            lr = cv2.resize(hr, (96 // scale, 96 // scale), interpolation=cv2.INTER_AREA)
            write(root / 'sr' / 'LR_bicubic' / f'X{scale}' / f'img{i}x{scale}.png', lr)
        clean = smooth_image(rng, 48)
        write(root / 'clean' / f'img{i}.png', clean)
        for lq_dir, gt_dir in (('low', 'high'), ('input', 'target')):
            write(root / 'paired' / gt_dir / f'img{i}.png', clean)
            write(root / 'paired' / lq_dir / f'img{i}.png', (clean * 0.4).astype(np.uint8))
    return {name: root / name for name in ('sr', 'clean', 'paired')}
