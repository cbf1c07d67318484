"""`ramit infer`: restore your own images (files, folders, globs) with any RAMiT checkpoint, whole or tiled, on the
PyTorch backend (float32, float16 or bfloat16, optionally compiled) or onnxruntime (the exported graph).

Backend 'auto' takes onnxruntime for float32 on the CPU, where it was measured faster (docs/benchmarks.md), and
PyTorch everywhere else. The inputs were listed and the arguments checked by ``ramit_cli.prechecks``.
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from tqdm import tqdm

from ramit.compilation import compile_network
from ramit.errors import OptionError, RamitError
from ramit.export import ExportMismatchError, onnx_backend
from ramit.fileio import DiskFullError, atomic_output, make_folder
from ramit.hub import resolve_weights
from ramit.images import (ImageFileError, broken_links, encode_png, from_network_channels, read_header, read_image,
                          to_network_channels, upscale_alpha, written_by)
from ramit.inference import WRITER, earlier_outputs, load_network, output_names, restore_tensor, torch_run
from ramit.memory import available_bytes, limit_heap_retention
from ramit.precision import dtype_name
from ramit.tiling import TilePlanner, padded

from .runtime import precision, select_device, set_threads

# Images above this many pixels are checked against the free memory before an untiled pass (smaller ones fit).
CHECKED_PIXELS = 4_000_000


class Runner:
    """The backend as `ramit infer` runs it, and the tile for each image size (--tile N|auto)."""

    def __init__(self, net, run, args: argparse.Namespace) -> None:
        self.net, self.run, self.args = net, run, args
        self.planner: Optional[TilePlanner] = None

    def plan(self) -> TilePlanner:
        """The memory model of the network on its device (two small traced passes), made on first need."""
        if self.planner is None:
            limit = self.args.max_memory * 2 ** 20 if self.args.max_memory else None
            self.planner = TilePlanner(self.net, self.args.batch, limit, self.args.tile_overlap)
        return self.planner

    def tile_for(self, height: int, width: int, label: str) -> Optional[int]:
        """--tile N as given; --tile auto: the largest tile the device's free memory (or --max-memory) allows."""
        if self.args.tile != 'auto':
            return self.args.tile
        tile = self.plan().tile(height, width)
        if tile is not None:
            tqdm.write(f'{label}: {width}x{height} does not fit the memory: tiles of {tile} (--tile auto)',
                       file=sys.stderr)
        return tile

    def too_large(self, height: int, width: int) -> bool:
        """Whether an untiled pass over a height x width image cannot fit the memory at hand (checked for large
        images only: what would otherwise end in an out-of-memory abort or the system's OOM killer)."""
        if self.args.tile is not None or height * width < CHECKED_PIXELS:
            return False
        unit = self.net.pad_unit
        free = available_bytes(next(self.net.parameters()).device)
        return free is not None and self.plan().model.peak(padded(height, unit) * padded(width, unit)) > free


def run(args: argparse.Namespace, prog: str) -> int:
    """Run `ramit infer`; 0 when every image was written or skipped, 1 when any failed (RamitError: bad input)."""
    out_dir = Path(args.output)
    for spec in args.input:
        links = broken_links(spec) if Path(spec).is_dir() else []
        if links:
            print(f'-i {spec}: {len(links)} link(s) to missing files left out, e.g. {links[0].name}', file=sys.stderr)
    set_threads(args.threads)
    device = select_device(args.device)
    dtype = precision(args)
    weights, published = resolve_weights(args.weights)
    net = load_network(weights, args.variant, args.task, args.scale, published, fast=False if args.reference else None)
    files = without_earlier_outputs(args.files, out_dir)
    jobs = list(zip(files, [out_dir / name for name in output_names(files, net)]))
    todo, skipped, refused = decide(jobs, args.overwrite)
    make_folder(out_dir)
    backend = choose_backend(args, device, dtype)
    print(f'{net.describe()} from {weights} on {device} ({dtype_name(dtype)}, {backend}'
          + (f', torch.compile mode {args.compile}' if args.compile else '') + ')')
    failed = list(refused)
    written = 0
    if todo:
        if dtype == torch.float16 and device.type == 'cpu':
            print('note: float16 on the CPU is correct but several times slower than float32; --bf16 is fast on '
                  'CPUs with bfloat16 support', file=sys.stderr)
        if isinstance(args.tile, int) and args.tile < net.pad_unit:
            print(f'note: --tile {args.tile} is smaller than the network\'s padding unit ({net.pad_unit}): every tile '
                  f'is padded to {net.pad_unit}x{net.pad_unit}, about {(net.pad_unit / args.tile) ** 2:.0f}x the work '
                  f'of --tile {net.pad_unit}', file=sys.stderr)
        if args.tile is not None:
            limit_heap_retention()
        net = net.to(device=device, dtype=dtype)
        runner = Runner(net, make_run(net, args, device, dtype, backend, todo), args)
        written, failed_now = restore_all(runner, todo, args)
        failed += failed_now
    print(f'{out_dir}: {written} written, {skipped} skipped (output exists; --overwrite replaces it), '
          f'{len(failed)} failed, of {len(files)} image(s)' + (f'; failed: {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0


def choose_backend(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> str:
    """The backend --backend asks for; 'auto': onnxruntime for float32 eager inference on the CPU when installed."""
    if args.backend != 'auto':
        return args.backend
    fits = device.type == 'cpu' and dtype == torch.float32 and not args.compile and not args.reference
    installed = all(importlib.util.find_spec(name) is not None for name in ('onnx', 'onnxruntime'))
    return 'onnxruntime' if fits and installed else 'torch'


def make_run(net, args: argparse.Namespace, device: torch.device, dtype: torch.dtype, backend: str, todo: list):
    """The pass of the chosen backend (the protocol included)."""
    if backend == 'onnxruntime':
        try:
            session, _ = onnx_backend(net.float(), device.type, half=dtype == torch.float16, threads=args.threads,
                                      log=lambda line: print(line, file=sys.stderr))
        except ImportError as err:
            raise OptionError(f'--backend onnxruntime needs {err.name}: pip install {err.name}') from None
        except ExportMismatchError as err:
            raise OptionError(str(err)) from None
        net.to(dtype=dtype)
        if device.type == 'cuda' and session.providers[0] == 'CPUExecutionProvider':
            print('note: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu): the model runs on the '
                  'CPU; --backend torch runs on the GPU', file=sys.stderr)
        return session.run
    forward = net
    if args.compile:
        sizes = pass_sizes([p for p, _ in todo], args.tile)
        forward = compile_network(net, device, args.compile, static_shapes=len(sizes) <= 1)
    return torch_run(forward)


def without_earlier_outputs(files: List[Path], out_dir: Path) -> List[Path]:
    """``files`` less what `ramit infer` wrote into ``out_dir`` before (-o an input folder), which a rerun would
    restore again."""
    ours = set(earlier_outputs(files, out_dir))
    if not ours:
        return files
    rest = [p for p in files if p not in ours]
    if not rest:
        raise OptionError(f'-o {out_dir}: every input is an earlier output of ramit infer there; nothing to restore')
    print(f'{out_dir}: {len(ours)} earlier output(s) of ramit infer are not inputs; left out', file=sys.stderr)
    return rest


def decide(jobs: list, overwrite: bool):
    """(jobs to run, how many were skipped, names refused) before anything loads or is probed: an existing output is
    skipped, or with --overwrite replaced only if `ramit infer` wrote it (its PNG says so)."""
    todo, skipped, refused = [], 0, []
    for path, target in jobs:
        if not target.exists():
            todo.append((path, target))
        elif not overwrite:
            print(f'{path}: {target} exists, skipped (use --overwrite)', file=sys.stderr)
            skipped += 1
        elif target.is_dir() or written_by(target) != WRITER:
            print(f'{path}: {target} exists and was not written by ramit infer; left as it is (move it, or use '
                  'another -o)', file=sys.stderr)
            refused.append(path.name)
        else:
            todo.append((path, target))
    return todo, skipped, refused


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


def restore_all(runner: Runner, todo: List[tuple], args: argparse.Namespace):
    """Restore (input, output) ``todo`` in batches of equal-sized images; (written, names that failed)."""
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
    return written, failed


def load(path: Path, net) -> tuple:
    """(network input [H, W, C], LoadedImage) for one file; ImageFileError if unreadable. The first frame of an
    animation or multi-page file, saying so; an EXIF orientation is applied, saying so."""
    img = read_image(path)
    try:
        header = read_header(path)
    except ImageFileError:  # OpenCV decoded what Pillow cannot read: a single image, as stored
        header = None
    if header is not None and header.frames > 1:
        tqdm.write(f'{path}: {header.frames} frames (an animation or a multi-page file); only the first is restored',
                   file=sys.stderr)
    if header is not None and header.orientation != 1:
        tqdm.write(f'{path}: EXIF orientation {header.orientation} applied (restored as displayed)', file=sys.stderr)
    return to_network_channels(img.rgb, net.in_chans), img


def process(runner: Runner, items: list, args: argparse.Namespace, bar, failed: List[str]) -> int:
    """Restore equally sized images together and write them; failed ones go to ``failed``; returns how many were
    written."""
    net = runner.net
    param = next(net.parameters())
    start = time.perf_counter()
    arrays = [x for _, _, (x, _) in items]
    h, w = arrays[0].shape[:2]

    def fail_all(reason: str) -> int:
        for path, _, _ in items:
            tqdm.write(f'{path}: {w}x{h} {reason}; skipped', file=sys.stderr)
            failed.append(path.name)
        bar.update(len(items))
        return 0

    if runner.too_large(h, w):
        return fail_all(f'does not fit the free memory of {param.device}; use --tile auto (or --tile N)')
    # A single image is not stacked: a 2048x2048 input would be copied for nothing.
    batch = torch.from_numpy(arrays[0][None] if len(arrays) == 1 else np.stack(arrays)).permute(0, 3, 1, 2)
    tile = runner.tile_for(h, w, items[0][0].name)
    try:
        out = restore_tensor(runner.run, batch.to(device=param.device, dtype=param.dtype), net.upscale, tile,
                             args.tile_overlap, args.batch)
    except (torch.OutOfMemoryError, MemoryError):
        return fail_all(f'does not fit the memory of {param.device}' + (f' in tiles of {tile}' if tile else '')
                        + '; use --tile auto (or a smaller --tile)')
    except RuntimeError as err:
        if 'allocate' not in str(err):  # the CPU allocator's "can't allocate memory"
            raise
        return fail_all(f'does not fit the memory of {param.device}; use --tile auto (or a smaller --tile)')
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
            with atomic_output(target) as tmp:
                Path(tmp).write_bytes(encode_png(rgb, alpha, img.max_value, WRITER))
        except DiskFullError:
            raise  # the disk is full for every later image too: the run ends with one line
        except (OSError, RamitError) as err:  # OutputError: the name, not the disk
            tqdm.write(f'{path}: cannot write {target} ({err})', file=sys.stderr)
            failed.append(path.name)
        else:
            written += 1
            tqdm.write(f'{path.name}: {x.shape[1]}x{x.shape[0]} -> {target.name} ({rgb.shape[1]}x{rgb.shape[0]}) '
                       f'in {seconds:.2f}s', file=sys.stderr)
        bar.update(1)
    return written
