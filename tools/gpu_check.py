"""The GPU check, in one run of about 8 minutes on a lent H100/H200: every CUDA test, then RAMiT-1 x2 timings
against the reference path, and one summary table.

Here (project venv active, from the project root):  bash ../shared/gpu/prepare.sh
On the GPU machine (device tool, carry [".gpu"]):    bash .gpu/env.sh python3 tools/gpu_check.py --out $OUT
Logic check on a CPU (tiny network and sizes):         python tools/gpu_check.py --dry-run

Compilation takes minutes, so the compiled cases are compiled first by background processes that fill one
Inductor cache while the CUDA tests run; the timed runs then load their kernels from it. Timings are medians of
interleaved repeats in one process; TF32 stays at PyTorch's defaults (what users get).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (name, input height, width): the sizes; 352x640 is a 1280x720 x2 output minus padding.
SIZES = [('256x256', 256, 256), ('352x640', 352, 640)]
TRAIN = dict(batch=32, patch=64, steps=30, warmup=5)
COMPILED_INFERENCE = ['fp32', 'fp16', 'bf16']
# Must-show bars (issue: RAMiT fast on NVIDIA GPUs), as speed-ups over the reference path in float32.
BARS = {'eager 352x640': 1.2, 'compiled 352x640': 4.0, 'compiled half 352x640': 6.0, 'train compiled bf16': 3.0}


def build_net(dry: bool):
    """RAMiT-1 x2 (random weights: speed does not depend on them); a tiny one for --dry-run."""
    import torch

    from ramit_plugin import RAMiT

    torch.manual_seed(0)
    if dry:
        return RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
    return RAMiT('RAMiT-1', 'sr', 2)


def warm(kind: str, dry: bool) -> None:
    """Background process: compile one case so that the timed run finds its kernels in the shared cache."""
    import torch

    from ramit_plugin.benchmark import TrainCase, bench_train
    from ramit_plugin.compilation import compile_network
    from ramit_plugin.precision import PRECISIONS

    device = torch.device('cpu' if dry else 'cuda')
    if kind == 'train':
        train = dry_train() if dry else TRAIN
        bench_train(lambda: build_net(dry), TrainCase('fast', 'bf16', 'auto'), train['batch'], train['patch'], device,
                    steps=1, warmup=2)
        return
    dtype = PRECISIONS[kind]
    net = build_net(dry).to(device=device, dtype=dtype).eval()
    compiled = compile_network(net, device, 'auto')
    _, h, w = dry_sizes()[-1] if dry else SIZES[-1]
    with torch.no_grad():
        for _ in range(2):
            compiled(torch.rand(1, 3, h, w, device=device, dtype=dtype))


def dry_sizes():
    """Input sizes for --dry-run."""
    return [('24x24', 24, 24), ('24x40', 24, 40)]


def dry_train() -> dict:
    """Training benchmark settings for --dry-run."""
    return dict(batch=2, patch=16, steps=3, warmup=1)


def run_tests(out: Path, timeout: float) -> Dict[str, str]:
    """`pytest -m cuda tests` with a JUnit report: test id -> passed / failed / skipped / error."""
    report = out / 'cuda_tests.xml'
    cmd = [sys.executable, '-m', 'pytest', '-q', '-m', 'cuda', 'tests', f'--junitxml={report}', '-p', 'no:randomly']
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        (out / 'cuda_tests.log').write_text(proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as err:
        (out / 'cuda_tests.log').write_text(f'timed out after {timeout:.0f} s\n{err.stdout or ""}')
    results = {}
    if report.is_file():
        for case in ElementTree.parse(report).getroot().iter('testcase'):
            outcome = next((child.tag for child in case if child.tag in ('failure', 'error', 'skipped')), 'passed')
            results[f"{case.get('classname')}::{case.get('name')}"] = {'failure': 'failed'}.get(outcome, outcome)
    return results


def time_inference(dry: bool, repeats: int, compiled: bool) -> List[dict]:
    """Batch-1 latency, interleaved repeats, speed-up over the reference path in float32 (timed in the same run).

    ``compiled`` False: eager paths in every precision at every size; True: the compiled cases at the largest
    size (after the background compilation, so their kernels come from the cache).
    """
    import torch

    from ramit_plugin.benchmark import synchronize
    from ramit_plugin.compilation import compile_network
    from ramit_plugin.precision import PRECISIONS

    device = torch.device('cpu' if dry else 'cuda')
    sizes = dry_sizes() if dry else SIZES
    rows = []
    for label, h, w in (sizes[-1:] if compiled else sizes):
        nets = {name: build_net(dry).to(device=device, dtype=dtype).eval() for name, dtype in PRECISIONS.items()}
        # Its own network: the path is a module attribute, and compiled graphs guard on it.
        cases: Dict[str, Callable] = {'reference fp32': build_net(dry).to(device).eval().set_fast(False)}
        for name in (COMPILED_INFERENCE if compiled else PRECISIONS):
            if compiled:
                cases[f'compiled {name}'] = compile_network(nets[name].set_fast(None), device, 'auto')
            else:
                cases[f'eager {name}'] = nets[name].set_fast(None)
        inputs = {name: torch.rand(1, 3, h, w, device=device, dtype=dtype) for name, dtype in PRECISIONS.items()}
        times: Dict[str, List[float]] = {case: [] for case in cases}
        with torch.no_grad():
            for case, fn in cases.items():  # warm-up (CUDA graphs record here)
                for _ in range(3):
                    fn(inputs[case.split()[-1]])
            for _ in range(repeats):
                for case, fn in cases.items():
                    synchronize(device)
                    start = time.perf_counter()
                    fn(inputs[case.split()[-1]])
                    synchronize(device)
                    times[case].append(time.perf_counter() - start)
        ref = statistics.median(times['reference fp32'])
        for case, values in times.items():
            if compiled and case == 'reference fp32':
                continue
            median = statistics.median(values)
            rows.append(dict(size=label, case=case, ms=median * 1e3, speedup=ref / median))
    return rows


def time_training(dry: bool, compiled: bool) -> List[dict]:
    """Training steps (Adam, L1) for reference/fast in float32 and bf16, and compiled bf16; loss curves compared."""
    import torch

    from ramit_plugin.benchmark import TrainCase, bench_train, loss_curve_deviation

    device = torch.device('cpu' if dry else 'cuda')
    train = dry_train() if dry else TRAIN
    cases = [TrainCase('reference'), TrainCase('fast'), TrainCase('reference', 'bf16'), TrainCase('fast', 'bf16')]
    if compiled:
        cases.append(TrainCase('fast', 'bf16', 'auto'))
    results = [bench_train(lambda: build_net(dry), case, train['batch'], train['patch'], device, train['steps'],
                           train['warmup']) for case in cases]
    ref = results[0]
    for r in results:
        r['speedup'] = ref['ms_per_step'] / r['ms_per_step']
        r['loss_deviation'] = loss_curve_deviation(r['losses'], ref['losses'])
    return results


def time_data(dry: bool, compiled: bool) -> dict:
    """The shipped x2 option file's train dataloader (LMDB, its 8 workers, batch 32, LR patch 64) on LMDBs made
    from Set5 (what travels here; 192-pixel HR sub-images, as Set5's woman is 228 wide), alone and feeding the
    fastest step, vs synthetic batches."""
    import torch
    import yaml

    from ramit_plugin.benchmark import OptionFileBatches, TrainCase, bench_loader, bench_train
    from ramit_plugin.cli.data_prep import extract_subimages, make_lmdb, make_lr
    from ramit_plugin.resources import option_file

    shared = Path(os.environ.get('RAMIT_SHARED', ROOT.parent / 'shared'))
    work = Path(tempfile.mkdtemp(prefix='gpu_check_data_'))
    extract_subimages(shared / 'datasets' / 'Set5' / 'HR', work / 'HR_sub', 192, 96, n_thread=8)
    make_lr(work / 'HR_sub', work / 'LR_sub', 2, n_thread=8)
    make_lmdb(work / 'HR_sub', work / 'HR_sub.lmdb', n_thread=8)
    make_lmdb(work / 'LR_sub', work / 'LR_sub.lmdb', n_thread=8)
    opt = yaml.safe_load(option_file('train_RAMiT-1_SRx2.yml').read_text())
    opt['datasets']['train'].update(dataroot_gt=str(work / 'HR_sub.lmdb'), dataroot_lq=str(work / 'LR_sub.lmdb'))
    if dry:
        opt['datasets']['train'].update(num_worker_per_gpu=1, batch_size_per_gpu=2, gt_size=32)
    (work / 'opt.yml').write_text(yaml.safe_dump(opt))
    device = torch.device('cpu' if dry else 'cuda')
    loader = OptionFileBatches(work / 'opt.yml')
    alone = bench_loader(loader, 30 if not dry else 2)
    case = TrainCase('fast', 'bf16', 'auto' if compiled else None)
    train = dry_train() if dry else TRAIN
    fed = bench_train(lambda: build_net(dry), case, alone['batch'], alone['lq_patch'][0], device, train['steps'],
                      train['warmup'], batches=loader)
    synthetic = bench_train(lambda: build_net(dry), case, alone['batch'], alone['lq_patch'][0], device,
                            train['steps'], train['warmup'])
    return dict(case=case.label, workers=alone['workers'], loader_ms=alone['ms_per_batch'],
                step_ms_real=fed['ms_per_step'], step_ms_synthetic=synthetic['ms_per_step'])


def summary(env_line: str, tests: Dict[str, str], inference: List[dict], training: List[dict],
            notes: List[str], data: Optional[dict] = None) -> str:
    """The one table: tests by outcome, timings, and every must-show bar with its measured value."""
    lines = [f'# GPU check: {env_line}', '']
    counts = {k: sum(1 for v in tests.values() if v == k) for k in ('passed', 'failed', 'error', 'skipped')}
    lines.append('CUDA tests: ' + ', '.join(f'{v} {k}' for k, v in counts.items()))
    lines += [f'  {v.upper()}: {k}' for k, v in tests.items() if v in ('failed', 'error')]
    lines += ['', '| input | case | ms | x reference fp32 |', '|---|---|---|---|']
    lines += [f"| {r['size']} | {r['case']} | {r['ms']:.2f} | {r['speedup']:.2f} |" for r in inference]
    lines += ['', '| training step (batch, patch) | ms | samples/s | peak MiB | x reference fp32 | loss curve dev. |',
              '|---|---|---|---|---|---|']
    lines += [f"| {r['case']} | {r['ms_per_step']:.1f} | {r['samples_per_s']:.0f} | {r['peak_mib'] or 0:.0f} | "
              f"{r['speedup']:.2f} | {r['loss_deviation'] * 100:.2f} % |" for r in training]
    if data:
        lines += ['', f"data pipeline (shipped x2 option file, {data['workers']} workers, LMDB from Set5): loader "
                      f"alone {data['loader_ms']:.1f} ms/batch; {data['case']} step {data['step_ms_real']:.1f} ms with "
                      f"real batches vs {data['step_ms_synthetic']:.1f} ms synthetic"]
    measured = {}
    big = inference[-1]['size'] if inference else ''  # the largest size: the bars' 352x640 on a GPU
    by_case = {(r['size'], r['case']): r['speedup'] for r in inference}
    if (big, 'eager fp32') in by_case:
        measured['eager 352x640'] = by_case[(big, 'eager fp32')]
    if (big, 'compiled fp32') in by_case:
        measured['compiled 352x640'] = by_case[(big, 'compiled fp32')]
    halves = [by_case.get((big, f'compiled {p}')) for p in ('fp16', 'bf16')]
    if any(halves):
        measured['compiled half 352x640'] = max(v for v in halves if v)
    compiled_train = [r for r in training if r['case'].startswith('compiled')]
    if compiled_train:
        measured['train compiled bf16'] = compiled_train[0]['speedup']
    lines += ['', '| bar | needed | measured | |', '|---|---|---|---|']
    for bar, needed in BARS.items():
        value = measured.get(bar)
        verdict = 'not run' if value is None else 'met' if value >= needed else 'NOT met'
        lines.append(f"| {bar} | >= {needed:.1f}x | {'-' if value is None else f'{value:.2f}x'} | {verdict} |")
    lines += [''] + notes
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Run everything within --budget seconds and print (and save) the summary table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path(os.environ.get('OUT', 'gpu_check_out')))
    parser.add_argument('--budget', type=float, default=470.0, help='seconds for the whole run (470)')
    parser.add_argument('--repeats', type=int, default=20, help='timed repeats per inference case (20)')
    parser.add_argument('--dry-run', action='store_true', help='CPU, tiny network and sizes: checks the logic only')
    parser.add_argument('--warm', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warm:
        warm(args.warm, args.dry_run)
        return 0
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', tempfile.mkdtemp(prefix='gpu_check_inductor_'))
    import torch

    from ramit_plugin.benchmark import environment, environment_line

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print('gpu_check: no CUDA device (use --dry-run to check the logic on a CPU)', file=sys.stderr)
        return 2
    env_line = environment_line(environment(torch.device('cpu' if dry else 'cuda')))
    print(f'gpu_check: {env_line}', flush=True)
    notes = []
    warmers = [subprocess.Popen([sys.executable, __file__, '--warm', kind] + (['--dry-run'] if dry else []),
                                stdout=subprocess.DEVNULL, stderr=open(args.out / f'warm_{kind}.log', 'w'))
               for kind in COMPILED_INFERENCE + ['train']]
    tests = {} if dry else run_tests(args.out, timeout=max(60.0, 0.45 * args.budget))
    print(f'gpu_check: CUDA tests done at {time.perf_counter() - start:.0f} s', flush=True)
    # Eager GPU timings are bound by kernel launches on the host: time them only once the compilers are done.
    left = args.budget - (time.perf_counter() - start)
    compiled = True
    for proc in warmers:
        try:
            proc.wait(timeout=max(1.0, left - 240))
        except subprocess.TimeoutExpired:
            proc.kill()
            compiled = False
    print(f'gpu_check: background compilation over at {time.perf_counter() - start:.0f} s', flush=True)
    repeats = args.repeats if not dry else 2
    inference = time_inference(dry, repeats, compiled=False)
    print(f'gpu_check: eager timings done at {time.perf_counter() - start:.0f} s', flush=True)
    if compiled:
        inference += time_inference(dry, repeats, compiled=True)
    else:
        notes.append('compiled cases skipped: the background compilation did not finish within the budget')
    training = time_training(dry, compiled)
    data = None
    if args.budget - (time.perf_counter() - start) > 60:
        data = time_data(dry, compiled)
    else:
        notes.append('data pipeline not timed: no time left in the budget')
    notes.append(f'total {time.perf_counter() - start:.0f} s; inductor cache {os.environ["TORCHINDUCTOR_CACHE_DIR"]}')
    table = summary(env_line, tests, inference, training, notes, data)
    print(table)
    (args.out / 'summary.md').write_text(table + '\n')
    training_rows = [{k: v for k, v in r.items() if k != 'losses'} for r in training]
    (args.out / 'results.json').write_text(json.dumps(dict(environment=env_line, tests=tests, inference=inference,
                                                           training=training_rows, data=data), indent=2))
    return 0 if all(v in ('passed', 'skipped') for v in tests.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
