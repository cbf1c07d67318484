"""`ramit demo`: build a small x2 SR dataset from the photos scikit-image ships, train a small RAMiT through
`basicsr train`, and compare its PSNR with bicubic upscaling on held-out photos. Nothing is downloaded.

The dataset goes through the same commands users run on DIV2K: make-lr (MATLAB bicubic), extract-subimages and
make-lmdb. Everything is written under --workdir: data/, the resolved option file, experiments/ and tb_logger/.
"""
import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch
import yaml
from skimage import data as skimage_data

import ramit_plugin  # noqa: F401,I001  (first: the torchvision alias basicsr needs)
from basicsr.metrics import calculate_psnr
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.matlab_functions import imresize

from ramit.checkpoint import load_weights
from ramit.network import RAMiT
from ramit.protocol import protocol_forward
from ramit_plugin.dataprep import DataPrepError, extract_subimages, make_lmdb, make_lr, staged_output
from ramit_plugin.resources import option_file

from . import prechecks
from .basicsr_commands import run_train
from .parsers import train_parser

OPTION_FILE = 'demo_RAMiT_SRx2.yml'
SCALE = 2
# Textured photos bundled with scikit-image (no download). Left out: 'cat' (chelsea again) and the mostly dark
# or flat ones (hubble_deep_field, retina, moon, cell), whose many black patches would slow learning down.
TRAIN_PHOTOS = ('astronaut', 'rocket', 'immunohistochemistry', 'coffee', 'camera', 'coins', 'brick', 'grass',
                'gravel', 'clock', 'page', 'text')
VAL_PHOTOS = ('chelsea', 'motorcycle')
# HR sub-images of 160 (step 80) keep decoding cheap in training; LR crops are the same divided by the scale.
SUB_CROP, SUB_STEP = 160, 80


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as an 8-bit OpenCV image (BGR, or 2-D for gray photos)."""
    if name == 'motorcycle':
        img = skimage_data.stereo_motorcycle()[0]  # the left view of the stereo pair
    else:
        img = getattr(skimage_data, name)()
    if img.dtype != np.uint8:
        raise ValueError(f'{name}: expected an 8-bit photo, got {img.dtype}')
    return img if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def save_photos(names: Tuple[str, ...], folder: Path) -> List[str]:
    """Write the photos that this scikit-image can load without a download as PNGs; returns their names."""
    folder.mkdir(parents=True)
    saved = []
    for name in names:
        try:
            img = load_photo(name)
        except (AttributeError, ImportError, OSError, ValueError) as exc:
            # Older or newer scikit-image releases move some photos to an optional download.
            print(f'demo: skipping photo {name!r}: not available offline ({str(exc).splitlines()[0][:100]})')
            continue
        cv2.imwrite(str(folder / f'{name}.png'), img)
        saved.append(name)
    return saved


def build_dataset(data_dir: Path, n_thread: int = 1) -> Dict[str, Path]:
    """Create data_dir (staged: it appears only complete) with the LMDB training set and the validation folders."""
    with staged_output(data_dir, 'demo') as stage:
        photos = stage / 'photos'
        train_names = save_photos(TRAIN_PHOTOS, photos / 'train')
        val_names = save_photos(VAL_PHOTOS, photos / 'val')
        if len(train_names) < 4 or not val_names:
            raise DataPrepError('too few scikit-image photos are available offline to build the demo dataset')
        print(f"demo: training photos: {', '.join(train_names)}; held out for validation: {', '.join(val_names)}")
        for split in ('train', 'val'):
            make_lr(photos / split, stage / f'{split}_LR_bicubic_X{SCALE}', SCALE, n_thread=n_thread,
                    hr_output=stage / f'{split}_HR')
        for kind, crop, step in (('HR', SUB_CROP, SUB_STEP),
                                 (f'LR_bicubic_X{SCALE}', SUB_CROP // SCALE, SUB_STEP // SCALE)):
            extract_subimages(stage / f'train_{kind}', stage / f'train_{kind}_sub', crop, step, n_thread=n_thread)
            make_lmdb(stage / f'train_{kind}_sub', stage / f'train_{kind}_sub.lmdb', n_thread=n_thread)
    return dataset_paths(data_dir)


def dataset_paths(data_dir: Path) -> Dict[str, Path]:
    """Where build_dataset puts each part (the option file names the same paths relative to the workdir)."""
    return {'train_gt': data_dir / 'train_HR_sub.lmdb', 'train_lq': data_dir / f'train_LR_bicubic_X{SCALE}_sub.lmdb',
            'val_gt': data_dir / 'val_HR', 'val_lq': data_dir / f'val_LR_bicubic_X{SCALE}'}


def resolve_options(iters: Optional[int]) -> dict:
    """The shipped demo options, with the iteration-dependent keys scaled to `iters` when it is given."""
    with open(option_file(OPTION_FILE), encoding='utf-8') as f:
        opt = yaml.safe_load(f)
    if iters is not None:
        if iters < 1:
            raise DataPrepError(f'--iters {iters}: must be at least 1')
        opt['train']['total_iter'] = iters
        opt['train']['scheduler']['periods'] = [iters]
        opt['val']['val_freq'] = max(iters // 2, 1)
        opt['logger']['save_checkpoint_freq'] = iters
        opt['logger']['print_freq'] = min(opt['logger']['print_freq'], max(iters // 10, 1))
    return opt


def write_options(opt: dict, path: Path, iters: Optional[int]) -> None:
    """Write the resolved option file, headed by where it came from."""
    header = (f'# Written by `ramit demo` from {option_file(OPTION_FILE)} (see it for comments)'
              + (f', with --iters {iters}' if iters is not None else '') + '.\n'
              '# Paths are relative to this folder; re-run with: basicsr train -opt ' + path.name + '\n')
    path.write_text(header + yaml.safe_dump(opt, sort_keys=False), encoding='utf-8')


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """chdir into `path` for the block (BasicSR writes experiments/ and tb_logger/ into the current folder)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def psnr_table(opt: dict, weights: Path, paths: Dict[str, Path]) -> List[Tuple[str, float, float]]:
    """(photo, bicubic PSNR-Y, RAMiT PSNR-Y) on the validation photos, with BasicSR's metric and crop border."""
    net = RAMiT(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    load_weights(net, weights)
    net.eval()
    metric = dict(opt['val']['metrics']['psnr'])
    metric.pop('type')
    rows = []
    for gt_path in sorted(paths['val_gt'].glob('*.png')):
        gt = cv2.imread(str(gt_path), cv2.IMREAD_COLOR)
        lq = cv2.imread(str(paths['val_lq'] / f'{gt_path.stem}x{SCALE}.png'), cv2.IMREAD_COLOR)
        lq_tensor = img2tensor(lq.astype(np.float32) / 255.0, bgr2rgb=True, float32=True)
        bicubic = tensor2img(imresize(lq_tensor, SCALE), rgb2bgr=True, min_max=(0, 1))
        with torch.no_grad():
            restored = tensor2img(protocol_forward(net, lq_tensor[None])[0], rgb2bgr=True, min_max=(0, 1))
        rows.append((gt_path.stem, calculate_psnr(bicubic, gt, **metric), calculate_psnr(restored, gt, **metric)))
    return rows


def print_table(rows: List[Tuple[str, float, float]], opt: dict) -> None:
    """Print the PSNR comparison and whether RAMiT beats bicubic."""
    metric = opt['val']['metrics']['psnr']
    channel = 'Y' if metric.get('test_y_channel') else 'RGB'
    print(f"\nPSNR-{channel} (dB, border {metric.get('crop_border', 0)}) on held-out photos, x{SCALE}, "
          f"after {opt['train']['total_iter']} iterations:")
    print(f"  {'photo':<12} {'bicubic':>8} {'RAMiT':>8}")
    for name, bicubic, ramit in rows:
        print(f'  {name:<12} {bicubic:8.2f} {ramit:8.2f}')
    bicubic, ramit = (float(np.mean([row[i] for row in rows])) for i in (1, 2))
    print(f"  {'mean':<12} {bicubic:8.2f} {ramit:8.2f}")
    verdict = 'beats' if ramit > bicubic else 'does not beat'
    print(f'RAMiT {verdict} bicubic by {ramit - bicubic:+.2f} dB'
          + ('' if ramit > bicubic else ' (train longer: --iters)'))


def run(args: argparse.Namespace, prog: str) -> int:
    """`ramit demo`: data from bundled photos, a short training run through `basicsr train`, PSNR vs bicubic."""
    start = time.time()
    opt = resolve_options(args.iters)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    paths = dataset_paths(workdir / 'data')
    if (workdir / 'data').exists():
        print(f'demo: using the dataset already in {workdir / "data"} (delete it to rebuild)')
    else:
        build_dataset(workdir / 'data', n_thread=max(1, min(4, os.cpu_count() or 1)))
    write_options(opt, workdir / OPTION_FILE, args.iters)
    print(f'demo: training with {workdir / OPTION_FILE} in {workdir} ({args.threads} torch thread(s))', flush=True)
    train_prog = f'{prog} (basicsr train)'
    with working_directory(workdir):
        train_args = train_parser(train_prog).parse_args(['-opt', OPTION_FILE, '--threads', str(args.threads)])
        prechecks.basicsr_train(train_args)
        run_train(train_args, train_prog)
    weights = workdir / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth'
    print_table(psnr_table(opt, weights, paths), opt)
    print(f'demo: done in {time.time() - start:.0f} s; experiment in {weights.parent.parent}')
    return 0
