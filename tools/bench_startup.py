#!/usr/bin/env python
"""Start-up costs, measured in fresh processes (median of --runs): the interpreter with and without the start-up hook
(`ramit hook install`'s .pth), `import torch`, `import ramit` (lazy), `import ramit_plugin`, `import spandrel` with
the hook (which registers RAMiT), and `ramit infer` from its start to the line it prints for its first image, on
each backend. Prints a Markdown table for the README.

Nothing is installed into this environment: the hook's .pth goes into a temporary folder that the timed interpreter
adds as a site folder (``site.addsitedir``, which runs .pth files as start-up does); the baseline adds an empty one.

    python tools/bench_startup.py [--runs 7] [--weights W.pth] [--threads N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import ramit_hook

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO.parent / 'shared' / 'ramit_reference' / 'weights' / 'RAMiT-slimSR_X2.pth'


def python_seconds(code: str, env: dict) -> float:
    """Wall time of ``python -c code`` in a fresh process (RuntimeError if it fails)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f'python -c {code!r} failed: {proc.stderr.strip()[-500:]}')
    return seconds


def first_image_seconds(argv: List[str], env: dict) -> Tuple[float, float]:
    """(seconds from the start of ``argv`` to its first per-image line 'NAME: WxH -> OUT (...) in X s', the X it
    prints: the restoration itself)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = None
    for line in proc.stderr:  # universal newlines: tqdm's carriage returns end lines too
        if ' -> ' in line and line.rstrip().endswith('s') and ' in ' in line:
            found = time.perf_counter() - start, float(line.rstrip()[:-1].rsplit(' in ', 1)[1])
            break
    proc.stderr.read()
    if proc.wait() or found is None:
        raise RuntimeError(f'{" ".join(argv)} failed (status {proc.returncode})')
    return found


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``measure``."""
    return statistics.median(measure() for _ in range(runs))


def weights_file(given: Optional[str], tmp: Path) -> Path:
    """--weights, else the published RAMiT-slimSR x2 from ../shared, else a random one of the same size."""
    if given:
        return Path(given)
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    import torch

    from ramit import RAMiT

    torch.manual_seed(0)
    path = tmp / 'RAMiT-slimSR_random.pth'
    torch.save(RAMiT('RAMiT-slimSR', 'sr', 2).state_dict(), path)
    return path


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=7, help='runs per measurement (their median is printed)')
    parser.add_argument('--weights', help='checkpoint for the `ramit infer` rows (default: RAMiT-slimSR x2)')
    parser.add_argument('--threads', type=int, default=None, help='--threads of `ramit infer` (default: all)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        hook_dir, empty_dir = tmp / 'hook', tmp / 'empty'
        hook_dir.mkdir()
        empty_dir.mkdir()
        ramit_hook.install(str(hook_dir))
        env = dict(os.environ, RAMIT_CACHE=str(tmp / 'cache'))
        if args.threads:
            env['OMP_NUM_THREADS'] = str(args.threads)

        def site(folder: Path, then: str = 'pass') -> str:
            return f'import site; site.addsitedir({str(folder)!r}); {then}'

        rows = [
            ('python -c pass', 'pass'),
            ('python, an empty site folder added (baseline of the next row)', site(empty_dir)),
            ('python, the hook .pth run (import ramit_hook; activate())', site(hook_dir)),
            ('import torch', 'import torch'),
            ('import ramit (lazy: hparams only when used)', 'import ramit'),
            ('import ramit_plugin (torch, basicsr, mmengine registries)', 'import ramit_plugin'),
            ('import spandrel', 'import spandrel'),
            ('import spandrel with the hook (registers RAMiT)', site(hook_dir, 'import spandrel')),
        ]
        results = []
        for label, code in rows:
            python_seconds(code, env)  # untimed: file-system caches
            results.append((label, median_of(args.runs, lambda: python_seconds(code, env))))

        import cv2
        import numpy as np

        image = tmp / 'photo.png'
        small = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
        cv2.imwrite(str(image), cv2.resize(small, (64, 64), interpolation=cv2.INTER_CUBIC).clip(0, 255)
                    .astype(np.uint8))
        weights = weights_file(args.weights, tmp)
        ramit = str(Path(sys.executable).parent / 'ramit')
        for backend in ('torch', 'onnxruntime'):
            out = tmp / f'out_{backend}'
            argv = [ramit, 'infer', '-i', str(image), '-o', str(out), '--weights', str(weights), '--backend',
                    backend, '--overwrite'] + (['--threads', str(args.threads)] if args.threads else [])
            first_image_seconds(argv, env)  # untimed: the onnxruntime backend exports once into the cache
            timings = [first_image_seconds(argv, env) for _ in range(args.runs)]
            results.append((f'ramit infer --backend {backend}: start to the first image written (64x64, '
                            f'{weights.name})', statistics.median(t for t, _ in timings)))
            results.append(('  of which the restoration itself (its per-image line)',
                            statistics.median(r for _, r in timings)))

    import platform

    import torch

    print(f'# {platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}, '
          f'{os.cpu_count()} CPU(s), median of {args.runs} runs'
          + (f', {args.threads} thread(s)' if args.threads else ''))
    print('| what | seconds |')
    print('|---|---|')
    for label, seconds in results:
        print(f'| {label} | {seconds:.3f} |')


if __name__ == '__main__':
    main()
