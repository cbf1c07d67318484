"""`ramit mm-train --resume` after a SIGKILL continues exactly (bit-identical weights); which checkpoints it refuses or
skips (damaged, malicious, NaN) in one line; a work dir in use is refused, also when its lock file was deleted."""
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from ramit_cli.main import main
from ramit_plugin.mm.runtime import WeightsOnlyCheckpointHook
from tests.ramit_plugin.mm.conftest import error_line, generator_weights, names, runner_checkpoint, scalars

# 8 iterations drawing from every random source: crops and flips (Python's random), progressive crops and
# drop-path (torch's generator); a checkpoint and a validation every 3 iterations.
RESUMABLE = ['model.generator.drop_path=0.1', 'model.progressive.iters=[0,5]', 'model.progressive.gt_sizes=[16,32]',
             'model.progressive.batch_sizes=[2,4]', 'default_hooks.checkpoint.interval=3', 'train_cfg.val_interval=3']


def mm_train(config: Path, work_dir: Path, workers: int, *extra: str) -> list:
    """The `ramit mm-train` arguments of a resumable tiny run with ``workers`` data-loader workers."""
    return ['mm-train', str(config), '--work-dir', str(work_dir), *extra, '--cfg-options', *RESUMABLE,
            f'train_dataloader.num_workers={workers}', f'train_dataloader.persistent_workers={workers > 0}']


def killed_at_first_checkpoint(args: list, cwd: Path, work_dir: Path) -> None:
    """Run `ramit mm-train` ``args`` in a process of its own (single-threaded) and SIGKILL it as soon as it has
    saved its first checkpoint: only a real process shows what a kill leaves behind."""
    proc = subprocess.Popen([sys.executable, '-m', 'ramit_cli', *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS='1'))
    # mmengine writes last_checkpoint (the name of the checkpoint it has just written) after the checkpoint.
    last = work_dir / 'last_checkpoint'
    end = time.monotonic() + 300
    while not (last.exists() and last.read_text()) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and last.read_text(), 'the run ended or timed out before its first checkpoint'


def test_a_killed_run_resumed_with_resume_ends_bit_identical(tmp_path, tiny_config, monkeypatch, capsys):
    """Killed (data-loader workers and all) right after its first checkpoint, the run is resumed at once, with
    workers (its last_checkpoint emptied, as a kill while mmengine writes it leaves it) and, from a copy, without:
    both end with the weights of the uninterrupted run, bit for bit."""
    monkeypatch.chdir(tmp_path)
    config = tiny_config(8)
    assert main(mm_train(config, tmp_path / 'full', 0), prog='ramit') == 0
    full = generator_weights(runner_checkpoint(tmp_path / 'full' / 'iter_8.pth'))
    killed = tmp_path / 'killed'
    killed_at_first_checkpoint(mm_train(config, killed, 2), tmp_path, killed)
    assert not (killed / 'iter_8.pth').exists()
    copy = tmp_path / 'copy'
    shutil.copytree(killed, copy)
    (copy / 'last_checkpoint').write_text((killed / 'last_checkpoint').read_text().replace(str(killed), str(copy)))
    # At once: the killed run's orphaned workers still hold its files open for seconds, but no lock.
    (killed / 'last_checkpoint').write_text('')
    capsys.readouterr()
    assert main(mm_train(config, killed, 2, '--resume'), prog='ramit') == 0
    assert not psutil.Process().children()  # its persistent data-loader workers ended with the run
    assert (f"--resume: {killed / 'last_checkpoint'} names no readable checkpoint (it is empty or missing); "
            f'resuming from {killed}/iter_') in capsys.readouterr().err
    assert main(mm_train(config, copy, 0, '--resume'), prog='ramit') == 0
    for work_dir in (killed, copy):
        resumed = generator_weights(runner_checkpoint(work_dir / 'iter_8.pth'))
        assert resumed.keys() == full.keys()
        assert all(torch.equal(full[k], resumed[k]) for k in full), work_dir.name


class Payload:
    """Unpickling this runs a command: what weights_only must refuse."""

    def __reduce__(self):
        return os.system, ('touch pwned',)


def with_nan_weight(source: Path, target: Path, key: str = 'generator.shallow.conv.weight') -> Path:
    """Write ``target``: the Runner checkpoint ``source`` with one NaN in the weight ``key``, saved as a Runner saves
    it (still readable with weights_only: only its weights are damaged, as a diverged run leaves them)."""
    checkpoint = runner_checkpoint(source)
    checkpoint['state_dict'][key].view(-1)[0] = float('nan')
    WeightsOnlyCheckpointHook().before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, target)
    return target


def test_resume_from_a_malicious_damaged_or_nan_checkpoint_is_one_line(tmp_path, tiny_config, tiny_run,
                                                                       tiny_weights, capsys, monkeypatch):
    """Refused before the work dir exists; a NaN checkpoint is refused though torch.load reads it."""
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / 'evil.pth'
    evil.write_bytes(pickle.dumps({'meta': {}, 'state_dict': Payload()}, protocol=2))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    nan = with_nan_weight(tiny_run.work_dir / 'iter_10.pth', tmp_path / 'nan.pth')
    assert runner_checkpoint(nan)['meta']['iter'] == 10
    for path, reason in (
            (evil, 'not a readable mmengine checkpoint (it holds a pickled Python object (posix.system); only tensors '
                   'and plain data are loaded)'),
            (empty, 'not a readable mmengine checkpoint (the file is empty, truncated or corrupted)'),
            (nan, '1 tensor(s) hold NaN or inf values (e.g. shallow.conv.weight): a damaged or diverged checkpoint'),
            (tiny_weights, 'not an mmengine training checkpoint (no meta and state_dict); to start from weights use '
                           'model.pretrained')):
        assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'w'), '--resume', str(path)],
                    prog='ramit') == 2
        assert error_line(capsys) == f'ramit mm-train: error: --resume {path}: {reason}'
    assert not (tmp_path / 'pwned').exists() and not (tmp_path / 'w').exists()


def test_resume_skips_a_newest_checkpoint_with_nan_weights(tmp_path, tiny_run, capsys, monkeypatch):
    """The shared run's work dir with iter_20.pth diverged: --resume says so and continues from iter_10.pth."""
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'work'
    shutil.copytree(tiny_run.work_dir, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_20.pth'))  # mmengine writes absolute paths
    with_nan_weight(tiny_run.work_dir / 'iter_20.pth', work_dir / 'iter_20.pth')
    assert main(['mm-train', str(tiny_run.config), '--work-dir', str(work_dir), '--resume', '--cfg-options',
                 'train_cfg.max_iters=11'], prog='ramit') == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f'--resume: skipping iteration 20: {work_dir}/iter_20.pth: 1 tensor(s) hold NaN or inf values '
                   '(e.g. shallow.conv.weight): a damaged or diverged checkpoint',
                   f'--resume: resuming from {work_dir}/iter_10.pth, the newest usable checkpoint']
    resumed = runner_checkpoint(work_dir / 'iter_11.pth')
    assert resumed['meta']['iter'] == 11
    assert all(torch.isfinite(w).all() for w in generator_weights(resumed).values())
    # Iteration 11 ran twice: in the shared run, and now again from iteration 10's state, with the same lr.
    again = [r for r in scalars(work_dir) if r['iter'] == 11]
    assert len(again) == 2 and again[0]['lr'] == again[1]['lr'] == 2e-3


def test_lq_images_smaller_than_the_patch_are_named(tmp_path, tiny_config, sr_folders, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = (rf"PairedRandomCrop: {re.escape(str(sr_folders['lr']))}/img\d\.png is 24x24, smaller than the LQ "
                r'patch 32x32 \(GT patch 64 / scale 2\); use larger images or a smaller patch')
    argv = ['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
            'train_dataloader.dataset.pipeline.0.gt_patch_size=64']
    assert main([*argv, 'train_dataloader.num_workers=0'], prog='ramit') == 2
    assert re.fullmatch(f'ramit mm-train: error: {expected}', error_line(capsys))
    # From a data-loader worker process the message stays one line (torch re-raises it with the worker's traceback).
    assert main([*argv, 'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=True'],
                prog='ramit') == 2
    assert re.fullmatch(f'ramit mm-train: error: {expected}', error_line(capsys))


def test_a_work_dir_in_use_is_refused(tmp_path, tiny_config, capsys, monkeypatch, lock_holder):
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    holder = lock_holder(work_dir / '.lock')  # as a running `ramit mm-train` holds it
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(work_dir)], prog='ramit') == 2
    assert capsys.readouterr().err == (f'ramit mm-train: error: work dir {work_dir} is in use by a running process '
                                       f'(pid {holder.pid}, lock {work_dir}/.lock); wait for it to finish or stop it '
                                       'first\n')
    assert names(work_dir) == ['.lock']


def test_a_work_dir_in_use_is_refused_when_its_lock_file_was_deleted(tmp_path, tiny_config, capsys, monkeypatch,
                                                                     lock_holder):
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    running = lock_holder(work_dir / '.lock', log=work_dir / 'run.log', unlink=True)
    assert names(work_dir) == ['run.log']  # a new lock file would be free to take
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(work_dir)], prog='ramit') == 2
    assert error_line(capsys) == (f'ramit mm-train: error: work dir {work_dir} is in use by a running process '
                                  f'(pid {running.pid} has files open in {work_dir}); wait for it to finish or stop '
                                  'it first')
    assert names(work_dir) == ['.lock', 'run.log']  # the refused run's empty lock file; no log, no checkpoint
    assert (work_dir / '.lock').read_text() == ''
