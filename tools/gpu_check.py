"""GPU check of ramit-plugin: every CUDA test, then RAMiT-1 x2 timings (reference path, fast path, compiled,
training steps, the data pipeline) against the must-show speed-up bars, in one run of about 8 minutes.

On any Linux machine with an NVIDIA GPU and a checkout of this repository, from the repository root:

    pip install '.[test]'                     # the plugin, its dependencies, and pytest for the CUDA tests
    python tools/gpu_check.py --out DIR       # --budget SECONDS (default 480) bounds the whole run

Logic check on a CPU (tiny network, tiny sizes, one fast CPU test file standing in for the CUDA tests):

    python tools/gpu_check.py --dry-run --out DIR --stages env,cuda_tests,eager,train,data

(the compiled stages compile on the CPU, minutes each: give a full --dry-run a --budget of an hour).

Stages, in order, each a child process in its own process group with its own time limit:
  env             device, driver and library versions
  cuda_tests      `pytest -m cuda tests`; beside it, the warm_* stages compile the compiled cases in the
                  background into one Inductor cache (TORCHINDUCTOR_CACHE_DIR), which the compiled stages load
  eager           batch-1 latency at 256x256 and 352x640 (x2: a 704x1280 output, a 720p frame less padding):
                  the reference path fp32 (the ONE fp32 reference of every inference speed-up) and the fast
                  path fp32/fp16/bf16, interleaved
  compiled        the fast path compiled (mode auto) fp32/fp16/bf16 at 352x640
  train           training steps (Adam, L1): reference/fast in fp32 and bf16; loss curves compared
  train_compiled  the compiled bf16 training step
  data            the shipped x2 option file's train dataloader (LMDBs made from Set5 HR, found under
                  $RAMIT_SHARED/datasets or ../shared/datasets), alone and feeding a training step
The budget is divided among the stages up front (shares below); a stage may use what earlier ones left unused.
A stage that overruns its limit is killed with everything it started; a stage whose optional module (basicsr,
lmdb, pytest) is missing is skipped with the reason.

Results: DIR/results.jsonl gets one JSON object per figure as soon as it is measured (written by the stage
itself); DIR/summary.md (also printed at the end) is rebuilt from it as each stage starts and ends, so a run
stopped half-way still leaves a summary of what finished; DIR/stages.log holds every stage's output.
Exit status: 0 when every stage ran (or was skipped for a missing module) and every CUDA test passed or was
skipped; 1 when a stage failed or timed out or a CUDA test failed; 2 without a CUDA device; 128 + N when
stopped by signal N (SIGTERM, SIGINT: the running stages are killed and the summary written). The bars are
reported in the summary, not in the exit status.
"""
import argparse
import ctypes
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # annotations only: the orchestrating process never imports torch
    import pytest
    import torch

    from ramit.benchmark import TrainCase
    from ramit.network import RAMiT

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's code, also where an older ramit-plugin is installed

RESULTS, SUMMARY, LOG = 'results.jsonl', 'summary.md', 'stages.log'
RESULTS_ENV = 'GPU_CHECK_RESULTS'  # where the pytest plugin part of this file writes the CUDA tests' outcomes
CACHE_ENV = 'TORCHINDUCTOR_CACHE_DIR'
NO_CUDA = 2  # exit status of the env stage (and of the check) on a machine without a CUDA device

# (label, height, width) of the inputs; the bars are judged at the last (largest) one.
SIZES = {False: [('256x256', 256, 256), ('352x640', 352, 640)], True: [('24x24', 24, 24), ('24x40', 24, 40)]}
TRAIN = {False: dict(batch=32, patch=64, steps=30, warmup=5), True: dict(batch=2, patch=16, steps=3, warmup=1)}
TINY = dict(dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
PRECISIONS = ('fp32', 'fp16', 'bf16')
WARMERS = ('warm_fp32', 'warm_fp16', 'warm_bf16', 'warm_train')
# (share of the budget, stages run side by side in that time); the warmers compile while the tests run, and
# end before the eager timings, which are bound by kernel launches on the host that compilers would slow.
SLOTS: List[Tuple[float, Tuple[str, ...]]] = [
    (0.06, ('env',)),  # a cold torch + CUDA start can take 20 s
    (0.37, ('cuda_tests',) + WARMERS),
    (0.09, ('eager',)),
    (0.14, ('compiled',)),
    (0.10, ('train',)),
    (0.14, ('train_compiled',)),
    (0.10, ('data',)),
]
STAGE_NAMES = [name for _, names in SLOTS for name in names]
# Optional modules a stage needs (skipped without them); torch and the plugin's core are needed by all.
NEEDS = {'cuda_tests': ('pytest',), 'data': ('yaml', 'lmdb', 'basicsr')}
RESERVE_S = 2.0  # kept back from --budget for the final summary
NCCL_TEST = 'test_nccl_one_rank_and_gloo_two_ranks_on_one_gpu'


@dataclass(frozen=True)
class Bar:
    """A must-show speed-up: a measurement of one stage, case and precision over the reference fp32."""

    label: str
    stage: str
    case: str
    precision: str
    needed: float


# Each judged on its own size and precision, never the better of two measurements.
BARS = [Bar('eager', 'eager', 'fast', 'fp32', 1.2), Bar('compiled', 'compiled', 'compiled', 'fp32', 4.0),
        Bar('compiled', 'compiled', 'compiled', 'fp16', 6.0), Bar('compiled', 'compiled', 'compiled', 'bf16', 6.0),
        Bar('train compiled', 'train_compiled', 'compiled', 'bf16', 3.0)]
# Where each stage's fp32 reference comes from: measured once, read back by the later stages.
REFERENCE_STAGE = {'eager': 'eager', 'compiled': 'eager', 'train': 'train', 'train_compiled': 'train'}


# ------------------------------------------------------------------------------------------------ results file
def append_record(path: Path, record: dict) -> None:
    """Append one JSON line to ``path`` and push it to the disk, so a kill a moment later keeps it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # One write() of the whole line: stages appending side by side never interleave within a line.
        os.write(fd, (json.dumps(record) + '\n').encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path) -> List[dict]:
    """Every record of a results file; a line cut short by a kill is left out."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def train_size(batch: int, patch: int) -> str:
    """The size label of a training case."""
    return f'batch {batch}, patch {patch}'


def find(records: Iterable[dict], stage: str, case: str, size: str, precision: str) -> Optional[dict]:
    """The (last) figure of exactly this stage, case, size and precision, or None."""
    found = [r for r in records if (r.get('stage'), r.get('case'), r.get('size'), r.get('precision')) ==
             (stage, case, size, precision) and 'ms' in r]
    return found[-1] if found else None


def reference(records: Iterable[dict], stage: str, size: str) -> Optional[dict]:
    """The reference-path fp32 figure that ``stage``'s speed-ups at ``size`` are taken over."""
    return find(records, REFERENCE_STAGE[stage], 'reference', size, 'fp32')


# --------------------------------------------------------------------------------------- the pytest plugin part
def _test_outcome(report: 'pytest.TestReport') -> Optional[str]:
    """passed / failed / skipped / error of one test phase's report; None for phases that decide nothing."""
    if report.when == 'call':
        return report.outcome
    if report.failed:
        return 'error'  # a fixture's setup or teardown broke, not the test's own assertions
    return 'skipped' if report.skipped else None


def pytest_runtest_logreport(report: 'pytest.TestReport') -> None:
    """pytest hook (with `-p gpu_check`): each test's outcome is a record as soon as the test has run."""
    outcome = _test_outcome(report)
    if outcome and os.environ.get(RESULTS_ENV):
        append_record(Path(os.environ[RESULTS_ENV]), dict(stage='cuda_tests', case=report.nodeid, outcome=outcome,
                                                          when=report.when, seconds=round(report.duration, 2)))


def pytest_collectreport(report: 'pytest.CollectReport') -> None:
    """pytest hook: a test file that cannot be collected is an error record."""
    if report.failed and os.environ.get(RESULTS_ENV):
        append_record(Path(os.environ[RESULTS_ENV]), dict(stage='cuda_tests', case=report.nodeid or '(collection)',
                                                          outcome='error', when='collect'))


# --------------------------------------------------------------------------------------------------- the stages
class Skipped(Exception):
    """A stage that cannot run here (a missing module, missing data): a skip with the reason, not a failure."""


@dataclass
class Run:
    """What a stage process knows: its name, the output folder and the run's settings."""

    stage: str
    out: Path
    dry: bool
    repeats: int
    sizes: List[Tuple[str, int, int]]
    precisions: List[str]
    tests: List[str]

    @property
    def train(self) -> dict:
        """Training benchmark settings."""
        return TRAIN[self.dry]

    @property
    def warmup(self) -> int:
        """Untimed calls per inference case (CUDA graphs are recorded in them)."""
        return 1 if self.dry else 3

    def record(self, case: str, **fields) -> None:
        """Append one record of this stage to the results file."""
        append_record(self.out / RESULTS, dict(stage=self.stage, case=case, **fields))

    def records(self) -> List[dict]:
        """What earlier stages wrote."""
        return read_records(self.out / RESULTS)

    def device(self) -> 'torch.device':
        """The CPU for --dry-run, else the CUDA device (SystemExit NO_CUDA without one)."""
        import torch

        if self.dry:
            return torch.device('cpu')
        if not torch.cuda.is_available():
            print('no CUDA device (torch.cuda.is_available() is False); --dry-run checks the logic on a CPU',
                  file=sys.stderr)
            raise SystemExit(NO_CUDA)
        return torch.device('cuda')


def build_net(dry: bool) -> 'RAMiT':
    """RAMiT-1 x2 with seeded random weights (speed does not depend on them); a tiny one for --dry-run."""
    import torch

    from ramit.network import RAMiT

    torch.manual_seed(0)
    return RAMiT('RAMiT-1', 'sr', 2, **(TINY if dry else {}))


def fixed_input(fn: Callable, x: 'torch.Tensor') -> Callable:
    """``fn`` on its own input whatever it is called with: bench_size times every case on one tensor, but each
    precision needs an input of its dtype, made once and outside the timed calls."""
    return lambda _: fn(x)


def stage_env(run: Run) -> None:
    """Device, driver and library versions, and the settings that affect the timings."""
    import torch

    device = run.device()  # first: without CUDA the check stops here, before the slower imports
    from ramit.benchmark import environment, environment_line

    env = environment(device)
    tf32 = (f'TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}'
            if device.type == 'cuda' else 'n/a')
    run.record('environment', line=environment_line(env), tf32=tf32, **env)
    print(environment_line(env))


def stage_cuda_tests(run: Run) -> None:
    """pytest on the CUDA tests (a CPU stand-in for --dry-run); every outcome recorded as the test ends."""
    env = dict(os.environ, **{RESULTS_ENV: str(run.out / RESULTS)})
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get('PYTHONPATH')]))
    # A file that fails to import must not stop the other files' tests: it is reported as an error.
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'gpu_check', '-p', 'no:randomly',
           '--continue-on-collection-errors'] + run.tests
    print(' '.join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT, env=env)  # its output goes to this stage's log
    run.record('pytest exit', exit=code, command=' '.join(run.tests))
    if code not in (0, 1):  # 1: some tests failed, which the summary reports test by test
        raise RuntimeError(f'pytest exited with status {code} (2 interrupted, 3 internal error, 4 usage error, '
                           '5 no tests collected)')


def compiled_case(run: Run, precision: str, device: 'torch.device') -> Tuple[Callable, 'torch.Tensor']:
    """The compiled fast path in ``precision`` and its input at the largest size: one definition for the warmer
    and the timed stage, so the timed run finds the warmer's kernels in the cache."""
    import torch

    from ramit.compilation import compile_network
    from ramit.precision import PRECISIONS as DTYPES

    dtype = DTYPES[precision]
    _, h, w = SIZES[run.dry][-1]
    net = build_net(run.dry).to(device=device, dtype=dtype).eval().set_fast(True)
    return compile_network(net, device, 'auto'), torch.rand(1, 3, h, w, device=device, dtype=dtype)


def compiled_train_case() -> 'TrainCase':
    """The compiled training case (its warmer and the timed stage share it)."""
    from ramit.benchmark import TrainCase

    return TrainCase('fast', 'bf16', 'auto')


def stage_warm_inference(precision: str, run: Run) -> None:
    """Background: compile one inference case so that the compiled stage loads its kernels from the cache."""
    import torch

    from ramit.compilation import cache_report

    device = run.device()
    start = time.perf_counter()
    fn, x = compiled_case(run, precision, device)
    with torch.no_grad():
        for _ in range(2):
            fn(x)
    run.record('compiled', precision=precision, seconds=time.perf_counter() - start, cache=cache_report())


def stage_warm_train(run: Run) -> None:
    """Background: compile the training step of the compiled training case into the cache."""
    from ramit.benchmark import bench_train
    from ramit.compilation import cache_report

    start = time.perf_counter()
    bench_train(lambda: build_net(run.dry), compiled_train_case(), run.train['batch'], run.train['patch'],
                run.device(), steps=1, warmup=2)
    run.record('compiled training', precision='bf16', seconds=time.perf_counter() - start, cache=cache_report())


def inference_record(run: Run, case: str, size: str, precision: str, result: dict, **extra) -> None:
    """Record one bench_size result (milliseconds) and print it with its speed-up over the reference."""
    fields = dict(size=size, precision=precision, ms=result['median_s'] * 1e3, min_ms=result['min_s'] * 1e3,
                  peak_mib=result['peak_mib'], repeats=result['repeats'], **extra)
    run.record(case, **fields)
    ref = reference(run.records(), run.stage, size)
    speedup = f"{ref['ms'] / fields['ms']:.2f}x" if ref else 'unknown'
    print(f"{size} {case} {precision}: {fields['ms']:.2f} ms, {speedup} reference fp32", flush=True)


def stage_eager(run: Run) -> None:
    """Latency of the reference path fp32 and the fast path per precision, interleaved, at every size."""
    import torch

    from ramit.benchmark import bench_size
    from ramit.precision import PRECISIONS as DTYPES

    device = run.device()
    for size, h, w in run.sizes:
        inputs = {p: torch.rand(1, 3, h, w, device=device, dtype=DTYPES[p]) for p in ('fp32',) + tuple(run.precisions)}
        # The path is a module attribute: each case has its own network.
        cases = {('reference', 'fp32'): build_net(run.dry).to(device).eval().set_fast(False)}
        cases.update({('fast', p): build_net(run.dry).to(device=device, dtype=DTYPES[p]).eval().set_fast(True)
                      for p in run.precisions})
        results = bench_size({key: fixed_input(net, inputs[key[1]]) for key, net in cases.items()},
                             inputs['fp32'], device, run.repeats, run.warmup, progress=print)
        for (case, precision), result in results.items():
            inference_record(run, case, size, precision, result)


def stage_compiled(run: Run) -> None:
    """Latency of the compiled fast path per precision at the largest size; the first call's time is recorded
    apart (compilation, or loading the warmers' kernels)."""
    import torch

    from ramit.benchmark import bench_size, synchronize
    from ramit.compilation import cache_report, resolve_mode

    device = run.device()
    size = SIZES[run.dry][-1][0]
    failed = []
    for precision in run.precisions:
        try:
            fn, x = compiled_case(run, precision, device)
            start = time.perf_counter()
            with torch.no_grad():
                fn(x)
            synchronize(device)
            first_call_s = time.perf_counter() - start
            result = bench_size({'compiled': fixed_input(fn, x)}, x, device, run.repeats, run.warmup)['compiled']
            inference_record(run, 'compiled', size, precision, result, first_call_s=first_call_s,
                             mode=resolve_mode('auto', device, static_shapes=True), cache=cache_report())
        except Exception as err:  # one precision failing to compile must not cost the others their figures
            traceback.print_exc()
            failed.append(f'{precision}: {type(err).__name__}: {err}')
    if failed:
        raise RuntimeError('compiled ' + '; '.join(failed))


def train_record(run: Run, result: dict, case: str, precision: str) -> None:
    """Record one bench_train result with its loss-curve deviation from the reference fp32 training."""
    from ramit.benchmark import loss_curve_deviation

    size = train_size(run.train['batch'], run.train['patch'])
    baseline = (run.stage, case, precision) == (REFERENCE_STAGE[run.stage], 'reference', 'fp32')
    ref = dict(losses=result['losses']) if baseline else reference(run.records(), run.stage, size)
    deviation = loss_curve_deviation(result['losses'], ref['losses']) if ref else None
    run.record(case, size=size, precision=precision, ms=result['ms_per_step'], min_ms=result['min_ms'],
               samples_per_s=result['samples_per_s'], peak_mib=result['peak_mib'], warmup_s=result['warmup_s'],
               losses=result['losses'], loss_deviation=deviation)
    print(f"{result['case']}: {result['ms_per_step']:.1f} ms/step", flush=True)


def bench_train_case(run: Run, case: 'TrainCase', batches: Optional[Iterator[dict]] = None,
                     batch: Optional[int] = None, patch: Optional[int] = None) -> dict:
    """bench_train of ``case`` with this run's settings (the shipped option file's batch and patch for data)."""
    from ramit.benchmark import bench_train

    return bench_train(lambda: build_net(run.dry), case, batch or run.train['batch'], patch or run.train['patch'],
                       run.device(), run.train['steps'], run.train['warmup'], batches=batches)


def stage_train(run: Run) -> None:
    """Training steps of the reference and fast paths in fp32 and bf16 (the reference fp32 first: the baseline)."""
    from ramit.benchmark import TrainCase

    for path, amp in (('reference', None), ('fast', None), ('reference', 'bf16'), ('fast', 'bf16')):
        train_record(run, bench_train_case(run, TrainCase(path, amp)), path, amp or 'fp32')


def stage_train_compiled(run: Run) -> None:
    """Training steps of the compiled fast path in bf16."""
    train_record(run, bench_train_case(run, compiled_train_case()), 'compiled', 'bf16')


def set5_hr() -> Path:
    """Set5's HR images under $RAMIT_SHARED (else ../shared beside the checkout); Skipped when absent."""
    shared = Path(os.environ.get('RAMIT_SHARED') or ROOT.parent / 'shared')
    folder = shared / 'datasets' / 'Set5' / 'HR'
    if not folder.is_dir():
        raise Skipped(f'Set5 HR images not found at {folder} (set RAMIT_SHARED to the folder holding datasets/)')
    return folder


def stage_data(run: Run) -> None:
    """The shipped x2 option file's train dataloader on LMDBs made from Set5 (192-pixel HR sub-images, as
    Set5's woman is 228 wide), alone and feeding the compiled (else fast) bf16 step, against synthetic batches."""
    hr = set5_hr()
    import yaml

    from ramit.benchmark import TrainCase
    from ramit_cli.bench_data import OptionFileBatches, bench_loader
    from ramit_plugin.dataprep import extract_subimages, make_lmdb, make_lr
    from ramit_plugin.resources import option_file

    work = Path(tempfile.mkdtemp(prefix='gpu_check_data_'))
    try:
        extract_subimages(hr, work / 'HR_sub', 192, 96, n_thread=4)
        make_lr(work / 'HR_sub', work / 'LR_sub', 2, n_thread=4)
        make_lmdb(work / 'HR_sub', work / 'HR_sub.lmdb', n_thread=4)
        make_lmdb(work / 'LR_sub', work / 'LR_sub.lmdb', n_thread=4)
        opt = yaml.safe_load(option_file('train_RAMiT-1_SRx2.yml').read_text())
        opt['datasets']['train'].update(dataroot_gt=str(work / 'HR_sub.lmdb'), dataroot_lq=str(work / 'LR_sub.lmdb'))
        if run.dry:
            opt['datasets']['train'].update(num_worker_per_gpu=1, batch_size_per_gpu=2, gt_size=32)
        (work / 'opt.yml').write_text(yaml.safe_dump(opt))
        loader = OptionFileBatches(work / 'opt.yml')
        alone = bench_loader(loader, 2 if run.dry else 30)
        shape = dict(batch=alone['batch'], patch=alone['lq_patch'][0])
        size = train_size(**shape)
        run.record('loader alone', size=size, ms=alone['ms_per_batch'], workers=alone['workers'])
        # The compiled step only where its stage worked: its kernels are then in the cache.
        compiled = any(r.get('stage') == 'train_compiled' and 'ms' in r for r in run.records())
        case = compiled_train_case() if compiled else TrainCase('fast', 'bf16')
        for label, batches in (('real batches', loader), ('synthetic batches', None)):
            result = bench_train_case(run, case, batches, **shape)
            run.record(f'{case.label} step, {label}', size=size, precision='bf16', ms=result['ms_per_step'],
                       workers=alone['workers'])
            print(f"{case.label} step with {label}: {result['ms_per_step']:.1f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def forced_timeout(run: Run) -> None:
    """--force-timeout: start children as a stage's tools do (one in its group, one in its own session, as torchrun
    starts ranks), record their ids, then outlive any budget."""
    children = [subprocess.Popen(['sleep', '300']), subprocess.Popen(['sleep', '300'], start_new_session=True)]
    run.record('forced timeout', child_pids=[child.pid for child in children])
    time.sleep(10 ** 6)


STAGE_FUNCTIONS: Dict[str, Callable[[Run], None]] = {
    'env': stage_env, 'cuda_tests': stage_cuda_tests, 'eager': stage_eager, 'compiled': stage_compiled,
    'train': stage_train, 'train_compiled': stage_train_compiled, 'data': stage_data,
    'warm_train': stage_warm_train, **{f'warm_{p}': partial(stage_warm_inference, p) for p in PRECISIONS}}


def missing_module(names: Sequence[str]) -> Optional[str]:
    """The first of ``names`` that cannot be imported here, found without importing any (some import torch)."""
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # ValueError: blocked (None in sys.modules)
            return name
    return None


def stage_main(args: argparse.Namespace) -> int:
    """Run one stage in this process: its figures go to the results file; an exception is a recorded failure."""
    run = Run(args.stage, args.out, args.dry_run, args.repeats, args.sizes, args.precisions, args.tests)
    try:
        if args.stage == args.force_timeout:
            forced_timeout(run)
        if args.stage == args.force_crash:
            raise RuntimeError('forced crash (--force-crash)')
        missing = missing_module(NEEDS.get(args.stage, ()))
        if missing:
            raise Skipped(f'{missing} missing')
        STAGE_FUNCTIONS[args.stage](run)
    except Skipped as skip:
        run.record('skipped', reason=str(skip))
        print(f'{args.stage}: not run: {skip}')
    except Exception as err:  # any failure: recorded with its cause, then the stage exits non-zero
        traceback.print_exc()
        run.record('error', error=f'{type(err).__name__}: {err}'[:500])
        return 1
    return 0


# ---------------------------------------------------------------------------------------------- the processes
def child_processes() -> Dict[int, List[int]]:
    """Parent pid -> its children's pids, for every process in /proc (empty where there is no /proc)."""
    children: Dict[int, List[int]] = {}
    try:
        entries = [e.name for e in os.scandir('/proc') if e.name.isdigit()]
    except OSError:
        return children
    for name in entries:
        try:
            with open(f'/proc/{name}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])  # the command name may hold spaces and ')'
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    return children


def descendants(children: Dict[int, List[int]], pid: int) -> List[int]:
    """Every descendant of ``pid`` in a child_processes() map."""
    tree, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        tree += kids
        todo += kids
    return tree


def become_subreaper() -> None:
    """Adopt the orphans of our stages (Linux prctl PR_SET_CHILD_SUBREAPER): a stage killed before its children
    leaves them to us, to be found and reaped, rather than to init."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def kill_stage(proc: subprocess.Popen) -> None:
    """Kill a stage's process group and every process it started in other sessions (torchrun gives each rank its
    own), then reap them; also after a normal exit, for anything it left running."""
    children = child_processes()
    # Our own children other than the running stages are orphans we adopted (become_subreaper) from this stage.
    adopted = [pid for pid in children.get(os.getpid(), []) if pid != proc.pid and pid not in LIVE]
    tree = [pid for root in [proc.pid] + adopted for pid in [root] + descendants(children, root) if pid != proc.pid]
    groups = {proc.pid}  # start_new_session: the group's id is the leader's pid
    for pid in tree:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    groups -= {os.getpgrp(), *LIVE.keys() - {proc.pid}}  # never our own group, nor another running stage's
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in tree:  # one that moved into our own group
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()
    deadline = time.monotonic() + 2
    pending = set(tree)
    while pending and time.monotonic() < deadline:  # orphans adopted by us are zombies until reaped
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            except ChildProcessError:  # not ours: init reaps it
                pass
            pending.discard(pid)
        time.sleep(0.02)


LIVE: Dict[int, str] = {}  # pid -> stage: the stage processes running now, which kill_stage must spare


STOP: List[int] = []  # the signal (SIGTERM, SIGINT) that asked the check to stop, once one has


def _stop(signum: int, frame) -> None:
    # Only noted here: the slot loop stops the stages between two of its steps, never half-way through one.
    STOP.append(signum)


def stage_command(args: argparse.Namespace, name: str) -> List[str]:
    """The command line of one stage process (this file with --stage)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), '--stage', name, '--out', str(args.out),
           '--repeats', str(args.repeats), '--sizes', ','.join(s[0] for s in args.sizes),
           '--precisions', ','.join(args.precisions), f'--tests={shlex.join(args.tests)}']
    cmd += ['--dry-run'] if args.dry_run else []
    for flag in ('force_timeout', 'force_crash'):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return cmd


def exit_text(code: int) -> str:
    """'exit 1' or 'killed by SIGSEGV'."""
    if code < 0:
        try:
            return f'killed by {signal.Signals(-code).name}'
        except ValueError:
            return f'killed by signal {-code}'
    return f'exit {code}'


def last_line(path: Path) -> str:
    """The last non-empty line of a log (what a crash printed last)."""
    lines = [line for line in path.read_text(errors='replace').splitlines() if line.strip()] if path.is_file() else []
    return lines[-1].strip()[:300] if lines else '(no output)'


class Check:
    """The orchestrating process: runs the stages slot by slot within the budget, keeps the results and summary."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out: Path = args.out
        self.logs = Path(tempfile.mkdtemp(prefix='gpu_check_logs_'))
        self.start = time.monotonic()
        self.aborted: Optional[str] = None
        self.own_cache: Optional[str] = None

    def elapsed(self) -> float:
        """Seconds since the check started."""
        return time.monotonic() - self.start

    def say(self, text: str) -> None:
        """A progress line."""
        print(f'gpu_check [{self.elapsed():5.0f} s] {text}', flush=True)

    def plan(self) -> List[Tuple[float, List[str]]]:
        """(end of the slot in seconds from the start, its selected stages): shares of the selected slots, scaled
        to the budget, so a stage ends by its slot's end and inherits what earlier ones left."""
        chosen = [(share, [n for n in names if n in self.args.stages]) for share, names in SLOTS]
        chosen = [(share, names) for share, names in chosen if names]
        total = sum(share for share, _ in chosen)
        usable = max(self.args.budget - RESERVE_S, 1.0)
        ends, cumulative = [], 0.0
        for share, names in chosen:
            cumulative += share
            ends.append((usable * cumulative / total, names))
        return ends

    def begin(self, plan: List[Tuple[float, List[str]]]) -> None:
        """A fresh results file opened by the plan: each stage's share, the bars' sizes, where things are."""
        self.out.mkdir(parents=True, exist_ok=True)
        results = self.out / RESULTS
        if results.exists():  # a new run starts a new file; the last one's figures stay beside it
            os.replace(results, self.out / 'results.previous.jsonl')
        (self.out / LOG).write_text('')
        if not os.environ.get(CACHE_ENV):  # one cache for this run's stages, removed at its end
            self.own_cache = os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix='gpu_check_inductor_')
        shares, previous_end = {}, 0.0
        for end, names in plan:
            shares.update({name: round(end - previous_end, 1) for name in names})
            previous_end = end
        train = TRAIN[self.args.dry_run]
        append_record(results, dict(stage='gpu_check', case='plan', dry_run=self.args.dry_run,
                                    budget_s=self.args.budget, stage_budgets_s=shares,
                                    bar_size=SIZES[self.args.dry_run][-1][0],
                                    train_size=train_size(train['batch'], train['patch']),
                                    logs=str(self.out / LOG), inductor_cache=os.environ[CACHE_ENV]
                                    + (' (this run only)' if self.own_cache else '')))
        self.say(f'budget {self.args.budget:.0f} s; stage logs in {self.logs} (copied to {self.out / LOG}); '
                 f'Inductor cache {os.environ[CACHE_ENV]}')

    def run(self) -> int:
        """All slots, then the final summary; the exit status."""
        plan = self.plan()
        self.begin(plan)
        become_subreaper()
        handlers = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for end, names in plan:
                if self.aborted or STOP:
                    break
                self.run_slot(names, self.start + end)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if STOP:
            self.say(f'stopped by {signal.Signals(STOP[0]).name}')
        text, failures = self.write_summary()
        print(text, flush=True)
        for folder in (self.logs, self.own_cache):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        if STOP:
            return 128 + STOP[0]
        if self.aborted:
            return NO_CUDA
        return 1 if failures else 0

    def run_slot(self, names: List[str], deadline: float) -> None:
        """Start the slot's stages side by side; each ends by itself or is killed at the slot's deadline."""
        procs: Dict[str, Tuple[subprocess.Popen, float, float]] = {}
        for name in names:
            limit = deadline - time.monotonic()
            with open(self.logs / f'{name}.log', 'w') as log:
                proc = subprocess.Popen(stage_command(self.args, name), cwd=ROOT, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            LIVE[proc.pid] = name
            procs[name] = (proc, limit, time.monotonic())
            append_record(self.out / RESULTS, dict(stage=name, case='started', budget_s=round(limit, 1), pid=proc.pid))
            self.say(f'{name}: started (limit {limit:.0f} s)')
        self.write_summary()  # a check killed now still says which stages were cut short
        while procs:
            for name, (proc, limit, started) in list(procs.items()):
                how = ('exited' if proc.poll() is not None else 'interrupted' if STOP
                       else 'timed out' if time.monotonic() >= deadline else None)
                if how:
                    self.finish(name, proc, limit, started, how)
                    del procs[name]
            time.sleep(0.1)

    def finish(self, name: str, proc: subprocess.Popen, limit: float, started: float, how: str) -> None:
        """Kill what is left of a stage, record its outcome, keep its log and rebuild the summary."""
        kill_stage(proc)
        LIVE.pop(proc.pid, None)
        seconds = time.monotonic() - started
        own = [r for r in read_records(self.out / RESULTS) if r.get('stage') == name]
        error = next((r['error'] for r in reversed(own) if r.get('case') == 'error'), None)
        skip = next((r['reason'] for r in reversed(own) if r.get('case') == 'skipped'), None)
        log = self.logs / f'{name}.log'
        if how == 'interrupted':
            outcome, reason = 'interrupted', 'the check was stopped'
        elif how == 'timed out':
            outcome, reason = 'timed out', f'exceeded its {limit:.0f} s limit; it and its processes were killed'
        elif proc.returncode < 0:  # killed from outside (the OOM killer, say): its last words may be anything
            outcome, reason = 'failed', f'{exit_text(proc.returncode)}; last output: {error or last_line(log)}'
        elif proc.returncode != 0:
            outcome, reason = 'failed', f'{exit_text(proc.returncode)}: {error or last_line(log)}'
            if name == 'env' and proc.returncode == NO_CUDA:
                self.aborted = last_line(log)
        elif skip:
            outcome, reason = 'skipped', skip
        else:
            outcome, reason = 'ok', ''
        append_record(self.out / RESULTS, dict(stage=name, case='status', outcome=outcome, reason=reason,
                                               exit=proc.returncode, budget_s=round(limit, 1),
                                               seconds=round(seconds, 1)))
        with open(self.out / LOG, 'a') as f:
            f.write(f'===== {name}: {outcome} {reason}\n{log.read_text(errors="replace") if log.is_file() else ""}\n')
        self.say(f'{name}: {outcome}{": " + reason if reason else ""} ({seconds:.0f} s)')
        try:
            self.write_summary()
        except Exception:  # the remaining stages still run; their figures are in the results file regardless
            traceback.print_exc()

    def write_summary(self) -> Tuple[str, List[str]]:
        """Rebuild summary.md from the results file (written whole, then renamed: a kill never halves it)."""
        text, failures = summary(read_records(self.out / RESULTS))
        tmp = self.out / (SUMMARY + '.tmp')
        tmp.write_text(text + '\n')
        os.replace(tmp, self.out / SUMMARY)
        return text, failures


# ------------------------------------------------------------------------------------------------- the summary
def fmt(value: Optional[float], spec: str = '.2f', unit: str = '') -> str:
    """A number, or 'unknown' where it could not be measured (never 0)."""
    return 'unknown' if value is None else f'{value:{spec}}{unit}'


class Summary:
    """The summary of one results file: stage outcomes, tests, tables, bars and what failed."""

    def __init__(self, records: List[dict]):
        self.records = records
        self.plan = next((r for r in records if r.get('case') == 'plan'), {})
        self.budgets: Dict[str, float] = self.plan.get('stage_budgets_s', {})
        self.status = {r['stage']: r for r in records if r.get('case') == 'status'}
        self.started = {r['stage'] for r in records if r.get('case') == 'started'}

    def state(self, stage: str) -> str:
        """What became of a stage, in a few words ('ok', 'timed out', 'skipped: lmdb missing', ...)."""
        if stage not in self.budgets:
            return 'not selected'
        status = self.status.get(stage)
        if status is None:
            return 'did not finish (the check was stopped)' if stage in self.started else 'not started'
        if status['outcome'] in ('failed', 'skipped'):
            return f"{status['outcome']}: {status['reason']}"
        return status['outcome']

    def failures(self) -> List[str]:
        """Stages that failed, timed out or did not finish, and failed CUDA tests."""
        bad = [f'{stage} {self.state(stage)}' for stage in self.budgets
               if stage in self.started and self.state(stage) != 'ok' and not self.state(stage).startswith('skipped')]
        failed = [test for test, outcome in self.tests().items() if outcome in ('failed', 'error')]
        return bad + ([f'{len(failed)} CUDA test(s) failed'] if failed else [])

    def tests(self) -> Dict[str, str]:
        """Test id -> its worst outcome (a passed call with a broken teardown is an error)."""
        rank = {'passed': 0, 'skipped': 1, 'failed': 2, 'error': 3}
        outcomes: Dict[str, str] = {}
        for r in self.records:
            if r.get('stage') == 'cuda_tests' and 'when' in r:  # the stage's own status has an outcome too
                if rank[r['outcome']] >= rank.get(outcomes.get(r['case'], 'passed'), 0):
                    outcomes[r['case']] = r['outcome']
        return outcomes

    def speedup(self, r: dict) -> Optional[float]:
        """A figure's speed-up over the reference fp32 at its own size; None without that reference."""
        ref = reference(self.records, r['stage'], r['size'])
        return ref['ms'] / r['ms'] if ref else None

    def figures(self, *stages: str) -> List[dict]:
        """The timed records of ``stages``."""
        return [r for r in self.records if r.get('stage') in stages and 'ms' in r]

    def stage_lines(self) -> List[str]:
        """The stage table: budget, time taken, outcome."""
        lines = ['| stage | share s | limit s | took s | result |', '|---|---|---|---|---|']
        limits = {r['stage']: r['budget_s'] for r in self.records if r.get('case') == 'started'}
        for stage, share in self.budgets.items():
            status = self.status.get(stage, {})
            state = self.state(stage)
            outcome, _, reason = state.partition(': ')
            shown = {'timed out': f"TIMED OUT ({status.get('reason')})", 'interrupted': 'INTERRUPTED',
                     'failed': f'FAILED: {reason}', 'skipped': f'not run: {reason}'}.get(outcome, state)
            extra = ' (background)' if stage in WARMERS else ''
            lines.append(f"| {stage}{extra} | {share:.0f} | {fmt(limits.get(stage), '.0f')} | "
                         f"{fmt(status.get('seconds'), '.0f')} | {shown} |")
        return lines

    def test_lines(self) -> List[str]:
        """Counts of the CUDA tests by outcome, the failed ones, and what the distributed test runs."""
        if 'cuda_tests' not in self.budgets:
            return []
        tests = self.tests()
        counts = ', '.join(f'{sum(v == k for v in tests.values())} {label}' for k, label in
                           (('passed', 'passed'), ('failed', 'failed'), ('error', 'errors'), ('skipped', 'skipped')))
        exits = [r for r in self.records if r.get('stage') == 'cuda_tests' and r.get('case') == 'pytest exit']
        where = f" (pytest {exits[-1]['command']}: exit {exits[-1]['exit']})" if exits else \
            f" (stage {self.state('cuda_tests')}: the tests not listed did not run)"
        lines = [f'## CUDA tests: {counts}{where}']
        lines += [f'- {outcome.upper()}: {test}' for test, outcome in tests.items() if outcome in ('failed', 'error')]
        nccl = next((outcome for test, outcome in tests.items() if NCCL_TEST in test), None)
        lines.append(f"- distributed ({NCCL_TEST}): {nccl or 'not run'}. It runs one rank with NCCL on one GPU, "
                     'then two ranks with gloo sharing that GPU: a single GPU cannot hold two NCCL ranks, so NCCL '
                     'between ranks is not checked here.')
        return lines

    def inference_lines(self) -> List[str]:
        """The latency table (batch 1)."""
        rows = self.figures('eager', 'compiled')
        if not rows:
            return []
        lines = ['## Inference latency, batch 1, x2 (median ms; x = over the reference path fp32 at the same input, '
                 'measured once in the eager stage)', '',
                 '| input | case | precision | ms | peak MiB | x reference fp32 |', '|---|---|---|---|---|---|']
        for r in rows:
            case = f"compiled ({r.get('mode', 'auto')})" if r['case'] == 'compiled' else f"{r['case']} path (eager)"
            lines.append(f"| {r['size']} | {case} | {r['precision']} | {r['ms']:.2f} | {fmt(r.get('peak_mib'), '.1f')} "
                         f"| {fmt(self.speedup(r), '.2f', 'x')} |")
        return lines

    def training_lines(self) -> List[str]:
        """The training-step table."""
        rows = self.figures('train', 'train_compiled')
        if not rows:
            return []
        lines = ['## Training steps (Adam, L1; x = over the reference path fp32 at the same batch and patch)', '',
                 '| case | precision | batch, patch | ms/step | samples/s | peak MiB | x reference fp32 | '
                 'loss curve dev. |', '|---|---|---|---|---|---|---|---|']
        for r in rows:
            deviation = r.get('loss_deviation')
            lines.append(f"| {r['case']} | {r['precision']} | {r['size']} | {r['ms']:.1f} | "
                         f"{fmt(r.get('samples_per_s'), '.1f')} | {fmt(r.get('peak_mib'), '.1f')} | "
                         f"{fmt(self.speedup(r), '.2f', 'x')} | "
                         f"{fmt(None if deviation is None else deviation * 100, '.2f', ' %')} |")
        return lines

    def data_lines(self) -> List[str]:
        """The data pipeline's figures."""
        rows = self.figures('data')
        if not rows and 'data' not in self.budgets:
            return []
        lines = ['## Data pipeline (the shipped x2 option file, LMDBs made from Set5)']
        lines += [f"- {r['case']} ({r['size']}, loader workers: {r.get('workers', 'unknown')}): {r['ms']:.1f} ms"
                  for r in rows]
        return lines + ([] if rows else [f"- not run ({self.state('data')})"])

    def bar_lines(self) -> List[str]:
        """Each bar judged on the measurement of its own size and precision."""
        lines = ['## Bars (speed-up over the reference path fp32 at the same size)', '',
                 '| bar | needed | measured | verdict |', '|---|---|---|---|']
        for bar in BARS:
            size = self.plan.get('train_size' if bar.stage.startswith('train') else 'bar_size', 'unknown')
            measured = find(self.records, bar.stage, bar.case, size, bar.precision)
            ref = reference(self.records, bar.stage, size)
            value = ref['ms'] / measured['ms'] if measured and ref else None
            if measured is None:
                why = self.state(bar.stage)
                verdict = f"not run ({bar.stage} {f'measured no {size} {bar.precision}' if why == 'ok' else why})"
            elif ref is None:
                verdict = f"not run (no reference fp32 at {size}: {REFERENCE_STAGE[bar.stage]} " \
                          f"{self.state(REFERENCE_STAGE[bar.stage])})"
            else:
                verdict = 'met' if value >= bar.needed else 'NOT met'
            lines.append(f'| {bar.label} {size} {bar.precision} | >= {bar.needed:.1f}x | '
                         f"{'-' if value is None else f'{value:.2f}x'} | {verdict} |")
        return lines

    def text(self) -> str:
        """The whole summary (markdown)."""
        dry = ' (dry run: tiny RAMiT on the CPU; the figures check the logic only)' if self.plan.get('dry_run') else ''
        env = next((r['line'] for r in self.records if r.get('case') == 'environment'), None)
        blocks = [[f'# GPU check{dry}', '', env or f"environment unknown (env {self.state('env')})",
                   f"budget {fmt(self.plan.get('budget_s'), '.0f', ' s')}; Inductor cache "
                   f"{self.plan.get('inductor_cache', 'unknown')}; logs {self.plan.get('logs', 'unknown')}"],
                  self.stage_lines(), self.test_lines(), self.inference_lines(), self.training_lines(),
                  self.data_lines(), self.bar_lines()]
        failures = self.failures()
        blocks.append(['RESULT: ' + ('FAILURE: ' + '; '.join(failures) if failures else 'OK')])
        return '\n\n'.join('\n'.join(block) for block in blocks if block)


def summary(records: List[dict]) -> Tuple[str, List[str]]:
    """The summary text of a results file's records, and its failures (empty: the check passed)."""
    built = Summary(records)
    return built.text(), built.failures()


# ----------------------------------------------------------------------------------------------------- the CLI
def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """The options, with the stage list, sizes and precisions resolved."""
    shares = '; '.join(f"{names[0]}{' with ' + ', '.join(names[1:]) + ' beside it' if names[1:] else ''} "
                       f'{share:.0%}' for share, names in SLOTS)
    parser = argparse.ArgumentParser(prog='gpu_check.py', description=__doc__,
                                     epilog=f'Shares of the budget: {shares}.',
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('gpu_check_out'), help='output folder (gpu_check_out)')
    parser.add_argument('--budget', type=float, default=480.0, help='seconds for the whole run (480)')
    parser.add_argument('--repeats', type=int, help='timed repeats per inference case (20; 2 with --dry-run)')
    parser.add_argument('--dry-run', action='store_true',
                        help='CPU, tiny network and sizes, a CPU test file for the CUDA tests: checks the logic only')
    parser.add_argument('--stages', default=','.join(STAGE_NAMES),
                        help=f"comma-separated stages to run ('warm' = all warm_*): {', '.join(STAGE_NAMES)}")
    hidden = argparse.SUPPRESS
    parser.add_argument('--stage', choices=STAGE_NAMES, help=hidden)  # internal: run one stage in this process
    parser.add_argument('--force-timeout', choices=STAGE_NAMES, help=hidden)  # tests: this stage overruns
    parser.add_argument('--force-crash', choices=STAGE_NAMES, help=hidden)  # tests: this stage raises
    parser.add_argument('--sizes', help=hidden)  # tests: a subset of the size labels
    parser.add_argument('--precisions', default=','.join(PRECISIONS), help=hidden)  # tests: a subset
    parser.add_argument('--tests', help=hidden)  # tests: pytest arguments instead of the CUDA tests
    args = parser.parse_args(argv)
    stages = [s for name in args.stages.split(',') for s in (WARMERS if name == 'warm' else [name]) if s]
    for given, valid, what in ((stages, STAGE_NAMES, '--stages'),
                               (args.precisions.split(','), PRECISIONS, '--precisions')):
        unknown = ', '.join(sorted(set(given) - set(valid)))
        if unknown:
            parser.error(f"{what}: unknown {unknown}; choose from {', '.join(valid)}")
    args.stages = [s for s in STAGE_NAMES if s in stages]
    args.precisions = [p for p in PRECISIONS if p in args.precisions.split(',')]
    sizes = SIZES[args.dry_run]
    wanted = args.sizes.split(',') if args.sizes else [label for label, _, _ in sizes]
    if set(wanted) - {label for label, _, _ in sizes}:
        parser.error(f"--sizes: choose from {', '.join(label for label, _, _ in sizes)}")
    args.sizes = [s for s in sizes if s[0] in wanted]
    if args.repeats is None:
        args.repeats = 2 if args.dry_run else 20
    default_tests = 'tests/ramit_cli/test_models.py' if args.dry_run else '-m cuda tests'
    args.tests = shlex.split(args.tests if args.tests is not None else default_tests)
    args.out = args.out.resolve()
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Run the check (or, with the internal --stage, one stage of it)."""
    args = parse_args(argv)
    if args.stage:
        return stage_main(args)
    return Check(args).run()


if __name__ == '__main__':
    sys.exit(main())
