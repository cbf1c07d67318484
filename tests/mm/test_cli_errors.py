"""`ramit mm-train` / `mm-test` bad input: one line naming the file or option, exit status 2."""
import pytest
import torch

from ramit_cli.main import main
from ramit_plugin.resources import option_file


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_missing_and_broken_configs(tmp_path, capsys):
    assert main(['mm-train', str(tmp_path / 'nothere.py')], prog='ramit') == 2
    assert error_line(capsys) == f"ramit mm-train: error: config file not found: {tmp_path / 'nothere.py'}"
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    assert main(['mm-test', str(broken), '--checkpoint', 'w.pth'], prog='ramit') == 2
    assert error_line(capsys).startswith(f'ramit mm-test: error: cannot read config {broken}: ')


@pytest.mark.skipif(torch.cuda.is_available(), reason='slurm runs on CUDA machines')
def test_slurm_launcher_without_cuda_points_to_torchrun(tmp_path, tiny_config, capsys):
    assert main(['mm-train', str(tiny_config(4)), '--launcher', 'slurm'], prog='ramit') == 2
    assert 'needs CUDA; on a CPU-only machine start the processes with torchrun' in error_line(capsys)


def test_unknown_variant_and_missing_data_folder(tmp_path, tiny_config, capsys):
    config = str(tiny_config(4))
    assert main(['mm-train', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                 'model.generator.variant=RAMiT-9'], prog='ramit') == 2
    assert error_line(capsys).startswith("ramit mm-train: error: RAMiT: unknown variant 'RAMiT-9'; valid variants:")
    missing = tmp_path / 'missing'
    assert main(['mm-train', config, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
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


def test_missing_data_is_named_before_the_runner_starts(tmp_path, tiny_config, capsys, monkeypatch):
    """One line, the path named as missing, and nothing created (no work_dirs/, no logs)."""
    config = str(tiny_config(4))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    missing = tmp_path / 'DIV2K'
    assert main(['mm-train', config, '--cfg-options', f'train_dataloader.dataset.data_root={missing}',
                       "train_dataloader.dataset.io_backend='lmdb'"], prog='ramit') == 2
    assert error_line(capsys) == (f'ramit mm-train: error: PairedRestorationDataset: data_prefix.lq: '
                                  f"folder {missing / 'LR'} does not exist")
    assert main(['mm-test', config, '--checkpoint', 'w.pth', '--cfg-options',
                         f'test_dataloader.dataset.data_root={missing}'], prog='ramit') == 2
    assert error_line(capsys).endswith(f"folder {missing / 'LR'} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
