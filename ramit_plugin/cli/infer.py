"""`ramit infer`: restore your own images (files, folders, globs) with any RAMiT checkpoint, optionally tiled."""
import argparse
import sys
import time
from pathlib import Path
from typing import List, NamedTuple

import numpy as np
import torch

from ..checkpoint import describe, network_config
from ..errors import OptionError
from ..hub import resolve_weights
from ..image_files import ImageFileError
from ..inference import (build_network, encode_image, expand_inputs, from_network_channels, limit_heap_retention,
                         output_names, read_image, restore, to_network_channels, upscale_alpha, write_atomic)
from .runtime import set_threads


class Tally(NamedTuple):
    """What a run did with its inputs: written, skipped (the output existed) and the names that failed."""

    written: int
    skipped: int
    failed: List[str]


def select_device(name: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; 'cuda' without a GPU is a one-line error."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise OptionError('--device cuda: no CUDA device is available (use --device cpu or auto)')
    return torch.device(name)


def half_dtype(device: torch.device, half: bool) -> torch.dtype:
    """float16 on CUDA with --half; --half on the CPU is refused (float16 there is slow and inexact)."""
    if not half:
        return torch.float32
    if device.type != 'cuda':
        raise OptionError('--half needs a CUDA device; on the CPU run in float32 (the default)')
    return torch.float16


def run(args: argparse.Namespace, prog: str) -> int:
    """Run `ramit infer`; 0 when every image was written or skipped, 1 when any failed (RamitError: bad input)."""
    if args.tile is not None and not args.tile > args.tile_overlap >= 0:
        raise OptionError(f'--tile {args.tile} --tile-overlap {args.tile_overlap}: need --tile > --tile-overlap >= 0')
    files = expand_inputs(args.input)
    set_threads(args.threads)
    device = select_device(args.device)
    dtype = half_dtype(device, args.half)
    weights, published = resolve_weights(args.weights)
    net = build_network(weights, args.variant, args.task, args.scale, published,
                        fast=False if args.reference else None)
    targets = [Path(args.output) / name for name in output_names(files, net)]
    net = net.to(device=device, dtype=dtype)
    if args.tile is not None:
        limit_heap_retention()
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f'{describe(network_config(net))} from {weights} on {device} ({str(dtype).replace("torch.", "")})')
    tally = restore_all(net, list(zip(files, targets)), args)
    print(f'{out_dir}: {tally.written} written, {tally.skipped} skipped (output exists; --overwrite replaces it), '
          f'{len(tally.failed)} failed, of {len(files)} image(s)'
          + (f'; failed: {", ".join(tally.failed)}' if tally.failed else ''))
    return 1 if tally.failed else 0


def restore_all(net, jobs: List[tuple], args: argparse.Namespace) -> Tally:
    """Restore (input, output) ``jobs`` in batches of equal-sized images; existing outputs are skipped."""
    from tqdm import tqdm

    todo = []
    for path, target in jobs:
        if target.exists() and not args.overwrite:
            print(f'{path}: {target} exists, skipped (use --overwrite)', file=sys.stderr)
        else:
            todo.append((path, target))
    failed: List[str] = []
    written = 0
    bar = tqdm(total=len(todo), unit='img', file=sys.stderr)
    pending: list = []
    for path, target in todo:
        try:
            pending.append((path, target, load(path, net)))
        except ImageFileError as err:
            tqdm.write(f'{err}; skipped', file=sys.stderr)
            failed.append(path.name)
            bar.update(1)
            continue
        same_size = all(p[2][0].shape == pending[0][2][0].shape for p in pending)
        if not same_size or len(pending) >= args.batch:
            # Flush everything but a newcomer of a different size, which starts the next batch.
            keep = [] if same_size else [pending.pop()]
            written += process(net, pending, args, bar, failed)
            pending = keep
    if pending:
        written += process(net, pending, args, bar, failed)
    bar.close()
    return Tally(written, len(jobs) - len(todo), failed)


def load(path: Path, net) -> tuple:
    """(network input [H, W, C], LoadedImage) for one file; ImageFileError if unreadable."""
    img = read_image(path)
    return to_network_channels(img.rgb, net.in_chans), img


def process(net, items: list, args: argparse.Namespace, bar, failed: List[str]) -> int:
    """Restore equally sized images together and write them; failed writes go to ``failed``; returns how many
    were written."""
    from tqdm import tqdm

    param = next(net.parameters())
    start = time.perf_counter()
    arrays = [x for _, _, (x, _) in items]
    # A single image is not stacked: a 2048x2048 input would be copied for nothing.
    batch = torch.from_numpy(arrays[0][None] if len(arrays) == 1 else np.stack(arrays)).permute(0, 3, 1, 2)
    out = restore(net, batch.to(device=param.device, dtype=param.dtype), args.tile, args.tile_overlap,
                  args.batch)
    seconds = (time.perf_counter() - start) / len(items)
    written = 0
    for (path, target, (x, img)), result in zip(items, out):
        rgb = from_network_channels(result.permute(1, 2, 0).numpy(), img.gray)
        alpha = upscale_alpha(img.alpha, net.upscale) if img.alpha is not None else None
        try:
            write_atomic(target, encode_image(rgb, alpha, img.max_value))
        except (OSError, ValueError) as err:
            tqdm.write(f'{path}: cannot write {target} ({err})', file=sys.stderr)
            failed.append(path.name)
        else:
            written += 1
            h, w = x.shape[:2]
            tqdm.write(f'{path.name}: {w}x{h} -> {target.name} ({rgb.shape[1]}x{rgb.shape[0]}) in {seconds:.2f}s',
                       file=sys.stderr)
        bar.update(1)
    return written
