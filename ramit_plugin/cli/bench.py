"""`ramit bench`: latency, throughput, peak memory, parameters and multiply-adds, reference vs fast path.

Paths are timed interleaved in one process (reference, fast[, compiled] per repeat), so load from other
processes affects them alike. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` for the forward
pass; on the CPU the rise of the process's peak resident set size (Linux VmHWM, reset through
/proc/self/clear_refs before each pass) over the resident size before it, i.e. all memory the pass
touched, torch's allocator included (tracemalloc would miss it).
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ..archs.ramit_arch import RAMiT
from ..checkpoint import describe, network_config
from ..complexity import count_macs, count_params
from ..errors import OptionError, RunError
from ..hub import resolve_weights
from ..inference import build_network
from .runtime import set_threads


def _status_kib(field: str) -> Optional[int]:
    """A 'VmXXX:' value (KiB) from /proc/self/status, or None off Linux."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where impossible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object], device: torch.device) -> Dict[str, Optional[float]]:
    """Seconds and peak memory (MiB above the level before) of one call of ``fn``."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return dict(seconds=seconds, peak_mib=(torch.cuda.max_memory_allocated() - before) / 2 ** 20)
    resettable = _reset_peak_rss()
    before = _status_kib('VmRSS')
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = _status_kib('VmHWM')
    peak_mib = (peak - before) / 1024 if resettable and peak is not None and before is not None else None
    return dict(seconds=seconds, peak_mib=peak_mib)


def summarise(samples: List[Dict[str, Optional[float]]], batch: int) -> dict:
    """Median/min latency, images per second and the largest peak memory of the timed repeats."""
    times = [s['seconds'] for s in samples]
    peaks = [s['peak_mib'] for s in samples if s['peak_mib'] is not None]
    median = statistics.median(times)
    return dict(median_s=median, min_s=min(times), images_per_s=batch / median,
                peak_mib=max(peaks) if peaks else None, repeats=len(times))


def bench_size(nets: Dict[str, Callable], x: torch.Tensor, device: torch.device, repeats: int,
               warmup: int) -> Dict[str, dict]:
    """Time every entry of ``nets`` on ``x``, interleaved: warm-up calls first, then ``repeats`` rounds."""
    samples: Dict[str, list] = {name: [] for name in nets}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in nets.values():
                fn(x)
        for _ in range(repeats):
            for name, fn in nets.items():
                samples[name].append(measure(lambda: fn(x), device))
    return {name: summarise(s, x.shape[0]) for name, s in samples.items()}


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


def bench_network(args: argparse.Namespace) -> RAMiT:
    """The network to time: a checkpoint's (--weights), else a random-init --variant/--task/--scale."""
    if args.weights:
        weights, published = resolve_weights(args.weights)
        return build_network(weights, task=args.task, published=published)
    try:
        return RAMiT(args.variant, args.task or 'sr', args.scale).eval()
    except ValueError as err:
        raise OptionError(str(err)) from None


def run(args: argparse.Namespace, prog: str) -> int:
    """Run the benchmark and print a table (or JSON)."""
    try:
        sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise OptionError(f'--sizes {args.sizes}: needs positive integers, e.g. 128,256')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise OptionError('--device cuda: no CUDA device is available')
    if args.half and args.device != 'cuda':
        raise OptionError('--half needs --device cuda')
    set_threads(args.threads)
    net = bench_network(args)
    device = torch.device(args.device)
    dtype = torch.float16 if args.half else torch.float32
    net = net.to(device=device, dtype=dtype)
    paths: Dict[str, Callable] = {}
    if not args.no_reference:
        paths['reference'] = lambda x: net.set_fast(False)(x)
    paths['fast'] = lambda x: net.set_fast(True)(x)
    if args.compile:
        compiled = torch.compile(net)
        paths['compiled'] = lambda x: (net.set_fast(True), compiled(x))[1]

    report = dict(variant=net.variant, task=net.task, scale=net.upscale, device=str(device),
                  dtype=str(dtype).replace('torch.', ''), threads=torch.get_num_threads(), batch=args.batch,
                  params=count_params(net), results=[])
    for size in sizes:
        x = torch.rand(args.batch, net.in_chans, size, size, device=device, dtype=dtype)
        start = time.perf_counter()
        timings = bench_size(paths, x, device, args.repeats, args.warmup)
        row = dict(size=size, macs=count_macs(net, size, size, args.batch),
                   seconds_total=time.perf_counter() - start, **timings)
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
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{describe(network_config(net))}: {report['params']:,} parameters; {report['device']} "
              f"{report['dtype']}, {report['threads']} threads, batch {args.batch}")
    return 0


def print_row(row: dict, paths: Dict[str, Callable]) -> None:
    """One table block for one input size."""
    print(f"{row['size']}x{row['size']}: {row['macs'] / 1e9:.2f} G multiply-adds")
    for name in paths:
        r = row[name]
        peak = f"{r['peak_mib']:.0f} MiB" if r['peak_mib'] is not None else 'n/a'
        ratio = f"  x{row['speedup_' + name]:.2f} vs reference" if 'speedup_' + name in row else ''
        print(f"  {name:<9} median {r['median_s'] * 1e3:9.1f} ms  min {r['min_s'] * 1e3:9.1f} ms  "
              f"{r['images_per_s']:7.2f} img/s  peak {peak}{ratio}")

