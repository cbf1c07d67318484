"""`ramit infer`: restore your own images (files, folders, globs) with a RAMiT checkpoint, optionally tiled."""
import argparse
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import torch

from ..archs.ramit_arch import TASKS, VARIANTS

DESCRIPTION = """Restore images with a RAMiT checkpoint (a file or a published name such as RAMiT-1_X2).

Gray images into a colour network are replicated to RGB and the result converted back to gray (OpenCV
weights); colour images into a gray network are converted with OpenCV's RGB->gray weights and stay gray.
The alpha channel of RGBA images is resized by bicubic interpolation and re-attached. Outputs are PNG files
<name>_RAMiT_x<s>.png (SR) or <name>_RAMiT_<task>.png, with the bit depth of the input (8 or 16)."""


def select_device(name: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; 'cuda' without a GPU is a one-line error."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available (use --device cpu or auto)')
    return torch.device(name)


def half_dtype(device: torch.device, half: bool) -> torch.dtype:
    """float16 on CUDA with --half; --half on the CPU is refused (float16 there is slow and inexact)."""
    if not half:
        return torch.float32
    if device.type != 'cuda':
        raise ValueError('--half needs a CUDA device; on the CPU run in float32 (the default)')
    return torch.float16


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Options of `ramit infer`."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-i', '--input', nargs='+', required=True, metavar='INPUT',
                   help='image files, folders (their PNG/JPEG/TIFF/BMP/WebP files) or glob patterns')
    p.add_argument('-o', '--output', required=True, metavar='OUT_DIR', help='output folder (created if missing)')
    p.add_argument('--weights', required=True, metavar='W',
                   help='checkpoint file, or a published model name (see `ramit models`), downloaded once')
    p.add_argument('--variant', choices=list(VARIANTS), help='check the checkpoint is this variant')
    p.add_argument('--task', choices=list(TASKS),
                   help='task; needed for 3-channel scale-1 checkpoints not named like a published file')
    p.add_argument('--scale', type=int, choices=(1, 2, 3, 4), help='check the checkpoint has this scale')
    p.add_argument('--tile', type=int, metavar='N', help='process in N x N input tiles (bounded memory)')
    p.add_argument('--tile-overlap', type=int, default=16, metavar='M', help='tile overlap in input pixels (16)')
    p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'), help='device (auto)')
    p.add_argument('--half', action='store_true', help='float16 on CUDA')
    p.add_argument('--batch', type=int, default=1, metavar='B',
                   help='images of equal size per forward pass; with --tile, tiles per forward pass (1)')
    p.add_argument('--overwrite', action='store_true', help='replace existing output files')
    p.add_argument('--reference', action='store_true', help='use the reference (slower) forward path')
    return p


def main(argv: List[str], prog: str = 'ramit infer') -> int:
    """Run `ramit infer`; returns 0 if every image was restored, 1 if any failed, 2 on bad options."""
    args = build_parser(prog).parse_args(argv)
    from ..hub import HubError, resolve_weights
    from ..inference import build_network, expand_inputs, limit_heap_retention

    if args.batch < 1 or (args.tile is not None and not args.tile > args.tile_overlap >= 0):
        print(f'{prog}: error: need --batch >= 1 and --tile > --tile-overlap >= 0', file=sys.stderr)
        return 2
    files, missing = expand_inputs(args.input)
    try:
        device = select_device(args.device)
        dtype = half_dtype(device, args.half)
        weights, published = resolve_weights(args.weights)
        net = build_network(weights, args.variant, args.task, args.scale, published,
                            fast=False if args.reference else None)
    except (ValueError, HubError, FileNotFoundError) as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 2
    net = net.to(device=device, dtype=dtype)
    if args.tile is not None:
        limit_heap_retention()
    for spec in missing:
        print(f'{spec}: no such file, folder or matching images', file=sys.stderr)
    if not files:
        print(f'{prog}: error: no input images', file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f'{net.describe()} from {weights} on {device} ({str(dtype).replace("torch.", "")})')
    failed = run(net, files, out_dir, args)
    done = len(files) - len(failed)
    print(f'{done} of {len(files)} image(s) written to {out_dir}' + (f'; failed: {", ".join(failed)}' if failed
                                                                       else ''))
    return 1 if failed or missing else 0


def run(net, files: List[Path], out_dir: Path, args: argparse.Namespace) -> List[str]:
    """Restore ``files`` into ``out_dir`` in batches of equal-sized images; returns the names that failed."""
    from tqdm import tqdm

    from ..inference import output_name

    failed: List[str] = []
    todo = []
    for path in files:
        target = out_dir / output_name(path.stem, net)
        if target.exists() and not args.overwrite:
            print(f'{path}: {target} exists, skipped (use --overwrite)', file=sys.stderr)
            continue
        todo.append((path, target))
    bar = tqdm(total=len(todo), unit='img', file=sys.stderr)
    pending: list = []
    for path, target in todo:
        try:
            pending.append((path, target, load(path, net)))
        except ValueError as err:
            tqdm.write(f'{err}; skipped', file=sys.stderr)
            failed.append(path.name)
            bar.update(1)
            continue
        same_size = all(p[2][0].shape == pending[0][2][0].shape for p in pending)
        if not same_size or len(pending) >= args.batch:
            # Flush everything but a newcomer of a different size, which starts the next batch.
            keep = [] if same_size else [pending.pop()]
            failed += process(net, pending, args, bar)
            pending = keep
    if pending:
        failed += process(net, pending, args, bar)
    bar.close()
    return failed


def load(path: Path, net) -> tuple:
    """(network input [H, W, C], LoadedImage) for one file; ValueError if unreadable."""
    from ..inference import read_image, to_network_channels

    img = read_image(path)
    return to_network_channels(img.rgb, net.in_chans), img


def process(net, items: list, args: argparse.Namespace, bar) -> List[str]:
    """Restore equally sized images together and write them; returns the names that failed to write."""
    from tqdm import tqdm

    from ..inference import encode_image, from_network_channels, restore, upscale_alpha, write_atomic

    param = next(net.parameters())
    start = time.perf_counter()
    arrays = [x for _, _, (x, _) in items]
    # A single image is not stacked: a 2048x2048 input would be copied for nothing.
    batch = torch.from_numpy(arrays[0][None] if len(arrays) == 1 else np.stack(arrays)).permute(0, 3, 1, 2)
    out = restore(net, batch.to(device=param.device, dtype=param.dtype), args.tile, args.tile_overlap,
                  args.batch)
    seconds = (time.perf_counter() - start) / len(items)
    failed = []
    for (path, target, (x, img)), result in zip(items, out):
        rgb = from_network_channels(result.permute(1, 2, 0).numpy(), img.gray)
        alpha = upscale_alpha(img.alpha, net.upscale) if img.alpha is not None else None
        try:
            write_atomic(target, encode_image(rgb, alpha, img.max_value))
        except (OSError, ValueError) as err:
            tqdm.write(f'{path}: cannot write {target} ({err})', file=sys.stderr)
            failed.append(path.name)
        else:
            h, w = x.shape[:2]
            tqdm.write(f'{path.name}: {w}x{h} -> {target.name} ({rgb.shape[1]}x{rgb.shape[0]}) in {seconds:.2f}s',
                       file=sys.stderr)
        bar.update(1)
    return failed
