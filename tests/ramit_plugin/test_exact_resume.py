"""`basicsr train --auto_resume` after a SIGKILL continues exactly (bit-identical weights) through the plugin's
pipeline (ResumableSampler, SeededDataset); running experiments are locked."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import cv2
import pytest
import torch
from basicsr.data.data_sampler import EnlargedSampler

from ramit.training import SampleKey, sample_seed
from ramit_cli.main import main
from ramit_plugin.pipeline import ResumableSampler, SeededDataset

THREADS = ['--threads', '1']  # the killed process and the in-process runs compute alike


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch) -> Iterator[None]:
    """Put back the thread settings `basicsr train --threads` changes in this process."""
    monkeypatch.setenv('OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS', '1'))
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


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
    """Start the `basicsr` console script (a real process, to be killed), its output going to ``log``."""
    script = Path(sys.executable).parent / 'basicsr'
    with open(log, 'w') as out:
        return subprocess.Popen([str(script), *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS='1'))


def stop_at(proc: subprocess.Popen, path: Path, log: Path, timeout: float = 300) -> None:
    """SIGSTOP ``proc`` as soon as ``path`` exists (a checkpoint renamed into place): it keeps its locks and files."""
    end = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.002)
    proc.send_signal(signal.SIGSTOP)
    assert path.exists(), f'the run ended before its checkpoint: {log.read_text()[-3000:]}'


def kill(proc: subprocess.Popen) -> None:
    """kill -9 and reap ``proc``; its data-loader workers notice within seconds (a run resumed at once meets them)."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def weights(path: Path) -> dict:
    """The 'params' of a BasicSR checkpoint."""
    return torch.load(path, map_location='cpu', weights_only=True)['params']


def files_below(folder: Path) -> List[Path]:
    """Every path below ``folder``, sorted."""
    return sorted(p.relative_to(folder) for p in folder.rglob('*'))


def test_a_killed_run_resumed_with_auto_resume_ends_bit_identical(tmp_path, sr_data, tiny_options, options_file,
                                                                  basicsr, capsys, monkeypatch):
    options_file(tmp_path / 'full.yml', resumable_options(tiny_options, sr_data, 'full', workers=0))
    result = basicsr('train', '-opt', 'full.yml', *THREADS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    full = weights(tmp_path / 'experiments' / 'full' / 'models' / 'net_g_latest.pth')

    for workers in (0, 2):
        name = f'cut{workers}'
        options_file(tmp_path / f'{name}.yml', resumable_options(tiny_options, sr_data, name, workers))
        exp = tmp_path / 'experiments' / name
        log = tmp_path / f'{name}.log'
        proc = basicsr_process('train', '-opt', f'{name}.yml', *THREADS, cwd=tmp_path, log=log)
        try:
            stop_at(proc, exp / 'training_states' / '3.state', log)
            if workers == 0:
                # While it runs (stopped, not dead), a second start of the experiment is refused, and its folder is
                # neither moved aside (as basicsr does with an existing experiment) nor touched.
                before = files_below(exp)
                monkeypatch.chdir(tmp_path)
                assert main(['train', '-opt', f'{name}.yml'], 'basicsr') == 2
                assert capsys.readouterr().err == (
                    f'basicsr train: error: {exp} is in use by a running process (pid {proc.pid}, lock '
                    f"{tmp_path / 'experiments' / f'.{name}.lock'}); wait for it to finish or stop it first\n")
                assert files_below(exp) == before
                assert sorted(p.name for p in (tmp_path / 'experiments').iterdir() if not p.name.startswith('.')) \
                    == ['cut0', 'full']
        finally:
            kill(proc)
        assert not (exp / 'models' / 'net_g_latest.pth').exists()
        if workers == 2:
            # What a kill during a save leaves (a hidden temporary file), and a newer iteration whose network file
            # is empty: the resumed run removes the first, skips the second and continues from the newest
            # complete pair; the damaged files stay as they were.
            (exp / 'models' / '.net_g_9.pth.0123456789ab.part').write_bytes(b'half a checkpoint')
            (exp / 'models' / 'net_g_7.pth').write_bytes(b'')
            shutil.copy(exp / 'training_states' / '3.state', exp / 'training_states' / '7.state')
        result = basicsr('train', '-opt', f'{name}.yml', '--auto_resume', *THREADS, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        resumed_from = int(result.stderr.split('Resuming training from epoch: ')[1].split('iter: ')[1].split('.')[0])
        assert resumed_from in (3, 6)  # the stop came right after the save at 3, at most after the one at 6
        resumed = weights(exp / 'models' / 'net_g_latest.pth')
        assert full.keys() == resumed.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), f'num_worker_per_gpu {workers}'
        if workers == 2:
            assert f'--auto_resume: removed 1 unfinished temporary file(s) of killed saves in {exp}/models' \
                in result.stderr
            assert 'skipping iteration 7: ' in result.stderr and 'net_g_7.pth: not a readable PyTorch checkpoint' \
                in result.stderr
            assert f'--auto_resume: resuming from iteration {resumed_from}, the newest complete checkpoint' \
                in result.stderr
            assert not list((exp / 'models').glob('.*.part'))
            assert (exp / 'models' / 'net_g_7.pth').read_bytes() == b''


class Numbers:
    """A dataset whose sample is its index and a draw of each of Python's, NumPy's and torch's generators."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple:
        import random

        import numpy as np
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


def test_the_sampler_resumes_mid_epoch_and_samples_do_not_depend_on_the_loading_order():
    sampler = ResumableSampler(Numbers(), num_replicas=1, rank=0, ratio=2, seed=5)
    reference = EnlargedSampler(Numbers(), 1, 0, 2)
    sampler.set_epoch(3)
    reference.set_epoch(3)
    keys = list(sampler)
    # basicsr's order, each index with the seed of its place in the epoch.
    assert [k.index for k in keys] == list(reference) and len(keys) == 12
    assert keys[4] == SampleKey(keys[4].index, sample_seed(5, 3, 4))
    assert len({k.seed for k in keys}) == 12 and sample_seed(5, 3, 4) != sample_seed(5, 4, 4) != sample_seed(6, 3, 4)
    # A run resumed after 5 samples of epoch 3 gets the rest of that epoch, then whole epochs.
    sampler.start_at(3, 5)
    assert list(sampler) == keys[5:] and list(sampler) == keys[5:]  # every iterator of the epoch skips
    sampler.set_epoch(4)
    assert len(list(sampler)) == 12
    # A sample's random draws depend on its key only, not on what was drawn before it (or in which worker).
    dataset = SeededDataset(Numbers())
    forward = [dataset[k] for k in keys]
    torch.manual_seed(123)
    backward = [dataset[k] for k in reversed(keys)][::-1]
    assert forward == backward and len({sample[1:] for sample in forward}) == 12
    assert dataset[2] != dataset[2]  # a plain index draws from the global generators


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
    assert capsys.readouterr().err == (f"basicsr test: error: {tmp_path / 'results' / 'evaluation'} is in use by a "
                                       f"running process (pid {holder.pid}, lock {tmp_path / 'results'}/"
                                       '.evaluation.lock); wait for it to finish or stop it first\n')
    assert [p.name for p in (tmp_path / 'results').iterdir()] == ['.evaluation.lock']
