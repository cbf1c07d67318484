"""Benchmarks people can compare: inference latency (forward paths and backends), training steps (reference / fast /
compiled, float32 / AMP, synthetic or real batches), and the NTIRE Efficient-SR protocol, each reported with the
machine it ran on (device, driver, torch). Cases are timed interleaved in one process (torch.utils.benchmark's
Timer, which synchronises CUDA), so other load affects them alike.
"""
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from .compilation import CompiledTraining
from .images import read_image, to_network_channels
from .memory import measure
from .precision import AMP_DTYPES


def environment(device: torch.device) -> Dict[str, str]:
    """Device name, driver and library versions, for the header of every table."""
    env = {'torch': torch.__version__, 'threads': str(torch.get_num_threads())}
    if device.type == 'cuda':
        env['device'] = torch.cuda.get_device_name(device)
        env['cuda'] = str(torch.version.cuda)
        env['cudnn'] = str(torch.backends.cudnn.version())
        try:
            out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader',
                                  f'--id={device.index or 0}'], capture_output=True, text=True, timeout=20)
            env['driver'] = out.stdout.strip() or 'unknown'
        except (OSError, subprocess.SubprocessError):
            env['driver'] = 'unknown'
    else:
        env['device'] = _cpu_name()
        env['driver'] = 'n/a (CPU)'
    return env


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else platform's processor string."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def environment_line(env: Dict[str, str]) -> str:
    """One line such as 'NVIDIA H100 80GB HBM3, driver 550.54, torch 2.14.1 (CUDA 12.8, cuDNN 91000)'."""
    plural = 's' if env.get('threads') != '1' else ''
    libs = f" (CUDA {env['cuda']}, cuDNN {env['cudnn']})" if 'cuda' in env else f", {env['threads']} thread{plural}"
    return f"{env['device']}, driver {env['driver']}, torch {env['torch']}{libs}"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ inference latency
def bench_size(cases: Dict[str, Callable], x: torch.Tensor, device: torch.device, repeats: int,
               warmup: int, progress: Callable[[str], None] = lambda line: None,
               no_peak: Collection[str] = ()) -> Dict[str, dict]:
    """Time every case of ``cases`` on ``x``, interleaved: ``warmup`` untimed calls each, then ``repeats`` rounds
    of one timed call each; then one call each for its peak memory. Median/min latency, images/s, peak MiB (None
    for the cases in ``no_peak``, whose memory these counters do not see)."""
    times: Dict[str, list] = {name: [] for name in cases}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in cases.values():
                fn(x)
        for round_ in range(repeats):
            for name, fn in cases.items():
                times[name].append(Timer('fn(x)', globals={'fn': fn, 'x': x}).timeit(1).times[0])
            progress(f'{tuple(x.shape[-2:])}: round {round_ + 1} of {repeats} done')
        peaks = {name: None if name in no_peak else measure(lambda: fn(x), device)['peak_mib']
                 for name, fn in cases.items()}
    return {name: dict(median_s=statistics.median(t), min_s=min(t), images_per_s=x.shape[0] / statistics.median(t),
                       peak_mib=peaks[name], repeats=len(t)) for name, t in times.items()}


# ------------------------------------------------------------------------------------------------- training steps
@dataclass(frozen=True)
class TrainCase:
    """One way of running a training step: forward path, autocast dtype (None: float32), compile mode."""

    path: str  # 'reference' or 'fast'
    amp: Optional[str] = None
    compile_mode: Optional[str] = None

    @property
    def label(self) -> str:
        """e.g. 'reference fp32', 'fast bf16', 'compiled(auto) bf16'."""
        name = f'compiled({self.compile_mode})' if self.compile_mode else self.path
        return f"{name} {self.amp or 'fp32'}"


def training_batch(step: int, batch: int, patch: int, scale: int, chans: int, device: torch.device,
                   seed: int = 0) -> Dict[str, torch.Tensor]:
    """A reproducible synthetic SR batch: smooth random HR patches and their bicubic (antialiased) LR."""
    gen = torch.Generator().manual_seed(seed * 100_003 + step)
    hr_size = patch * scale
    coarse = torch.rand(batch, chans, max(hr_size // 8, 2), max(hr_size // 8, 2), generator=gen)
    gt = F.interpolate(coarse, size=(hr_size, hr_size), mode='bicubic', align_corners=False).clamp(0, 1)
    lq = gt if scale == 1 else F.interpolate(gt, scale_factor=1 / scale, mode='bicubic', antialias=True)
    return dict(lq=lq.clamp(0, 1).to(device), gt=gt.to(device))


def bench_train(build_net, case: TrainCase, batch: int, patch: int, device: torch.device, steps: int,
                warmup: int, seed: int = 0, batches: Optional[Iterator[dict]] = None) -> dict:
    """Time ``steps`` Adam/L1 training steps after ``warmup`` untimed ones; loss of every step, peak memory.

    ``build_net()`` must return the same initial network every time (seeded by the caller), so every case starts
    from identical weights and sees identical synthetic batches: their loss curves are directly comparable.
    ``batches``: real batches (dicts with 'lq' and 'gt', e.g. a BasicSR dataloader) instead; waiting for them is
    part of each step's time, as in training.
    """
    net = build_net().to(device).train().set_fast(case.path == 'fast')
    forward = CompiledTraining(net, device, case.compile_mode, distributed=False) if case.compile_mode else net
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    scaler = torch.amp.GradScaler(device.type) if case.amp == 'fp16' else None
    losses: List[float] = []
    times: List[float] = []

    def step(index: int) -> None:
        synchronize(device)
        start = time.perf_counter()
        if batches is None:
            data = training_batch(index, batch, patch, net.upscale, net.in_chans, device, seed)
            start = time.perf_counter()  # synthetic data is not part of the step
        else:
            data = {k: v.to(device, non_blocking=True) for k, v in next(batches).items() if k in ('lq', 'gt')}
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=AMP_DTYPES.get(case.amp), enabled=case.amp is not None):
            out = forward(data['lq'])
        loss = (out.float() - data['gt']).abs().mean()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        losses.append(loss.item())  # synchronises, as a training loop's logging does
        times.append(time.perf_counter() - start)

    first = time.perf_counter()
    for i in range(warmup):
        step(i)
    warmup_s = time.perf_counter() - first
    peak = measure(lambda: [step(warmup + i) for i in range(steps)], device)['peak_mib']
    median = statistics.median(times[warmup:])
    return dict(case=case.label, ms_per_step=median * 1e3, min_ms=min(times[warmup:]) * 1e3,
                samples_per_s=batch / median, peak_mib=peak, warmup_s=warmup_s, losses=losses)


def loss_curve_deviation(losses: Sequence[float], reference: Sequence[float], window: int = 5) -> float:
    """Largest relative gap between two loss curves after smoothing each with a ``window``-step moving mean."""
    def smooth(values: Sequence[float]) -> List[float]:
        return [statistics.fmean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]

    a, b = smooth(losses), smooth(reference)
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------- NTIRE protocol
def bench_ntire(net: torch.nn.Module, images: Sequence[Path], device: torch.device, warmup: int = 3) -> dict:
    """The NTIRE Efficient-SR way: float32, whole images one by one, CUDA-event (or wall) time per image.

    ``warmup`` passes on the first image precede the timed pass over every image; peak memory is the largest
    allocated during the timed passes (CUDA) or resident-set rise (CPU).
    """
    inputs = []
    for path in images:
        img = read_image(path)
        rgb = to_network_channels(img.rgb, net.in_chans)
        inputs.append(torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous())
    net = net.to(device).float().eval()
    times: List[float] = []
    peaks: List[Optional[float]] = []
    with torch.no_grad():
        first = inputs[0].to(device)
        for _ in range(warmup):
            net(first)
        for x in inputs:
            x = x.to(device)
            if device.type == 'cuda':
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                result = measure(lambda: (start.record(), net(x), end.record()), device)
                times.append(start.elapsed_time(end))
            else:
                result = measure(lambda: net(x), device)
                times.append(result['seconds'] * 1e3)
            peaks.append(result['peak_mib'])
    return dict(images=len(times), mean_ms=statistics.fmean(times), median_ms=statistics.median(times),
                peak_mib=None if None in peaks else max(peaks), sizes=sorted({tuple(x.shape[-2:]) for x in inputs}))
