"""`basicsr train/test` when data, weights or the disk fail mid-run: one line naming the file, nothing half-written."""
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ramit_cli.main import main
from ramit_plugin.archs import RAMiT


def snapshot(folder: Path) -> dict:
    """Relative path -> SHA-256 of every file below ``folder``."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob('*')
            if p.is_file()}


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def truncated_copy(folder: Path, tmp_path: Path, name: str = '0003.png') -> Path:
    """A copy of ``folder`` whose ``name`` is cut in half: its header (size) is intact, its pixels are not."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[:len(data) // 2])
    return copy


def test_seeded_samples_repeat_exactly_and_a_damaged_one_is_named(tmp_path, sr_data, tiny_options):
    """BasicSR's own PairedImageDataset in the plugin's SeededDataset: a sample's crop and flips follow its seed
    alone; a file basicsr cannot decode ('NoneType' object has no attribute 'astype') is named."""
    from basicsr.data import build_dataset
    from ramit_plugin.basicsr_compat import SeededDataset
    from ramit_plugin.data import DatasetError
    from ramit_plugin.random_state import SampleKey

    lr = truncated_copy(sr_data['lr'], tmp_path)
    opt = dict(tiny_options(sr_data)['datasets']['train'], phase='train', scale=2, dataroot_gt=str(sr_data['hr']),
               dataroot_lq=str(lr), io_backend=dict(type='disk'))
    dataset = SeededDataset(build_dataset(opt))
    index = next(i for i, p in enumerate(dataset.paths) if p['lq_path'].endswith('0000.png'))
    random.seed(1)  # basicsr crops and flips with Python's global generator: its state does not matter
    first = dataset[SampleKey(index, 7)]
    random.seed(2)
    state = random.getstate()
    again = dataset[SampleKey(index, 7)]
    assert random.getstate() == state  # and is left as it was
    other = dataset[SampleKey(index, 8)]
    assert torch.equal(first['lq'], again['lq']) and torch.equal(first['gt'], again['gt'])
    assert not torch.equal(first['lq'], other['lq'])
    bad = next(i for i, p in enumerate(dataset.paths) if p['lq_path'].endswith('0003.png'))
    with pytest.raises(DatasetError) as err:
        dataset[SampleKey(bad, 7)]
    assert str(err.value) == (f"dataset 'tiny': {lr}/0003.png: cannot be read as an image (corrupt file or "
                              'unsupported format)')


def test_a_truncated_training_image_stops_the_run_naming_it(tmp_path, sr_data, tiny_options, options_file,
                                                           run_basicsr):
    lr = truncated_copy(sr_data['lr'], tmp_path)
    opt = tiny_options(sr_data, name='trunc', total_iter=4)
    # Read in a data-loader worker: the error crosses a process and stays one line.
    opt['datasets']['train'].update(dataroot_gt=str(sr_data['hr']), dataroot_lq=str(lr), io_backend=dict(type='disk'),
                                    num_worker_per_gpu=2)
    options_file(tmp_path / 'trunc.yml', opt)
    before = snapshot(lr)
    proc = run_basicsr('train', '-opt', 'trunc.yml', cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert last_line(proc.stderr) == (f"basicsr train: error: dataset 'tiny': {lr}/0003.png: cannot be read as an "
                                      'image (corrupt file or unsupported format)')
    assert 'Traceback' not in proc.stderr
    assert snapshot(lr) == before


def test_basicsr_test_writes_no_image_of_non_finite_outputs(tmp_path, sr_data, tiny_options, options_file,
                                                            run_basicsr):
    net = tiny_options(sr_data)['network_g']
    state = RAMiT(**{k: v for k, v in net.items() if k != 'type'}).state_dict()
    state['shallow.conv.weight'].fill_(float('nan'))
    torch.save(state, tmp_path / 'nan.pth')
    opt = tiny_options(sr_data, name='nantest')
    opt.pop('train')
    opt['datasets'] = dict(test_1=opt['datasets']['val'])
    opt['path']['pretrain_network_g'] = str(tmp_path / 'nan.pth')
    opt['val']['save_img'] = True
    options_file(tmp_path / 'nan.yml', opt)
    proc = run_basicsr('test', '-opt', 'nan.yml', cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    # The first image basicsr tests (in the folder's listing order) is named.
    lr, weights = re.escape(str(sr_data['lr'])), re.escape(str(tmp_path / 'nan.pth'))
    assert re.fullmatch(rf'basicsr test: error: {lr}/\d{{4}}\.png: the output has NaN or inf values \(weights: '
                        rf'{weights}\); stopped before writing any image or metric for it',
                        last_line(proc.stderr)), proc.stderr[-2000:]
    assert not [p for p in (tmp_path / 'results').rglob('*.png')]


DISK_FULL_DRIVER = '''
import errno, sys, torch
from ramit_cli.main import main
saves = []
real_save = torch.save
def save(obj, f, *args, **kwargs):
    """The first checkpoint (network and state) fits, then the disk is full, half-way through a write."""
    saves.append(f)
    if len(saves) <= 2:
        return real_save(obj, f, *args, **kwargs)
    f.write(b'half a checkpoint')
    raise OSError(errno.ENOSPC, 'No space left on device')
torch.save = save
sys.exit(main(['train', '-opt', 'full.yml'], 'basicsr'))
'''


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_file(tmp_path, sr_data, tiny_options,
                                                                               options_file):
    opt = tiny_options(sr_data, name='diskfull', total_iter=4)
    opt['logger'].update(save_checkpoint_freq=2)
    options_file(tmp_path / 'full.yml', opt)
    proc = subprocess.run([sys.executable, '-c', DISK_FULL_DRIVER], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    models = tmp_path / 'experiments' / 'diskfull' / 'models'
    assert last_line(proc.stderr) == (f'basicsr train: error: {models}/net_g_4.pth: cannot be written (No space left '
                                      'on device); nothing was left half-written')
    assert sorted(p.name for p in models.iterdir()) == ['net_g_2.pth']  # complete, no temporary file beside it
    assert torch.load(models / 'net_g_2.pth', weights_only=True)['params'].keys()


def test_an_unwritable_experiments_folder_is_one_line(tmp_path, sr_data, tiny_options, options_file, capsys,
                                                      monkeypatch):
    options_file(tmp_path / 'x.yml', tiny_options(sr_data))
    (tmp_path / 'experiments').write_text('a file where basicsr wants its folder')
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', 'x.yml'], 'basicsr') == 2
    assert capsys.readouterr().err == ('basicsr train: error: experiments: cannot be created as a folder: a file of '
                                       'that name is in the way\n')
    assert (tmp_path / 'experiments').read_text() == 'a file where basicsr wants its folder'
