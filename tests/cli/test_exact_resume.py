"""`basicsr train --auto_resume` after a SIGKILL continues exactly (bit-identical weights); running experiments are
locked."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ramit_cli.main import main


def resumable_options(tiny_options, sr_data, name: str, workers: int) -> dict:
    """8 iterations drawing from every random source: crops and flips (Python's random), progressive crops and
    drop-path (torch's generator); 16 samples per epoch (enlarge ratio 2) in batches of 4, so the checkpoint at
    iteration 3 is in the middle of an epoch; validation right after it."""
    opt = tiny_options(sr_data, name=name, total_iter=8,
                       progressive=dict(iters=[0, 5], gt_sizes=[16, 32], batch_sizes=[2, 4]))
    opt['network_g']['drop_path'] = 0.1
    opt['datasets']['train'].update(num_worker_per_gpu=workers, dataset_enlarge_ratio=2)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=3)
    opt['val']['val_freq'] = 3
    return opt


def basicsr_process(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """Start the `basicsr` console script, its output going to ``log``."""
    script = Path(sys.executable).parent / 'basicsr'
    with open(log, 'w') as out:
        return subprocess.Popen([str(script), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS='1'))


def kill_after(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``path`` exists (a checkpoint renamed into place)."""
    end = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.exists(), 'the run ended before its checkpoint'


def weights(path: Path) -> dict:
    """The 'params' of a BasicSR checkpoint."""
    return torch.load(path, map_location='cpu', weights_only=True)['params']


def test_a_killed_run_resumed_with_auto_resume_ends_bit_identical(tmp_path, sr_data, tiny_options, options_file,
                                                                  run_basicsr):
    options_file(tmp_path / 'full.yml', resumable_options(tiny_options, sr_data, 'full', workers=0))
    proc = run_basicsr('train', '-opt', 'full.yml', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = weights(tmp_path / 'experiments' / 'full' / 'models' / 'net_g_latest.pth')

    for workers in (0, 2):
        name = f'cut{workers}'
        options_file(tmp_path / f'{name}.yml', resumable_options(tiny_options, sr_data, name, workers))
        exp = tmp_path / 'experiments' / name
        kill_after(basicsr_process('train', '-opt', f'{name}.yml', cwd=tmp_path, log=tmp_path / f'{name}.log'),
                   exp / 'training_states' / '3.state')
        assert not (exp / 'models' / 'net_g_latest.pth').exists()
        if workers == 2:
            # What a kill during a save leaves (a hidden temporary file), and a newer iteration whose network file
            # is empty: the resumed run removes the first, skips the second and continues from the newest
            # complete pair; the damaged files stay as they were.
            (exp / 'models' / '.net_g_9.pth.0123456789ab.part').write_bytes(b'half a checkpoint')
            (exp / 'models' / 'net_g_7.pth').write_bytes(b'')
            shutil.copy(exp / 'training_states' / '3.state', exp / 'training_states' / '7.state')
        proc = run_basicsr('train', '-opt', f'{name}.yml', '--auto_resume', cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        resumed_from = int(proc.stderr.split('Resuming training from epoch: ')[1].split('iter: ')[1].split('.')[0])
        assert resumed_from in (3, 6)  # the kill came right after the save at 3, at most after the one at 6
        resumed = weights(exp / 'models' / 'net_g_latest.pth')
        assert full.keys() == resumed.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), f'num_worker_per_gpu {workers}'
        if workers == 2:
            assert f'--auto_resume: removed 1 unfinished temporary file(s) of killed saves in {exp}/models' \
                in proc.stderr
            assert 'skipping iteration 7: ' in proc.stderr and 'net_g_7.pth: not a readable PyTorch checkpoint' \
                in proc.stderr
            assert f'--auto_resume: resuming from iteration {resumed_from}, the newest complete checkpoint' \
                in proc.stderr
            assert not list((exp / 'models').glob('.*.part'))
            assert (exp / 'models' / 'net_g_7.pth').read_bytes() == b''


def test_a_running_experiment_is_not_started_twice(tmp_path, sr_data, tiny_options, options_file, capsys,
                                                   monkeypatch):
    opt = tiny_options(sr_data, name='long', total_iter=100000)
    opt['logger'].update(print_freq=100000, save_checkpoint_freq=100000)
    opt['val']['val_freq'] = 100000
    options_file(tmp_path / 'long.yml', opt)
    exp = tmp_path / 'experiments' / 'long'
    first = basicsr_process('train', '-opt', 'long.yml', cwd=tmp_path, log=tmp_path / 'first.log')
    try:
        end = time.monotonic() + 120
        while 'Start training' not in (tmp_path / 'first.log').read_text() and time.monotonic() < end:
            assert first.poll() is None, (tmp_path / 'first.log').read_text()[-3000:]
            time.sleep(0.1)
        before = sorted(p.relative_to(tmp_path) for p in exp.rglob('*'))
        monkeypatch.chdir(tmp_path)
        assert main(['train', '-opt', 'long.yml'], 'basicsr') == 2
        err = capsys.readouterr().err
        assert err == (f'basicsr train: error: experiments/long is in use by a running process (pid {first.pid}, '
                       'lock experiments/.long.lock); wait for it to finish or stop it first\n')
        # The running experiment's folder was neither moved aside nor touched.
        assert [p.name for p in (tmp_path / 'experiments').iterdir() if not p.name.startswith('.')] == ['long']
        assert sorted(p.relative_to(tmp_path) for p in exp.rglob('*')) == before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_basicsr_test_locks_its_results_folder(tmp_path, sr_data, tiny_options, options_file, capsys, monkeypatch,
                                               lock_holder):
    opt = tiny_options(sr_data, name='evaluation')
    opt.pop('train')
    opt['datasets'] = dict(test_1=opt['datasets']['val'])
    options_file(tmp_path / 't.yml', opt)
    (tmp_path / 'results').mkdir()
    holder = lock_holder(tmp_path / 'results' / '.evaluation.lock')
    monkeypatch.chdir(tmp_path)
    assert main(['test', '-opt', 't.yml'], 'basicsr') == 2
    assert capsys.readouterr().err == (f'basicsr test: error: results/evaluation is in use by a running process (pid '
                                       f'{holder.pid}, lock results/.evaluation.lock); wait for it to finish or stop '
                                       'it first\n')
    assert [p.name for p in (tmp_path / 'results').iterdir()] == ['.evaluation.lock']
