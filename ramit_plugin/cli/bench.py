"""`ramit bench`: inference latency (reference / fast / compiled), training steps (--train) and the NTIRE
Efficient-SR protocol (--protocol ntire), each table headed by the device, driver and torch version.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the rise of the process's peak resident set
(ramit_plugin.memory), which includes everything torch allocates.
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from ..archs.ramit_arch import RAMiT
from ..benchmark import (OptionFileBatches, TrainCase, bench_loader, bench_ntire, bench_size, bench_train, environment,
                         environment_line, loss_curve_deviation)
from ..checkpoint import describe, network_config
from ..compilation import compile_network
from ..complexity import count_macs, count_params
from ..errors import OptionError, RunError
from ..hub import resolve_weights
from ..image_files import list_images
from ..inference import build_network
from ..precision import AMP_DTYPES, dtype_name
from .runtime import precision, select_device, set_threads

NTIRE_FLOPS_SIZE = 256  # NTIRE Efficient-SR reports FLOPs (multiply-adds, fvcore's count) at a 256x256 input


def tiled_peak(net: RAMiT, size: int, tile: int, device: str) -> dict:
    """Peak RSS of a `ramit infer --tile` subprocess on a generated size x size image (random-init weights)."""
    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / 'weights.pth'
        torch.save(net.state_dict(), ckpt)
        rng = np.random.default_rng(0)
        # Smooth content (an upscaled noise field), like a photo rather than white noise.
        small = rng.integers(0, 256, (size // 16, size // 16, net.in_chans), dtype=np.uint8)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(tmp / 'big.png'), img)
        cmd = [sys.executable, '-m', 'ramit_cli', 'infer', '-i', str(tmp / 'big.png'), '-o',
               str(tmp / 'out'), '--weights', str(ckpt), '--task', net.task, '--tile', str(tile),
               '--device', device]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise RunError(f'tiled inference failed: {proc.stderr.strip().splitlines()[-1:]}')
        # ru_maxrss (KiB on Linux) of the largest waited-for child: that subprocess, start to end.
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dict(size=size, scale=net.upscale, tile=tile, seconds=seconds, peak_rss_mib=peak_kib / 1024)


def network_factory(args: argparse.Namespace) -> Callable[[], RAMiT]:
    """Builds the network to time, identically on every call: a checkpoint's (--weights), else a seeded
    random-init --variant/--task/--scale."""
    if args.weights:
        weights, published = resolve_weights(args.weights)
        build_network(weights, task=args.task, published=published)  # bad weights fail here, once
        return lambda: build_network(weights, task=args.task, published=published)
    try:
        RAMiT(args.variant, args.task or 'sr', args.scale)
    except ValueError as err:
        raise OptionError(str(err)) from None

    def build() -> RAMiT:
        torch.manual_seed(0)
        return RAMiT(args.variant, args.task or 'sr', args.scale).eval()
    return build


def check_arguments(args: argparse.Namespace) -> None:
    """OptionError for contradicting or missing arguments, before anything is loaded or timed."""
    if args.protocol and args.train:
        raise OptionError('--protocol ntire and --train are different benchmarks; give one')
    if args.protocol == 'ntire':
        if args.images is None:
            raise OptionError('--protocol ntire needs --images DIR (the LR images to time)')
        if not args.images.is_dir():
            raise OptionError(f'--images {args.images}: no such folder')
        if args.half or args.bf16 or args.compile:
            raise OptionError('--protocol ntire times float32 eager inference, as the challenge does (no --half, '
                              '--bf16, --compile)')
    if args.train and args.data and not args.data.is_file():
        raise OptionError(f'--data {args.data}: no such option file')


def run(args: argparse.Namespace, prog: str) -> int:
    """Run the benchmark the options ask for and print its table (or JSON)."""
    check_arguments(args)
    set_threads(args.threads)
    device = select_device(args.device)
    build = network_factory(args)
    env = environment(device)
    report = dict(environment=env)
    if args.protocol == 'ntire':
        report.update(ntire(args, build(), device, env))
    elif args.train:
        report.update(training(args, build, device, env))
    else:
        report.update(latency(args, build(), device, env))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    return 0


def header(env: Dict[str, str], line: str) -> None:
    """The first line of every table: the machine, then what was measured."""
    print(f'# {environment_line(env)}')
    print(f'# {line}')


def latency(args: argparse.Namespace, net: RAMiT, device: torch.device, env: Dict[str, str]) -> dict:
    """Inference latency per size: reference, fast (default eager) and compiled, interleaved."""
    try:
        sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise OptionError(f'--sizes {args.sizes}: needs positive integers, e.g. 128,256')
    dtype = precision(args)
    batch, warmup = args.batch or 1, 1 if args.warmup is None else args.warmup
    net = net.to(device=device, dtype=dtype)
    paths: Dict[str, Callable] = {}
    if not args.no_reference:
        paths['reference'] = lambda x: net.set_fast(False)(x)
    paths['fast'] = lambda x: net.set_fast(True)(x)
    if args.compile:
        compiled = compile_network(net, device, args.compile)
        paths['compiled'] = lambda x: (net.set_fast(True), compiled(x))[1]
    report = dict(variant=net.variant, task=net.task, scale=net.upscale, device=str(device), dtype=dtype_name(dtype),
                  threads=torch.get_num_threads(), batch=batch, params=count_params(net), results=[])
    if not args.json:
        header(env, f"{describe(network_config(net))}: {report['params']:,} parameters; {dtype_name(dtype)}, batch "
               f"{batch}" + (f', compile mode {args.compile}' if args.compile else ''))
    for size in sizes:
        x = torch.rand(batch, net.in_chans, size, size, device=device, dtype=dtype)
        start = time.perf_counter()
        timings = bench_size(paths, x, device, args.repeats, warmup)
        row = dict(size=size, macs=count_macs(net, size, size, batch), seconds_total=time.perf_counter() - start,
                   **timings)
        for name in ('fast', 'compiled'):
            if name in timings and 'reference' in timings:
                row[f'speedup_{name}'] = timings['reference']['median_s'] / timings[name]['median_s']
        report['results'].append(row)
        if not args.json:
            print_row(row, paths)
    if args.tiled_peak:
        report['tiled'] = tiled_peak(net.float().cpu(), args.tiled_peak, args.tile, args.device)
        if not args.json:
            t = report['tiled']
            print(f"tiled infer {t['size']}x{t['size']} x{t['scale']} --tile {t['tile']}: peak RSS "
                  f"{t['peak_rss_mib']:.0f} MiB, {t['seconds']:.1f} s (subprocess, incl. start-up)")
    return report


def print_row(row: dict, paths: Dict[str, Callable]) -> None:
    """One table block for one input size."""
    print(f"{row['size']}x{row['size']}: {row['macs'] / 1e9:.2f} G multiply-adds")
    for name in paths:
        r = row[name]
        peak = f"{r['peak_mib']:.0f} MiB" if r['peak_mib'] is not None else 'n/a'
        ratio = f"  x{row['speedup_' + name]:.2f} vs reference" if 'speedup_' + name in row else ''
        print(f"  {name:<9} median {r['median_s'] * 1e3:9.1f} ms  min {r['min_s'] * 1e3:9.1f} ms  "
              f"{r['images_per_s']:7.2f} img/s  peak {peak}{ratio}")


def training(args: argparse.Namespace, build: Callable[[], RAMiT], device: torch.device, env: Dict[str, str]) -> dict:
    """Training steps for every path x --amp case (and compiled), plus the data pipeline with --data."""
    amps = [a.strip() for a in args.amp.split(',') if a.strip()]
    unknown = [a for a in amps if a not in ('none', *AMP_DTYPES)]
    if unknown or not amps:
        raise OptionError(f"--amp {args.amp}: give a comma-separated list of none, {', '.join(AMP_DTYPES)}")
    if args.half or args.bf16:
        raise OptionError('--half/--bf16 convert the weights for inference; training steps take --amp bf16/fp16')
    batch, warmup = args.batch or 32, 3 if args.warmup is None else args.warmup
    cases = [TrainCase(path, None if amp == 'none' else amp)
             for path in (('fast',) if args.no_reference else ('reference', 'fast')) for amp in amps]
    if args.compile:
        cases += [TrainCase('fast', None if amp == 'none' else amp, args.compile) for amp in amps]
    net = build()
    if not args.json:
        header(env, f'{describe(network_config(net))} training step: Adam, L1, batch {batch}, LR '
               f'patch {args.patch}, {args.steps} timed steps after {warmup}; synthetic batches')
        print(f"  {'case':<26} {'ms/step':>9} {'samples/s':>10} {'peak MiB':>9} {'x first':>8}  loss curve vs first")
    rows = []
    for case in cases:
        row = bench_train(build, case, batch, args.patch, device, args.steps, warmup)
        row['speedup'] = rows[0]['ms_per_step'] / row['ms_per_step'] if rows else 1.0
        row['loss_deviation'] = loss_curve_deviation(row['losses'], rows[0]['losses']) if rows else 0.0
        rows.append(row)
        if not args.json:
            peak = f"{row['peak_mib']:.0f}" if row['peak_mib'] is not None else 'n/a'
            print(f"  {row['case']:<26} {row['ms_per_step']:9.1f} {row['samples_per_s']:10.1f} {peak:>9} "
                  f"{row['speedup']:8.2f}  {row['loss_deviation'] * 100:.2f} % (smoothed, largest gap)")
    report = dict(batch=batch, patch=args.patch, steps=args.steps, train=rows)
    if args.data:
        report['data'] = data_pipeline(args, build, device, rows)
    return report


def data_pipeline(args: argparse.Namespace, build: Callable[[], RAMiT], device: torch.device,
                  rows: List[dict]) -> dict:
    """The option file's train dataloader alone, and feeding the fast path, against the synthetic-batch step."""
    loader = OptionFileBatches(args.data)
    alone = bench_loader(loader, max(args.steps, 10))
    fed = bench_train(build, TrainCase('fast'), alone['batch'], alone['lq_patch'][0], device, args.steps, 3,
                      batches=loader)
    synthetic = bench_train(build, TrainCase('fast'), alone['batch'], alone['lq_patch'][0], device, args.steps, 3)
    result = dict(option_file=str(args.data), loader_ms_per_batch=alone['ms_per_batch'], batch=alone['batch'],
                  workers=alone['workers'], lq_patch=alone['lq_patch'], step_ms_real_data=fed['ms_per_step'],
                  step_ms_synthetic=synthetic['ms_per_step'])
    if not args.json:
        verdict = ('the loader keeps up' if fed['ms_per_step'] <= 1.1 * synthetic['ms_per_step']
                   else 'the loader is the bottleneck: raise num_worker_per_gpu / use LMDB / faster disks')
        print(f"data ({args.data}, batch {alone['batch']}, LR patch {alone['lq_patch'][0]}, {alone['workers']} "
              f"workers): loader alone {alone['ms_per_batch']:.1f} ms/batch; fast fp32 step with real batches "
              f"{fed['ms_per_step']:.1f} ms vs synthetic {synthetic['ms_per_step']:.1f} ms: {verdict}")
    return result


def ntire(args: argparse.Namespace, net: RAMiT, device: torch.device, env: Dict[str, str]) -> dict:
    """NTIRE Efficient-SR: float32 whole images one at a time, mean ms per image; multiply-adds and parameters."""
    images = list_images(args.images)
    if not images:
        raise OptionError(f'--images {args.images}: no images in this folder')
    result = bench_ntire(net, images, device, warmup=3 if args.warmup is None else args.warmup)
    macs = count_macs(net, NTIRE_FLOPS_SIZE, NTIRE_FLOPS_SIZE)
    result.update(macs_256=macs, params=count_params(net), folder=str(args.images))
    if not args.json:
        header(env, f'{describe(network_config(net))}, NTIRE Efficient-SR protocol (float32, eager, '
               f'{"CUDA events" if device.type == "cuda" else "wall clock"})')
        peak = 'n/a' if result['peak_mib'] is None else f"{result['peak_mib']:.0f}"
        print('| images | mean ms/image | median ms | peak MiB | FLOPs (G, mult-adds at 256x256) | params (M) |')
        print('|---|---|---|---|---|---|')
        print(f"| {result['images']} ({args.images}) | {result['mean_ms']:.2f} | {result['median_ms']:.2f} | {peak} "
              f"| {macs / 1e9:.2f} | {result['params'] / 1e6:.3f} |")
    return result
