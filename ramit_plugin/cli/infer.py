"""`ramit infer`: restore your own images (files, folders, globs) with any RAMiT checkpoint, optionally tiled,
in float32, float16 or bfloat16, optionally through torch.compile."""
import argparse
import sys
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

import numpy as np
import torch

from ..checkpoint import describe, network_config
from ..compilation import compile_network
from ..errors import OptionError
from ..fileio import OutputError, make_folder
from ..hub import resolve_weights
from ..image_files import ImageFileError, read_header
from ..inference import (build_network, earlier_outputs, encode_image, expand_inputs, from_network_channels,
                         output_name, output_names, read_image, restore, to_network_channels, upscale_alpha,
                         write_atomic)
from ..memory import limit_heap_retention
from ..precision import dtype_name
from ..tiling import TilePlanner
from .runtime import precision, select_device, set_threads


class Tally(NamedTuple):
    """What a run did with its inputs: written, skipped (the output existed) and the names that failed."""

    written: int
    skipped: int
    failed: List[str]


class Runner:
    """The network as `ramit infer` runs it: eager or compiled, and the tile for each image size (--tile N|auto)."""

    def __init__(self, net, args: argparse.Namespace, static_shapes: bool):
        self.net = net
        self.args = args
        self.forward = net if not args.compile else compile_network(
            net, next(net.parameters()).device, args.compile, static_shapes=static_shapes)
        limit = args.max_memory * 2 ** 20 if args.max_memory else None
        self.planner = TilePlanner(net, args.batch, limit, args.tile_overlap) if args.tile == 'auto' else None

    def tile_for(self, height: int, width: int, label: str) -> Optional[int]:
        """--tile N as given; --tile auto: the largest tile the device's free memory (or --max-memory) allows."""
        if self.planner is None:
            return self.args.tile
        from tqdm import tqdm

        tile = self.planner.tile(height, width)
        if tile is not None:
            tqdm.write(f'{label}: {width}x{height} does not fit the memory: tiles of {tile} (--tile auto)',
                       file=sys.stderr)
        return tile


def run(args: argparse.Namespace, prog: str) -> int:
    """Run `ramit infer`; 0 when every image was written or skipped, 1 when any failed (RamitError: bad input)."""
    if args.tile not in (None, 'auto') and not args.tile > args.tile_overlap >= 0:
        raise OptionError(f'--tile {args.tile} --tile-overlap {args.tile_overlap}: need --tile > --tile-overlap >= 0')
    if args.max_memory and args.tile != 'auto':
        raise OptionError('--max-memory plans the tiles of --tile auto; add --tile auto')
    files = expand_inputs(args.input)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise OptionError(f'-o {out_dir}: is a file; -o names the folder the outputs go to')
    set_threads(args.threads)
    device = select_device(args.device)
    dtype = precision(args)
    if dtype == torch.float16 and device.type == 'cpu':
        print('note: float16 on the CPU is correct but several times slower than float32; --bf16 is fast on CPUs '
              'with bfloat16 support', file=sys.stderr)
    weights, published = resolve_weights(args.weights)
    net = build_network(weights, args.variant, args.task, args.scale, published,
                        fast=False if args.reference else None)
    files = without_earlier_outputs(files, out_dir, net)
    targets = [out_dir / name for name in output_names(files, net)]
    net = net.to(device=device, dtype=dtype)
    if args.tile is not None:
        limit_heap_retention()
    make_folder(out_dir)
    runner = Runner(net, args, static_shapes=bool(args.compile) and len(pass_sizes(files, args.tile)) <= 1)
    print(f'{describe(network_config(net))} from {weights} on {device} ({dtype_name(dtype)}'
          + (f', torch.compile mode {args.compile}' if args.compile else '') + ')')
    tally = restore_all(runner, list(zip(files, targets)), args)
    print(f'{out_dir}: {tally.written} written, {tally.skipped} skipped (output exists; --overwrite replaces it), '
          f'{len(tally.failed)} failed, of {len(files)} image(s)'
          + (f'; failed: {", ".join(tally.failed)}' if tally.failed else ''))
    return 1 if tally.failed else 0


def without_earlier_outputs(files: List[Path], out_dir: Path, net) -> List[Path]:
    """``files`` less this network's outputs in ``out_dir`` (-o an input folder), which a rerun would restore again."""
    ours = set(earlier_outputs(files, out_dir, net))
    if not ours:
        return files
    rest = [p for p in files if p not in ours]
    if not rest:
        raise OptionError(f'-o {out_dir}: every input is an earlier output of ramit infer there; nothing to restore')
    print(f'{out_dir}: {len(ours)} earlier output(s) of ramit infer (*{output_name("", net)}) are not inputs; left out',
          file=sys.stderr)
    return rest


def pass_sizes(files: List[Path], tile) -> set:
    """The distinct (height, width) of the network's passes over the readable ``files`` (headers only): compiled
    for one size when there is one, else with symbolic sizes, so that no image recompiles."""
    sizes = set()
    for path in files:
        try:
            header = read_header(path)
        except ImageFileError:  # reported when its turn comes
            continue
        if isinstance(tile, int):  # tiles of --tile N, or the whole image where it is smaller
            sizes.add((min(header.height, tile), min(header.width, tile)))
        else:
            sizes.add((header.height, header.width))
    return sizes


def restore_all(runner: Runner, jobs: List[tuple], args: argparse.Namespace) -> Tally:
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
    pending: list = []
    # Closed however the run ends, so that an error (a full disk) gets a line of its own.
    with tqdm(total=len(todo), unit='img', file=sys.stderr) as bar:
        for path, target in todo:
            try:
                pending.append((path, target, load(path, runner.net)))
            except ImageFileError as err:
                tqdm.write(f'{err}; skipped', file=sys.stderr)
                failed.append(path.name)
                bar.update(1)
                continue
            same_size = all(p[2][0].shape == pending[0][2][0].shape for p in pending)
            if not same_size or len(pending) >= args.batch:
                # Flush everything but a newcomer of a different size, which starts the next batch.
                keep = [] if same_size else [pending.pop()]
                written += process(runner, pending, args, bar, failed)
                pending = keep
        if pending:
            written += process(runner, pending, args, bar, failed)
    return Tally(written, len(jobs) - len(todo), failed)


def load(path: Path, net) -> tuple:
    """(network input [H, W, C], LoadedImage) for one file; ImageFileError if unreadable. The first frame of an
    animation or multi-page file, saying so."""
    from tqdm import tqdm

    img = read_image(path)
    try:
        frames = read_header(path).frames
    except ImageFileError:  # OpenCV decoded what Pillow cannot read: a single image
        frames = 1
    if frames > 1:
        tqdm.write(f'{path}: {frames} frames (an animation or a multi-page file); only the first is restored',
                   file=sys.stderr)
    return to_network_channels(img.rgb, net.in_chans), img


def process(runner: Runner, items: list, args: argparse.Namespace, bar, failed: List[str]) -> int:
    """Restore equally sized images together and write them; failed writes go to ``failed``; returns how many
    were written."""
    from tqdm import tqdm

    net = runner.net
    param = next(net.parameters())
    start = time.perf_counter()
    arrays = [x for _, _, (x, _) in items]
    # A single image is not stacked: a 2048x2048 input would be copied for nothing.
    batch = torch.from_numpy(arrays[0][None] if len(arrays) == 1 else np.stack(arrays)).permute(0, 3, 1, 2)
    tile = runner.tile_for(*arrays[0].shape[:2], items[0][0].name)
    try:
        out = restore(runner.forward, batch.to(device=param.device, dtype=param.dtype), tile, args.tile_overlap,
                      args.batch)
    except torch.OutOfMemoryError:
        h, w = arrays[0].shape[:2]
        for path, _, _ in items:
            tqdm.write(f'{path}: {w}x{h} does not fit the memory of {param.device}'
                       + (f' in tiles of {tile}' if tile else '') + '; use --tile auto (or a smaller --tile); skipped',
                       file=sys.stderr)
            failed.append(path.name)
        bar.update(len(items))
        return 0
    seconds = (time.perf_counter() - start) / len(items)
    written = 0
    for (path, target, (x, img)), result in zip(items, out):
        # Never written: NaN and inf would be quantised to black or white. A float32 sum carries any of them and
        # allocates nothing the size of the output.
        if not torch.isfinite(result.sum(dtype=torch.float32)):
            hint = '; float16 overflows where bfloat16 and float32 do not' if param.dtype == torch.float16 else ''
            tqdm.write(f'{path}: the output has NaN or inf values (weights {args.weights}{hint}); not written',
                       file=sys.stderr)
            failed.append(path.name)
            bar.update(1)
            continue
        rgb = from_network_channels(result.permute(1, 2, 0).numpy(), img.gray)
        alpha = upscale_alpha(img.alpha, net.upscale) if img.alpha is not None else None
        try:
            write_atomic(target, encode_image(rgb, alpha, img.max_value))
        except (OSError, ValueError, OutputError) as err:  # a full disk (DiskFullError) ends the run instead
            tqdm.write(f'{path}: cannot write {target} ({err})', file=sys.stderr)
            failed.append(path.name)
        else:
            written += 1
            h, w = x.shape[:2]
            tqdm.write(f'{path.name}: {w}x{h} -> {target.name} ({rgb.shape[1]}x{rgb.shape[0]}) in {seconds:.2f}s',
                       file=sys.stderr)
        bar.update(1)
    return written
