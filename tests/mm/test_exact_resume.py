"""`ramit mm-train --resume` after a SIGKILL continues exactly (bit-identical weights); what it refuses in one line."""
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import ramit_plugin.mm  # noqa: F401  (allows the checkpoints' numpy/HistoryBuffer globals for weights_only)
from ramit_cli.main import main

# 8 iterations drawing from every random source: crops and flips (Python's random), progressive crops and
# drop-path (torch's generator); a checkpoint and a validation every 3 iterations.
RESUMABLE = ['model.generator.drop_path=0.1', 'model.progressive.iters=[0,5]', 'model.progressive.gt_sizes=[16,32]',
             'model.progressive.batch_sizes=[2,4]', 'default_hooks.checkpoint.interval=3', 'train_cfg.val_interval=3']


def mm_train(config: Path, work_dir: Path, workers: int, *extra: str) -> list:
    """The `ramit mm-train` arguments of a resumable tiny run with ``workers`` data-loader workers."""
    return ['mm-train', str(config), '--work-dir', str(work_dir), *extra, '--cfg-options', *RESUMABLE,
            f'train_dataloader.num_workers={workers}', f'train_dataloader.persistent_workers={workers > 0}']


def generator_weights(path: Path) -> dict:
    return {k: v for k, v in torch.load(path, map_location='cpu')['state_dict'].items() if k.startswith('generator.')}


def mm_process(args: list, cwd: Path, **kwargs) -> subprocess.Popen:
    """`ramit mm-train` in its own process, single-threaded."""
    return subprocess.Popen([sys.executable, '-m', 'ramit_cli', *args], cwd=cwd, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), **kwargs)


def test_a_killed_run_resumed_with_resume_ends_bit_identical(tmp_path, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(8)
    assert main(mm_train(config, tmp_path / 'full', 0), prog='ramit') == 0
    full = generator_weights(tmp_path / 'full' / 'iter_8.pth')
    for workers in (0, 2):
        work_dir = tmp_path / f'cut{workers}'
        proc = mm_process(mm_train(config, work_dir, workers), tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        # mmengine writes last_checkpoint (the name of the checkpoint it has just written) after the checkpoint.
        last = work_dir / 'last_checkpoint'
        end = time.monotonic() + 120
        while not (last.exists() and last.read_text()) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (work_dir / 'iter_8.pth').exists()
        if workers == 0:
            assert main(mm_train(config, work_dir, workers, '--resume'), prog='ramit') == 0
        else:
            # Killed while writing last_checkpoint (or before): it is empty, and the newest iter_<N>.pth is used.
            # (In a process of its own: data-loader workers left in this one take seconds to shut down.)
            last.write_text('')
            resume = mm_process(mm_train(config, work_dir, workers, '--resume'), tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            err = resume.communicate(timeout=300)[1]
            assert resume.returncode == 0, err[-3000:]
            assert (f'--resume: {last} names no readable checkpoint (it is empty or missing); resuming from '
                    f'{work_dir}/iter_') in err
        resumed = generator_weights(work_dir / 'iter_8.pth')
        assert resumed.keys() == full.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), f'num_workers {workers}'


class Payload:
    """Unpickling this runs a command: what weights_only must refuse."""

    def __reduce__(self):
        return os.system, ('touch pwned',)


def test_resume_from_a_malicious_or_damaged_checkpoint_is_one_line(tmp_path, tiny_config, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / 'evil.pth'
    evil.write_bytes(pickle.dumps({'meta': {}, 'state_dict': Payload()}, protocol=2))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    for path, reason in ((evil, 'it holds a pickled Python object (posix.system); only tensors and plain data are '
                                'loaded'), (empty, 'the file is empty, truncated or corrupted')):
        assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'w'), '--resume', str(path)],
                    prog='ramit') == 2
        assert capsys.readouterr().err == (f'ramit mm-train: error: --resume {path}: not a readable mmengine '
                                           f'checkpoint ({reason})\n')
    assert not (tmp_path / 'pwned').exists()


def test_lq_images_smaller_than_the_patch_are_named(tmp_path, tiny_config, sr_folders, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = (rf"PairedRandomCrop: {re.escape(str(sr_folders['lr']))}/img\d\.png is 24x24, smaller than the LQ "
                r'patch 32x32 \(GT patch 64 / scale 2\); use larger images or a smaller patch')
    argv = ['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
            'train_dataloader.dataset.pipeline.0.gt_patch_size=64']
    assert main([*argv, 'train_dataloader.num_workers=0'], prog='ramit') == 2
    assert re.fullmatch(f'ramit mm-train: error: {expected}', capsys.readouterr().err.strip())
    # From a data-loader worker process the message stays one line (in a process of its own, as users run it).
    proc = mm_process([*argv, 'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=True'],
                      tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 2 and 'Traceback' not in err, err[-3000:]
    assert re.fullmatch(f'ramit mm-train: error: {expected}', err.strip().splitlines()[-1]), err[-3000:]


def test_a_work_dir_in_use_is_refused(tmp_path, tiny_config, capsys, monkeypatch, lock_holder):
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    holder = lock_holder(work_dir / '.lock')  # as a running `ramit mm-train` holds it
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(work_dir)], prog='ramit') == 2
    assert capsys.readouterr().err == (f'ramit mm-train: error: work dir {work_dir} is in use by a running process '
                                       f'(pid {holder.pid}, lock {work_dir}/.lock); wait for it to finish or stop it '
                                       'first\n')
    assert sorted(p.name for p in work_dir.iterdir()) == ['.lock']
