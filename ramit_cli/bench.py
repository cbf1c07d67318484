"""`ramit bench`: inference latency per forward path and backend (PyTorch reference / fast / compiled, onnxruntime),
training steps (--train, optionally fed by an option file's dataloader) and the NTIRE Efficient-SR protocol
(--protocol ntire), each table headed by the device, driver and torch version.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the rise of the process's peak resident set
(ramit.memory), which includes everything torch (or onnxruntime) allocates.
"""
import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

import cv2
import numpy as np
import torch

from ramit.benchmark import (TrainCase, bench_ntire, bench_size, bench_train, environment,
                             environment_line, loss_curve_deviation)
from ramit.compilation import compile_network
from ramit.complexity import count_macs, count_params
from ramit.errors import OptionError, RunError
from ramit.export import onnx_backend
from ramit.hub import resolve_weights
from ramit.images import list_images
from ramit.inference import load_network
from ramit.network import RAMiT
from ramit.precision import AMP_DTYPES, dtype_name
from .runtime import precision, select_device, set_threads

NTIRE_FLOPS_SIZE = 256  # NTIRE Efficient-SR reports FLOPs (multiply-adds, fvcore's count) at a 256x256 input


def tiled_peak(net: RAMiT, size: int, tile: int, device: str) -> dict:
    """Peak RSS of a `ramit infer --tile` subprocess on a generated size x size image (random-init weights)."""
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
        load_network(weights, task=args.task, published=published)  # bad weights fail here, once
        return lambda: load_network(weights, task=args.task, published=published)
    try:
        RAMiT(args.variant, args.task or 'sr', args.scale)
    except ValueError as err:
        raise OptionError(str(err)) from None

    def build() -> RAMiT:
        torch.manual_seed(0)
        return RAMiT(args.variant, args.task or 'sr', args.scale).eval()
    return build


def run(args: argparse.Namespace, prog: str) -> int:
    """Run the benchmark the options ask for and print its table (or JSON); the arguments were checked by
    ``ramit_cli.prechecks``."""
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


def progress(line: str) -> None:
    """A line on stderr while a benchmark runs (the tables go to stdout)."""
    print(f'bench: {line}', file=sys.stderr, flush=True)


def latency(args: argparse.Namespace, net: RAMiT, device: torch.device, env: Dict[str, str]) -> dict:
    """Inference latency per size: the PyTorch reference, fast and compiled paths and onnxruntime, interleaved."""
    dtype = precision(args)
    batch, warmup = args.batch or 1, 1 if args.warmup is None else args.warmup
    net = net.to(device=device, dtype=dtype)
    cases: Dict[str, Callable] = {}
    if not args.no_reference:
        cases['reference'] = lambda x: net.set_fast(False)(x)
    cases['fast'] = lambda x: net.set_fast(True)(x)
    if args.compile:
        compiled = compile_network(net, device, args.compile)
        cases['compiled'] = lambda x: (net.set_fast(True), compiled(x))[1]
    if 'onnxruntime' in args.backends and dtype != torch.bfloat16 and importlib.util.find_spec('onnxruntime'):
        progress('exporting the network for onnxruntime (once per network; cached)')
        session, _ = onnx_backend(net.float().set_fast(None), device.type, half=dtype == torch.float16,
                                  threads=torch.get_num_threads(), log=progress)
        net.to(dtype=dtype)
        cases['onnxruntime'] = session.run
    report = dict(variant=net.variant, task=net.task, scale=net.upscale, device=str(device), dtype=dtype_name(dtype),
                  threads=torch.get_num_threads(), batch=batch, params=count_params(net), results=[])
    if not args.json:
        header(env, f"{net.describe()}: {report['params']:,} parameters; {dtype_name(dtype)}, batch {batch}"
               + (f', compile mode {args.compile}' if args.compile else ''))
    for size in args.size_list:
        x = torch.rand(batch, net.in_chans, size, size, device=device, dtype=dtype)
        start = time.perf_counter()
        progress(f'{size}x{size}: {warmup} warm-up call(s), then {args.repeats} timed rounds of '
                 f"{', '.join(cases)}")
        # onnxruntime's arena keeps what the timed calls allocated, and torch's CUDA counters never see it: its
        # peak would read as ~0 MiB, so it is reported as unknown.
        timings = bench_size(cases, x, device, args.repeats, warmup, progress, no_peak={'onnxruntime'})
        row = dict(size=size, macs=count_macs(net, size, size, batch), seconds_total=time.perf_counter() - start,
                   **timings)
        baseline = 'reference' if 'reference' in timings else 'fast'
        for name in timings:
            if name != baseline:
                row[f'speedup_{name}'] = timings[baseline]['median_s'] / timings[name]['median_s']
        row['baseline'] = baseline
        report['results'].append(row)
        if not args.json:
            print_row(row, cases)
    if args.tiled_peak:
        report['tiled'] = tiled_peak(net.float().cpu(), args.tiled_peak, args.tile, args.device)
        if not args.json:
            t = report['tiled']
            print(f"tiled infer {t['size']}x{t['size']} x{t['scale']} --tile {t['tile']}: peak RSS "
                  f"{t['peak_rss_mib']:.0f} MiB, {t['seconds']:.1f} s (subprocess, incl. start-up)")
    return report


def print_row(row: dict, cases: Dict[str, Callable]) -> None:
    """One table block for one input size."""
    print(f"{row['size']}x{row['size']}: {row['macs'] / 1e9:.2f} G multiply-adds")
    for name in cases:
        r = row[name]
        peak = f"{r['peak_mib']:.0f} MiB" if r['peak_mib'] is not None else 'unknown'
        ratio = f"  x{row['speedup_' + name]:.2f} vs {row['baseline']}" if 'speedup_' + name in row else ''
        print(f"  {name:<11} median {r['median_s'] * 1e3:9.1f} ms  min {r['min_s'] * 1e3:9.1f} ms  "
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
        header(env, f'{net.describe()} training step: Adam, L1, batch {batch}, LR '
               f'patch {args.patch}, {args.steps} timed steps after {warmup}; synthetic batches')
        print(f"  {'case':<26} {'ms/step':>9} {'samples/s':>10} {'peak MiB':>9} {'x first':>8}  loss curve vs first")
    rows = []
    for case in cases:
        progress(f'training steps: {case.label} ({warmup} warm-up + {args.steps} timed)')
        row = bench_train(build, case, batch, args.patch, device, args.steps, warmup)
        row['speedup'] = rows[0]['ms_per_step'] / row['ms_per_step'] if rows else 1.0
        row['loss_deviation'] = loss_curve_deviation(row['losses'], rows[0]['losses']) if rows else 0.0
        rows.append(row)
        if not args.json:
            peak = f"{row['peak_mib']:.0f}" if row['peak_mib'] is not None else 'unknown'
            print(f"  {row['case']:<26} {row['ms_per_step']:9.1f} {row['samples_per_s']:10.1f} {peak:>9} "
                  f"{row['speedup']:8.2f}  {row['loss_deviation'] * 100:.2f} % (smoothed, largest gap)")
    report = dict(batch=batch, patch=args.patch, steps=args.steps, train=rows)
    if args.data:
        from .bench_data import data_pipeline  # basicsr loads only to time an option file's own dataloader

        report['data'] = data_pipeline(args, build, device, rows)
    return report


def ntire(args: argparse.Namespace, net: RAMiT, device: torch.device, env: Dict[str, str]) -> dict:
    """NTIRE Efficient-SR: float32 whole images one at a time, mean ms per image; multiply-adds and parameters."""
    images = list_images(args.images)
    if not images:
        raise OptionError(f'--images {args.images}: no images in this folder')
    result = bench_ntire(net, images, device, warmup=3 if args.warmup is None else args.warmup)
    macs = count_macs(net, NTIRE_FLOPS_SIZE, NTIRE_FLOPS_SIZE)
    result.update(macs_256=macs, params=count_params(net), folder=str(args.images))
    if not args.json:
        header(env, f'{net.describe()}, NTIRE Efficient-SR protocol (float32, eager, '
               f'{"CUDA events" if device.type == "cuda" else "wall clock"})')
        peak = 'unknown' if result['peak_mib'] is None else f"{result['peak_mib']:.0f}"
        print('| images | mean ms/image | median ms | peak MiB | FLOPs (G, mult-adds at 256x256) | params (M) |')
        print('|---|---|---|---|---|---|')
        print(f"| {result['images']} ({args.images}) | {result['mean_ms']:.2f} | {result['median_ms']:.2f} | {peak} "
              f"| {macs / 1e9:.2f} | {result['params'] / 1e6:.3f} |")
    return result
