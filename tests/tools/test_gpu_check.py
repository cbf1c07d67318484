"""tools/gpu_check.py proven on the CPU with --dry-run: each stage a process group with its own time limit (a
timeout or crash is a failure naming the stage, earlier figures kept, later stages still run, every process a stage
started gone), figures appended as they come, a summary that survives a kill, bars judged on their own size and
precision only, 'unknown' for what was not measured, and a skip (not a failure) where a module or Set5 is missing.

Left out: the compiled stages and the warm_* warmers (torch.compile of even the tiny network takes minutes on two
cores; `python tools/gpu_check.py --dry-run --budget 3600` runs them), and the data stage's full run (LMDBs made
from Set5 and the shipped option file's loader: a minute of CPU), which is marked ``slow``.
"""
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'gpu_check.py'
# Stands in for the CUDA tests: every outcome, the distributed test's name, and a test that hangs holding children
# as torchrun holds its ranks (one in pytest's group, one in a session of its own).
STAND_IN = '''
import os, subprocess, time
import pytest

def test_passes():
    pass

def test_fails():
    assert 1 == 2

def test_skipped():
    pytest.skip('not here')

def test_nccl_one_rank_and_gloo_two_ranks_on_one_gpu():
    pass

def test_hangs_with_children():
    kids = [subprocess.Popen(['sleep', '300']), subprocess.Popen(['sleep', '300'], start_new_session=True)]
    with open(os.environ['STAND_IN_PIDS'], 'w') as f:
        f.write(' '.join(str(kid.pid) for kid in kids))
    time.sleep(300)
'''


def gpu_check(out: Path, *args: str, env: Optional[Dict[str, str]] = None,
              timeout: float = 240) -> Tuple[subprocess.CompletedProcess, List[dict], str]:
    """Run the tool with ``args``; its process, the records of out/results.jsonl and out/summary.md."""
    proc = subprocess.run([sys.executable, str(TOOL), '--out', str(out), *args], capture_output=True, text=True,
                          cwd=ROOT, env=tool_env(out.parent, **(env or {})), timeout=timeout)
    return proc, records_of(out), (out / 'summary.md').read_text()


def tool_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """The environment of a run: its temporary folders (logs, Inductor cache) inside ``tmp_path``, even when the
    run is killed before it removes them."""
    return dict(os.environ, TMPDIR=str(tmp_path), **extra)


def records_of(out: Path) -> List[dict]:
    """Every line of out/results.jsonl."""
    return [json.loads(line) for line in (out / 'results.jsonl').read_text().splitlines()]


def status(records: List[dict], stage: str) -> dict:
    """The orchestrator's status record of ``stage``."""
    return next(r for r in records if r['stage'] == stage and r['case'] == 'status')


def index(records: List[dict], stage: str, case: str) -> int:
    """Position of the first record of ``stage`` and ``case`` in the file."""
    return next(i for i, r in enumerate(records) if (r['stage'], r['case']) == (stage, case))


def exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie too: it would be a child nobody reaped)."""
    return Path(f'/proc/{pid}').exists()


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (killed, waiting for its parent to reap it)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def row(summary: str, start: str) -> str:
    """The summary line starting with ``start``."""
    return next(line for line in summary.splitlines() if line.startswith(start))


@pytest.fixture(scope='module')
def tool():
    """tools/gpu_check.py as a module (it imports nothing heavy at the top)."""
    spec = importlib.util.spec_from_file_location('gpu_check', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timeouts_and_a_crash_fail_by_name_keep_earlier_results_and_kill_every_child(tmp_path):
    stand_in = tmp_path / 'test_stand_in.py'
    stand_in.write_text(STAND_IN)
    pids_file = tmp_path / 'pids'
    start = time.monotonic()
    proc, records, summary = gpu_check(
        tmp_path / 'out', '--dry-run', '--budget', '14', '--stages', 'cuda_tests,eager,train',
        '--tests', str(stand_in), '--force-crash', 'eager', '--force-timeout', 'train',
        env=dict(STAND_IN_PIDS=str(pids_file)))
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary.strip() in proc.stdout  # printed as written
    assert took < 14 + 10  # the budget bounds the whole run

    # The hanging CUDA-test stand-in: timed out, the outcomes before it kept, pytest's children killed with it.
    assert status(records, 'cuda_tests')['outcome'] == 'timed out'
    assert row(summary, '| cuda_tests |').endswith(' s limit; it and its processes were killed) |')
    assert '| TIMED OUT (exceeded its ' in row(summary, '| cuda_tests |')
    outcomes = {r['case'].split('::')[-1]: r['outcome'] for r in records if r.get('when')}
    assert outcomes == {'test_passes': 'passed', 'test_fails': 'failed', 'test_skipped': 'skipped',
                        'test_nccl_one_rank_and_gloo_two_ranks_on_one_gpu': 'passed'}
    assert '## CUDA tests: 2 passed, 1 failed, 0 errors, 1 skipped (stage timed out: ' in summary
    # Node ids are relative to pytest's rootdir: with no configuration file beside the stand-in, the common ancestor
    # of its folder and the repository (/tmp for a clone in /tmp), else the stand-in's folder.
    assert re.search(r'^- FAILED: (\S+/)?test_stand_in\.py::test_fails$', summary, re.M), summary
    assert ('- distributed (test_nccl_one_rank_and_gloo_two_ranks_on_one_gpu): passed. It runs one rank with NCCL on '
            'one GPU, then two ranks with gloo sharing that GPU') in summary

    # The crash and the forced timeout after it: both later stages ran, each failing by name.
    assert status(records, 'eager')['outcome'] == 'failed'
    assert row(summary, '| eager |').endswith('| FAILED: exit 1: RuntimeError: forced crash (--force-crash) |')
    assert status(records, 'train')['outcome'] == 'timed out'
    ends = [index(records, stage, 'status') for stage in ('cuda_tests', 'eager', 'train')]
    assert ends == sorted(ends)
    assert summary.splitlines()[-1] == ('RESULT: FAILURE: cuda_tests timed out; eager failed: exit 1: RuntimeError: '
                                        'forced crash (--force-crash); train timed out; 1 CUDA test(s) failed')
    assert '| eager 24x40 fp32 | >= 1.2x | - | not run (eager failed: exit 1: RuntimeError: forced crash' in summary

    children = [int(pid) for pid in pids_file.read_text().split()]
    children += next(r['child_pids'] for r in records if r['case'] == 'forced timeout')
    assert len(children) == 4 and not any(exists(pid) for pid in children)


@pytest.mark.parametrize('how', ['SIGKILL', 'SIGTERM'])
def test_a_stopped_check_leaves_the_summary_of_what_finished(tmp_path, how):
    """A warmer runs beside the tests and outlives them untouched; then the check is stopped. Killed outright (a
    machine's hard limit), the summary written at the last stage's end remains; stopped with SIGTERM, the check
    kills the running stage and everything it started, and writes the summary saying so."""
    stand_in = tmp_path / 'test_stand_in.py'
    stand_in.write_text('def test_passes():\n    pass\n')
    out = tmp_path / 'out'
    check = subprocess.Popen([sys.executable, str(TOOL), '--out', str(out), '--dry-run', '--budget', '300',
                              '--stages', 'cuda_tests,warm_fp32', '--tests', str(stand_in),
                              '--force-timeout', 'warm_fp32'],
                             cwd=ROOT, env=tool_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.monotonic() + 60
    while not {('warm_fp32', 'forced timeout'), ('cuda_tests', 'status')} <= {
            (r['stage'], r['case']) for r in (records_of(out) if (out / 'results.jsonl').exists() else [])}:
        assert time.monotonic() < deadline and check.poll() is None, check.communicate()[0]
        time.sleep(0.2)
    records = records_of(out)
    warmer = next(r['pid'] for r in records if (r['stage'], r['case']) == ('warm_fp32', 'started'))
    children = next(r['child_pids'] for r in records if r['case'] == 'forced timeout')
    try:
        assert all(running(pid) for pid in [warmer] + children)  # the end of cuda_tests killed none of them
        check.send_signal(getattr(signal, how))
        output = check.communicate(timeout=30)[0]
        summary = (out / 'summary.md').read_text()
        assert row(summary, '| cuda_tests |').endswith('| ok |')
        assert '## CUDA tests: 1 passed, 0 failed, 0 errors, 0 skipped' in summary
        if how == 'SIGKILL':
            assert row(summary, '| warm_fp32 (background) |').endswith('| did not finish (the check was stopped) |')
            assert summary.splitlines()[-1] == 'RESULT: FAILURE: warm_fp32 did not finish (the check was stopped)'
            assert running(warmer)  # its own session: a hard kill of the check cannot reach it
        else:
            assert check.returncode == 128 + signal.SIGTERM, output
            assert row(summary, '| warm_fp32 (background) |').endswith('| INTERRUPTED |')
            assert summary.splitlines()[-1] == 'RESULT: FAILURE: warm_fp32 interrupted'
            assert not any(exists(pid) for pid in [warmer] + children)
    finally:
        check.kill()
        for pid in [warmer] + children:
            if exists(pid):
                os.kill(pid, signal.SIGKILL)


def test_figures_speed_ups_and_bars_on_their_own_size(tmp_path):
    """The eager and training stages on the tiny network: each figure written by its stage before the stage ended,
    speed-ups over the one reference fp32 at the same size, and the eager bar (24x40 fp32) not met from 24x24."""
    proc, records, summary = gpu_check(tmp_path / 'out', '--dry-run', '--budget', '400', '--stages', 'env,eager,train',
                                       '--sizes', '24x24', '--precisions', 'fp32,bf16')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary.splitlines()[-1] == 'RESULT: OK'
    assert ', driver n/a (CPU), torch ' in summary.splitlines()[2]  # the machine the figures come from
    figures = {(r['stage'], r['case'], r['size'], r['precision']): r for r in records if 'ms' in r}
    train = 'batch 2, patch 16'
    assert set(figures) == {('eager', 'reference', '24x24', 'fp32'), ('eager', 'fast', '24x24', 'fp32'),
                            ('eager', 'fast', '24x24', 'bf16'), ('train', 'reference', train, 'fp32'),
                            ('train', 'fast', train, 'fp32'), ('train', 'reference', train, 'bf16'),
                            ('train', 'fast', train, 'bf16')}
    for stage in ('eager', 'train'):
        last_figure = max(i for i, r in enumerate(records) if r['stage'] == stage and 'ms' in r)
        assert last_figure < index(records, stage, 'status')
    ref, fast = figures['eager', 'reference', '24x24', 'fp32'], figures['eager', 'fast', '24x24', 'fp32']
    assert ref['ms'] > 0 and fast['ms'] > 0 and ref['repeats'] == 2
    assert f"| 24x24 | fast path (eager) | fp32 | {fast['ms']:.2f} | " in summary
    assert row(summary, '| 24x24 | fast path (eager) | fp32 |').endswith(f"| {ref['ms'] / fast['ms']:.2f}x |")
    assert '| eager 24x40 fp32 | >= 1.2x | - | not run (eager measured no 24x40 fp32) |' in summary

    steps = [figures['train', path, train, amp] for path in ('reference', 'fast') for amp in ('fp32', 'bf16')]
    assert all(len(r['losses']) == 3 + 1 for r in steps)  # dry run: 1 warm-up + 3 timed steps
    assert figures['train', 'reference', train, 'fp32']['loss_deviation'] == 0
    assert figures['train', 'fast', train, 'fp32']['loss_deviation'] < 1e-3  # same maths, another path
    assert all(r['loss_deviation'] < 0.05 for r in steps)
    assert '| train compiled batch 2, patch 16 bf16 | >= 3.0x | - | not run (train_compiled not selected) |' in summary


# Without importing torch here (seconds): an NVIDIA driver's device file or tool means a GPU may be present.
@pytest.mark.skipif(Path('/dev/nvidiactl').exists() or shutil.which('nvidia-smi') is not None,
                    reason='an NVIDIA GPU may be present')
def test_without_cuda_the_check_stops_after_env(tmp_path):
    proc, records, summary = gpu_check(tmp_path / 'out', '--budget', '120', '--stages', 'env,eager')
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'no CUDA device (torch.cuda.is_available() is False)' in row(summary, '| env |')
    assert row(summary, '| eager |').endswith('| not started |')
    assert summary.splitlines()[2] == 'environment unknown (env failed: exit 2: no CUDA device ' \
                                      '(torch.cuda.is_available() is False); --dry-run checks the logic on a CPU)'


@pytest.mark.parametrize('stage,module', [('data', 'lmdb'), ('data', 'basicsr'), ('cuda_tests', 'pytest')])
def test_a_missing_module_skips_its_stage_with_the_reason(tmp_path, stage, module):
    hide = tmp_path / 'hide'
    hide.mkdir()
    (hide / 'sitecustomize.py').write_text(f'import sys\nsys.modules[{module!r}] = None\n')  # as if not installed
    path = os.pathsep.join(filter(None, [str(hide), os.environ.get('PYTHONPATH')]))
    proc, records, summary = gpu_check(tmp_path / 'out', '--dry-run', '--stages', stage, '--budget', '60',
                                       env=dict(PYTHONPATH=path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (status(records, stage)['outcome'], status(records, stage)['reason']) == ('skipped', f'{module} missing')
    assert row(summary, f'| {stage} |').endswith(f'| not run: {module} missing |')
    assert summary.splitlines()[-1] == 'RESULT: OK'


def test_without_set5_the_data_stage_is_skipped_saying_where_it_looked(tmp_path):
    proc, records, summary = gpu_check(tmp_path / 'out', '--dry-run', '--stages', 'data', '--budget', '60',
                                       env=dict(RAMIT_SHARED=str(tmp_path / 'nothing')))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = tmp_path / 'nothing' / 'datasets' / 'Set5' / 'HR'
    assert status(records, 'data')['reason'].startswith(f'Set5 HR images not found at {where} ')
    assert f'- not run (skipped: Set5 HR images not found at {where} ' in summary


@pytest.mark.slow
def test_data_pipeline_of_the_shipped_option_file(tmp_path):
    set5 = require_shared('datasets', 'Set5', 'HR')
    proc, records, summary = gpu_check(tmp_path / 'out', '--dry-run', '--stages', 'data', '--budget', '400',
                                       env=dict(RAMIT_SHARED=str(set5.parents[2])))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = {r['case']: r for r in records if r['stage'] == 'data' and 'ms' in r}
    assert set(cases) == {'loader alone', 'fast bf16 step, real batches', 'fast bf16 step, synthetic batches'}
    assert all(r['size'] == 'batch 2, patch 16' and r['ms'] > 0 and r['workers'] == 1 for r in cases.values())


def test_bars_read_only_their_own_size_and_precision(tool):
    """Compiled fp16 fast, bf16 measured only at the small size, fp32 only slow: never the better of two."""
    plan = dict(stage='gpu_check', case='plan', dry_run=True, budget_s=100,
                stage_budgets_s=dict(eager=10, compiled=10, train=10, train_compiled=10),
                bar_size='24x40', train_size='batch 2, patch 16')
    figures = [('eager', 'reference', '24x24', 'fp32', 10.0), ('eager', 'reference', '24x40', 'fp32', 20.0),
               ('eager', 'fast', '24x24', 'fp32', 1.0), ('eager', 'fast', '24x40', 'bf16', 1.0),
               ('compiled', 'compiled', '24x40', 'fp16', 2.0), ('compiled', 'compiled', '24x24', 'bf16', 0.1),
               ('compiled', 'compiled', '24x40', 'fp32', 10.0),
               ('train_compiled', 'compiled', 'batch 2, patch 16', 'bf16', 1.0)]
    records = [plan] + [dict(stage=s, case=c, size=z, precision=p, ms=ms, peak_mib=None) for s, c, z, p, ms in figures]
    records += [dict(stage=s, case='started', budget_s=10) for s in ('eager', 'compiled', 'train', 'train_compiled')]
    records += [dict(stage=s, case='status', outcome='ok', reason='', seconds=1) for s in ('eager', 'compiled')]
    records += [dict(stage='train', case='status', outcome='timed out', reason='exceeded', seconds=10)]
    text, failures = tool.summary(records)
    bars = [line for line in text.splitlines()
            if line.startswith(('| eager 24x40', '| compiled 24x40', '| train compiled'))]
    assert bars == [
        '| eager 24x40 fp32 | >= 1.2x | - | not run (eager measured no 24x40 fp32) |',
        '| compiled 24x40 fp32 | >= 4.0x | 2.00x | NOT met |',
        '| compiled 24x40 fp16 | >= 6.0x | 10.00x | met |',
        '| compiled 24x40 bf16 | >= 6.0x | - | not run (compiled measured no 24x40 bf16) |',
        '| train compiled batch 2, patch 16 bf16 | >= 3.0x | - | not run (no reference fp32 at batch 2, patch 16: '
        'train timed out) |']
    # What was not measured reads 'unknown', never 0: peak memory, a speed-up without its reference, the machine.
    assert '| 24x40 | compiled (auto) | fp16 | 2.00 | unknown | 10.00x |' in text
    assert '| compiled | bf16 | batch 2, patch 16 | 1.0 | unknown | unknown | unknown | unknown |' in text
    assert text.splitlines()[2] == 'environment unknown (env not selected)'
    # A stage that started but never reported (the check was killed during it) is a failure too.
    assert failures == ['train timed out', 'train_compiled did not finish (the check was stopped)']


def test_help_says_how_to_run_it_anywhere():
    proc = subprocess.run([sys.executable, str(TOOL), '--help'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "pip install '.[test]'" in proc.stdout and 'python tools/gpu_check.py --out DIR' in proc.stdout
    assert '--force-timeout' not in proc.stdout and '--stages' in proc.stdout
