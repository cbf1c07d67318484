"""`ramit mm-test`: the published RAMiT-1 x2 weights reproduce the paper's Set5 numbers through the Runner."""
import re

import pytest

from ramit_cli.main import main
from ramit_plugin.resources import option_file

CONFIG = str(option_file('mmengine_RAMiT_SRx2.py'))


def run_mm_test(tmp_path, weights: str, set5, monkeypatch) -> int:
    """`ramit mm-test` with the shipped config on ../shared's Set5, RAMiT-1, in tmp_path."""
    monkeypatch.chdir(tmp_path)
    return main(['mm-test', CONFIG, '--checkpoint', weights, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                 'model.generator.variant=RAMiT-1', f'test_dataloader.dataset.data_root={set5}',
                 'test_dataloader.num_workers=0'], prog='ramit')


def test_raw_published_checkpoint_reproduces_set5_psnr_and_ssim(reference_dir, datasets_dir, tmp_path, monkeypatch,
                                                                capsys):
    weights = str(reference_dir / 'weights' / 'RAMiT-1_X2.pth')
    assert run_mm_test(tmp_path, weights, datasets_dir / 'Set5', monkeypatch) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    psnr, ssim = map(float, re.fullmatch(r'PSNR: (\S+) SSIM: (\S+)', line).groups())
    assert psnr == pytest.approx(38.184, abs=0.01)
    assert ssim == pytest.approx(0.9612, abs=0.0005)


def test_checkpoint_of_another_scale_is_a_one_line_error(reference_dir, datasets_dir, tmp_path, monkeypatch,
                                                          capsys):
    weights = str(reference_dir / 'weights' / 'RAMiT-1_X4.pth')
    assert run_mm_test(tmp_path, weights, datasets_dir / 'Set5', monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'RAMiT-1_X4.pth: checkpoint does not fit: it looks like RAMiT-1 x4 SR' in err[0]
    assert 'the network is RAMiT-1 x2 SR' in err[0]
