"""`ramit mm-train` / `mm-test` bad input: one line naming the file or option, exit status 2, and (where the check
runs before the Runner) nothing created: no work_dirs/, no logs."""
from pathlib import Path

import pytest
import torch

from ramit_cli.main import main
from ramit_plugin.resources import option_file
from tests.ramit_plugin.mm.conftest import TINY_ARGS, error_line, names, tiny_network

# What a damaged checkpoint holds in shallow.conv.weight, and what `ramit` says about it.
DAMAGES = {
    'nan': '1 tensor(s) hold NaN or inf values (e.g. shallow.conv.weight): a damaged or diverged checkpoint',
    'inf': '1 tensor(s) hold NaN or inf values (e.g. shallow.conv.weight): a damaged or diverged checkpoint',
    'int': '1 tensor(s) hold int64 values where RAMiT has floating-point weights (e.g. shallow.conv.weight): a '
           'quantised or damaged checkpoint',
}
# --cfg-options that make a shipped config's generator the tiny one.
TINY_OPTIONS = ['model.generator.variant=RAMiT-1'] + [f'model.generator.{k}={v}'.replace(' ', '')
                                                      for k, v in TINY_ARGS.items()]


def damaged_weights(path: Path, damage: str) -> Path:
    """The tiny x2 network's weights with shallow.conv.weight damaged (a key of DAMAGES), saved at ``path``."""
    weights = tiny_network().state_dict()
    weight = weights['shallow.conv.weight'].clone()
    if damage == 'int':
        weight = weight.round().long()  # as a quantised or badly converted checkpoint holds it
    else:
        weight.view(-1)[0] = float(damage)
    weights['shallow.conv.weight'] = weight
    torch.save(weights, path)
    return path


def test_missing_and_broken_configs_and_checkpoints(tmp_path, tiny_weights, capsys):
    assert main(['mm-train', str(tmp_path / 'nothere.py')], prog='ramit') == 2
    assert error_line(capsys) == f"ramit mm-train: error: config file not found: {tmp_path / 'nothere.py'}"
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    assert main(['mm-test', str(broken), '--checkpoint', str(tiny_weights)], prog='ramit') == 2
    assert error_line(capsys).startswith(f'ramit mm-test: error: cannot read config {broken}: ')
    # The checkpoint is checked with the arguments, before the config is read.
    assert main(['mm-test', str(broken), '--checkpoint', 'w.pth'], prog='ramit') == 2
    assert error_line(capsys) == 'ramit mm-test: error: --checkpoint w.pth: no such file'


@pytest.mark.skipif(torch.cuda.is_available(), reason='slurm runs on CUDA machines')
def test_slurm_launcher_without_cuda_points_to_torchrun(tmp_path, tiny_config, capsys):
    assert main(['mm-train', str(tiny_config(4)), '--launcher', 'slurm'], prog='ramit') == 2
    assert 'needs CUDA; on a CPU-only machine start the processes with torchrun' in error_line(capsys)


@pytest.mark.parametrize('option, message', [
    ('train_cfg.max_iters=-5', 'train_cfg.max_iters: -5 must be a whole number of at least 1'),
    ('train_cfg.val_interval=2.5', 'train_cfg.val_interval: 2.5 must be a whole number of at least 1'),
    ('optim_wrapper.optimizer.lr=1e30', 'optim_wrapper.optimizer.lr: 1e+30 must be a positive learning rate '
                                        '(e.g. 4e-4)'),
    ('model.generator.variant=RAMiT-9', "model.generator: RAMiT: unknown variant 'RAMiT-9'; valid variants: RAMiT, "
                                        'RAMiT-1, RAMiT-slimSR, RAMiT-slimLLE'),
])
@pytest.mark.parametrize('work_dir', ['default', 'given'])
def test_config_values_are_checked_before_anything_is_created(option, message, work_dir, tmp_path, tiny_config,
                                                              capsys, monkeypatch):
    config = str(tiny_config(4))
    monkeypatch.chdir(tmp_path)
    before = names(tmp_path)
    given = ['--work-dir', str(tmp_path / 'w')] if work_dir == 'given' else []  # default: work_dirs/tiny
    assert main(['mm-train', config, *given, '--cfg-options', option], prog='ramit') == 2
    assert error_line(capsys) == f'ramit mm-train: error: {message}'
    assert names(tmp_path) == before


def test_missing_data_folder_is_named(tmp_path, tiny_config, capsys):
    missing = tmp_path / 'missing'
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                 f'train_dataloader.dataset.data_root={missing}'], prog='ramit') == 2
    assert error_line(capsys) == (f'ramit mm-train: error: PairedRestorationDataset: data_prefix.lq: '
                                  f"folder {missing / 'LR'} does not exist")


def test_x3_config_before_the_x2_model_exists_names_the_missing_checkpoint(tmp_path, task_data, monkeypatch, capsys):
    """With its data in place, the x3 config's missing warm-start source is the one line reported."""
    monkeypatch.chdir(tmp_path)
    data = task_data['sr']
    assert main(['mm-train', str(option_file('mmengine_RAMiT_SRx3.py')), '--cfg-options',
                 f'train_dataloader.dataset.data_root={data}', 'train_dataloader.dataset.io_backend=disk',
                 'train_dataloader.dataset.data_prefix.gt=HR', 'train_dataloader.dataset.data_prefix.lq=LR_bicubic/X3',
                 'train_dataloader.dataset.lq_tmpl={}x3', f'val_dataloader.dataset.data_root={data}'],
                prog='ramit') == 2
    assert error_line(capsys) == ('ramit mm-train: error: model.pretrained: '
                                  'work_dirs/mmengine_RAMiT_SRx2/iter_500000.pth: checkpoint not found')


def test_missing_data_is_named_before_the_runner_starts(tmp_path, tiny_config, tiny_weights, capsys, monkeypatch):
    """One line, the path named as missing, and nothing created (no work_dirs/, no logs)."""
    config = str(tiny_config(4))
    monkeypatch.chdir(tmp_path)
    before = names(tmp_path)
    missing = tmp_path / 'DIV2K'
    assert main(['mm-train', config, '--cfg-options', f'train_dataloader.dataset.data_root={missing}',
                 "train_dataloader.dataset.io_backend='lmdb'"], prog='ramit') == 2
    assert error_line(capsys) == (f'ramit mm-train: error: PairedRestorationDataset: data_prefix.lq: '
                                  f"folder {missing / 'LR'} does not exist")
    assert main(['mm-test', config, '--checkpoint', str(tiny_weights), '--cfg-options',
                 f'test_dataloader.dataset.data_root={missing}'], prog='ramit') == 2
    assert error_line(capsys).endswith(f"folder {missing / 'LR'} does not exist")
    assert names(tmp_path) == before


@pytest.mark.parametrize('config, options, network', [
    # A tiny x2 checkpoint into the x3 config (with the tiny generator): the scale differs.
    ('mmengine_RAMiT_SRx3.py', TINY_OPTIONS, 'RAMiT-1 x3 SR (3 channels) with dim=16, depths=(1, 1, 1, 1), '
                                             'num_heads=(2, 2, 2, 2), window_size=4 (2 mismatched keys, '
                                             'e.g. to_target.conv.weight [12, 16, 3, 3] vs network [27, 16, 3, 3])'),
    # The same checkpoint into the shipped x2 config as it is: the network is the full-size RAMiT.
    ('mmengine_RAMiT_SRx2.py', [], 'RAMiT x2 SR (3 channels) (525 mismatched keys, e.g. shallow.conv.weight '
                                   '[16, 3, 3, 3] vs network [64, 3, 3, 3])'),
])
def test_mm_test_checkpoint_that_does_not_fit_is_one_line_and_creates_nothing(config, options, network, tmp_path,
                                                                              tiny_weights, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ['mm-test', str(option_file(config)), '--checkpoint', str(tiny_weights)]
    assert main(argv + (['--cfg-options', *options] if options else []), prog='ramit') == 2
    assert error_line(capsys) == (
        f'ramit mm-test: error: {tiny_weights}: checkpoint does not fit: it looks like RAMiT-1 x2 SR (3 channels) '
        f'with dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4; the network is {network}')
    assert names(tmp_path) == []  # no work_dirs/<config>/ with a log of a run that never ran


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_mm_test_refuses_nan_inf_and_integer_weights_before_the_runner(damage, tmp_path, tiny_config, capsys,
                                                                       monkeypatch):
    config = str(tiny_config(4))
    weights = damaged_weights(tmp_path / f'{damage}.pth', damage)
    monkeypatch.chdir(tmp_path)
    before = names(tmp_path)
    assert main(['mm-test', config, '--checkpoint', str(weights)], prog='ramit') == 2
    captured = capsys.readouterr()
    assert captured.err == f'ramit mm-test: error: {weights}: {DAMAGES[damage]}\n'
    assert 'PSNR' not in captured.out
    assert names(tmp_path) == before


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_pretrained_nan_inf_and_integer_weights_are_refused(damage, tmp_path, tiny_config, capsys):
    weights = damaged_weights(tmp_path / f'{damage}.pth', damage)
    work_dir = tmp_path / 'w'
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(work_dir), '--cfg-options',
                 f'model.pretrained={weights}'], prog='ramit') == 2
    assert error_line(capsys) == f'ramit mm-train: error: model.pretrained: {weights}: {DAMAGES[damage]}'
    assert not list(work_dir.glob('**/*.pth'))  # nothing trained, nothing saved
