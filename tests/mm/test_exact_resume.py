"""`ramit mm-train --resume` after a SIGKILL continues exactly (bit-identical weights); what it refuses in one line."""
import os
import pickle
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


def test_a_killed_run_resumed_with_resume_ends_bit_identical(tmp_path, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(8)
    assert main(mm_train(config, tmp_path / 'full', 0), prog='ramit') == 0
    full = generator_weights(tmp_path / 'full' / 'iter_8.pth')
    for workers in (0, 2):
        work_dir = tmp_path / f'cut{workers}'
        proc = subprocess.Popen([sys.executable, '-m', 'ramit_cli', *mm_train(config, work_dir, workers)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, OMP_NUM_THREADS='1'))
        # mmengine writes last_checkpoint right after the checkpoint it names.
        end = time.monotonic() + 120
        while not (work_dir / 'last_checkpoint').exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = (work_dir / 'last_checkpoint').read_text().strip()
        assert saved.endswith(('iter_3.pth', 'iter_6.pth')) and not (work_dir / 'iter_8.pth').exists()
        assert main(mm_train(config, work_dir, workers, '--resume'), prog='ramit') == 0
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
    for workers in (0, 2):  # from a worker process too, the message stays one line
        assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                     'train_dataloader.dataset.pipeline.0.gt_patch_size=64', f'train_dataloader.num_workers={workers}',
                     f'train_dataloader.persistent_workers={workers > 0}'], prog='ramit') == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1, err
        assert err.startswith(f"ramit mm-train: error: PairedRandomCrop: {sr_folders['lr']}/img"), err
        assert err.endswith(' is 24x24, smaller than the LQ patch 32x32 (GT patch 64 / scale 2); use larger images or '
                            'a smaller patch\n')


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
