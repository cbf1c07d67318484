"""`ramit mm-train` / `mm-test` bad input: one line naming the file or option, exit status 2."""
import pytest
import torch

from ramit_cli.main import main


def train_main(argv, prog):
    """`ramit mm-train ARGV` in this process; returns the exit status."""
    return main(['mm-train', *argv], prog=prog.split()[0])


def mm_test_main(argv, prog):
    """`ramit mm-test ARGV` in this process; returns the exit status."""
    return main(['mm-test', *argv], prog=prog.split()[0])


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_missing_and_broken_configs(tmp_path, capsys):
    assert train_main([str(tmp_path / 'nothere.py')], prog='ramit mm-train') == 2
    assert error_line(capsys) == f"ramit mm-train: error: config file not found: {tmp_path / 'nothere.py'}"
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')
    assert mm_test_main([str(broken), '--checkpoint', 'w.pth'], prog='ramit mm-test') == 2
    assert error_line(capsys).startswith(f'ramit mm-test: error: cannot read config {broken}: ')


@pytest.mark.skipif(torch.cuda.is_available(), reason='slurm runs on CUDA machines')
def test_slurm_launcher_without_cuda_points_to_torchrun(tmp_path, tiny_config, capsys):
    assert train_main([str(tiny_config(4)), '--launcher', 'slurm'], prog='ramit mm-train') == 2
    assert 'needs CUDA; on a CPU-only machine start the processes with torchrun' in error_line(capsys)


def test_unknown_variant_and_missing_data_folder(tmp_path, tiny_config, capsys):
    config = str(tiny_config(4))
    assert train_main([config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', 'model.generator.variant=RAMiT-9'],
                      prog='ramit mm-train') == 2
    assert error_line(capsys).startswith("ramit mm-train: error: RAMiT: unknown variant 'RAMiT-9'; valid variants:")
    missing = tmp_path / 'missing'
    assert train_main([config, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                       f'train_dataloader.dataset.data_root={missing}'], prog='ramit mm-train') == 2
    assert error_line(capsys) == (f'ramit mm-train: error: PairedRestorationDataset: data_prefix.lq: '
                                  f"folder {missing / 'LR'} does not exist")


def test_missing_data_is_named_before_the_runner_starts(tmp_path, tiny_config, capsys, monkeypatch):
    """One line, the path named as missing, and nothing created (no work_dirs/, no logs)."""
    config = str(tiny_config(4))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    missing = tmp_path / 'DIV2K'
    assert train_main([config, '--cfg-options', f'train_dataloader.dataset.data_root={missing}',
                       "train_dataloader.dataset.io_backend='lmdb'"], prog='ramit mm-train') == 2
    assert error_line(capsys) == (f'ramit mm-train: error: PairedRestorationDataset: data_prefix.lq: '
                                  f"folder {missing / 'LR'} does not exist")
    assert mm_test_main([config, '--checkpoint', 'w.pth', '--cfg-options',
                         f'test_dataloader.dataset.data_root={missing}'], prog='ramit mm-test') == 2
    assert error_line(capsys).endswith(f"folder {missing / 'LR'} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
