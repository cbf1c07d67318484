"""`basicsr train/test` when data, weights or the disk fail: one line naming the file, nothing half-written.

The commands run in this process (``basicsr`` fixture) unless only a real process shows it."""
import errno
import io
import random
import re
import shutil
from pathlib import Path

import psutil
import pytest
import torch

from ramit.datasets import DatasetError
from ramit.training import SampleKey
from ramit_plugin.pipeline import SeededDataset
from tests.ramit_plugin.conftest import last_line, outputs, snapshot, tiny_network


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


def test_a_truncated_training_image_stops_the_run_naming_it(tmp_path, sr_data, tiny_options, options_file, basicsr):
    lr = truncated_copy(sr_data['lr'], tmp_path)
    opt = tiny_options(sr_data, name='trunc', total_iter=4)
    # Read in data-loader workers: the error crosses a process and stays one line.
    opt['datasets']['train'].update(dataroot_gt=str(sr_data['hr']), dataroot_lq=str(lr), io_backend=dict(type='disk'),
                                    num_worker_per_gpu=2)
    options_file(tmp_path / 'trunc.yml', opt)
    before = snapshot(lr)
    result = basicsr('train', '-opt', 'trunc.yml', cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert last_line(result.stderr) == (f"basicsr train: error: dataset 'tiny': {lr}/0003.png: cannot be read as an "
                                        'image (corrupt file or unsupported format)')
    assert 'Traceback' not in result.stderr
    assert snapshot(lr) == before
    # Its workers are stopped with the run, not left to a later garbage collection (which waits 5 s for each).
    assert not psutil.Process().children()


def damaged_weights(opt: dict, path: Path, damage: str) -> str:
    """Save the tiny network's weights to ``path`` with ``damage`` ('nan': one tensor NaN; 'int': every float tensor
    as int32); returns the first damaged key."""
    torch.manual_seed(0)
    state = tiny_network(opt).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    if damage == 'nan':
        state[key].fill_(float('nan'))
    else:
        state = {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(dict(params=state), path)
    return key


@pytest.mark.parametrize('command, damage', [('train', 'nan'), ('train', 'int'), ('test', 'nan')])
def test_unusable_pretrained_weights_are_refused_before_anything_is_written(command, damage, tmp_path, sr_data,
                                                                            tiny_options, options_file, basicsr):
    opt = tiny_options(sr_data, name='damaged')
    key = damaged_weights(opt, tmp_path / 'damaged.pth', damage)
    opt['path']['pretrain_network_g'] = str(tmp_path / 'damaged.pth')
    if command == 'test':
        opt.pop('train')
        opt['datasets'] = dict(test_1=opt['datasets']['val'])
        opt['val']['save_img'] = True
    options_file(tmp_path / 'x.yml', opt)
    result = basicsr(command, '-opt', 'x.yml', cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    problem = (re.escape('1 tensor(s) hold NaN or inf values') if damage == 'nan' else
               r'\d+ tensor\(s\) hold int32 values where RAMiT has floating-point weights')
    assert re.fullmatch(rf'basicsr {command}: error: {re.escape(str(tmp_path / "damaged.pth"))}: {problem} \(e\.g\. '
                        rf'{re.escape(key)}\): a (damaged or diverged|quantised or damaged) checkpoint',
                        last_line(result.stderr)), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and outputs(tmp_path) == []


def test_basicsr_test_writes_no_image_of_non_finite_outputs(tmp_path, sr_data, tiny_options, options_file, basicsr):
    """Finite weights whose output overflows (a diverged network): stopped before writing an image or a metric."""
    opt = tiny_options(sr_data, name='inftest')
    state = tiny_network(opt).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)  # the first convolution
    state[key].fill_(1e38)
    torch.save(state, tmp_path / 'huge.pth')
    opt.pop('train')
    opt['datasets'] = dict(test_1=opt['datasets']['val'])
    opt['path']['pretrain_network_g'] = str(tmp_path / 'huge.pth')
    opt['val']['save_img'] = True
    options_file(tmp_path / 'huge.yml', opt)
    result = basicsr('test', '-opt', 'huge.yml', cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    # The first image basicsr tests (in the folder's listing order) is named.
    lr, weights = re.escape(str(sr_data['lr'])), re.escape(str(tmp_path / 'huge.pth'))
    assert re.fullmatch(rf'basicsr test: error: {lr}/\d{{4}}\.png: the output has NaN or inf values \(weights: '
                        rf'{weights}\); stopped before writing any image or metric for it',
                        last_line(result.stderr)), result.stderr[-2000:]
    assert not list((tmp_path / 'results').rglob('*.png'))


def test_a_full_disk_during_a_checkpoint_with_ema_is_one_line_and_leaves_no_partial_file(
        tmp_path, sr_data, tiny_options, options_file, basicsr, monkeypatch):
    """The first checkpoint (network with EMA, and training state) fits, then the disk is full half-way through
    writing the next network file."""
    import ramit.checkpoint

    written = []

    class FullDisk(io.FileIO):
        """A file that takes half of what is written, then fails as a full disk does."""

        def write(self, data) -> int:
            super().write(bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')

    def open_(path, mode='r', *args, **kwargs):
        if 'w' in mode:
            written.append(path)
            if len(written) > 2:
                return FullDisk(path, 'wb')
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(ramit.checkpoint, 'open', open_, raising=False)
    opt = tiny_options(sr_data, name='diskfull', total_iter=4, ema_decay=0.9)
    opt['logger'].update(save_checkpoint_freq=2)
    options_file(tmp_path / 'full.yml', opt)
    result = basicsr('train', '-opt', 'full.yml', cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'diskfull'
    assert last_line(result.stderr) == (f"basicsr train: error: {exp / 'models' / 'net_g_4.pth'}: cannot be written "
                                        '(No space left on device); nothing was left half-written')
    assert 'Traceback' not in result.stderr and len(written) == 3
    # Complete files only: no temporary file beside them.
    assert sorted(p.name for p in (exp / 'models').iterdir()) == ['net_g_2.pth']
    assert sorted(p.name for p in (exp / 'training_states').iterdir()) == ['2.state']
    saved = torch.load(exp / 'models' / 'net_g_2.pth', weights_only=True)
    assert saved['params'].keys() == saved['params_ema'].keys()


def test_an_unwritable_experiments_folder_is_one_line(tmp_path, sr_data, tiny_options, options_file, basicsr):
    options_file(tmp_path / 'x.yml', tiny_options(sr_data))
    (tmp_path / 'experiments').write_text('a file where basicsr wants its folder')
    result = basicsr('train', '-opt', 'x.yml', cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f"basicsr train: error: {tmp_path / 'experiments'}: cannot be created as a folder: a "
                             'file of that name is in the way\n')
    assert (tmp_path / 'experiments').read_text() == 'a file where basicsr wants its folder'


def test_an_lmdb_truncated_while_training_is_named_and_auto_resume_says_why_it_cannot_go_on(
        tmp_path, sr_data, tiny_options, options_file, basicsr, run_basicsr, monkeypatch):
    """Another program truncates data.mdb while the run reads it: reading it would kill the process with SIGBUS
    (LMDB maps the file); the run stops with one line naming the database instead. `--auto_resume` then says what
    is wrong before anything starts. It runs as its own process: py-lmdb opens a database once per process, and
    this one still maps the truncated file."""
    from basicsr.data.paired_image_dataset import PairedImageDataset

    lmdb_copy = tmp_path / 'LR.lmdb'
    shutil.copytree(sr_data['lr_lmdb'], lmdb_copy)
    data_file = lmdb_copy / 'data.mdb'
    size = data_file.stat().st_size
    reads = []
    real_getitem = PairedImageDataset.__getitem__

    def getitem(self, index):
        sample = real_getitem(self, index)
        reads.append(index)
        if len(reads) == 10:  # during the third iteration, after the checkpoint of the second
            with open(data_file, 'r+b') as f:
                f.truncate(size // 2)
        return sample

    monkeypatch.setattr(PairedImageDataset, '__getitem__', getitem)
    opt = tiny_options(sr_data, name='shrunk', total_iter=6)
    opt['datasets']['train']['dataroot_lq'] = str(lmdb_copy)
    opt['logger'].update(save_checkpoint_freq=2)
    options_file(tmp_path / 'shrunk.yml', opt)
    result = basicsr('train', '-opt', 'shrunk.yml', cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert last_line(result.stderr) == (
        f'basicsr train: error: {data_file} shrank from {size} to {size // 2} bytes while the run read it (truncated '
        'or replaced by another program?); stopped before reading it; restore the file, then resume')
    assert 'Traceback' not in result.stderr and 'Bus error' not in result.stderr
    assert len(reads) == 10
    assert sorted(p.name for p in (tmp_path / 'experiments' / 'shrunk' / 'models').iterdir()) == ['net_g_2.pth']

    proc = run_basicsr('train', '-opt', 'shrunk.yml', '--auto_resume', cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (f'basicsr train: error: shrunk.yml: datasets:train:dataroot_lq: {data_file} is truncated: '
                           f'{size // 2} bytes, but the database uses {size} (an interrupted copy or download?); copy '
                           'or recreate it\n')
