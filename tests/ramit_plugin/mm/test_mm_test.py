"""`ramit mm-test`: the published RAMiT-1 x2/x3/x4 weights reproduce the paper's Set5 numbers through the Runner."""
import re

import pytest

from ramit_cli.main import main
from ramit_plugin.resources import option_file


def run_mm_test(tmp_path, weights: str, set5, monkeypatch, scale: int = 2) -> int:
    """`ramit mm-test` with the shipped config of ``scale`` on ../shared's Set5, RAMiT-1, in tmp_path."""
    monkeypatch.chdir(tmp_path)
    config = str(option_file(f'mmengine_RAMiT_SRx{scale}.py'))
    return main(['mm-test', config, '--checkpoint', weights, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                 'model.generator.variant=RAMiT-1', f'test_dataloader.dataset.data_root={set5}',
                 'test_dataloader.num_workers=0'], prog='ramit')


# The paper's Set5 PSNR-Y / SSIM-Y of RAMiT-1 (crop border = scale).
PAPER_SET5 = {2: (38.184, 0.9612), 3: (34.618, 0.9292), 4: (32.537, 0.8987)}


@pytest.mark.parametrize('scale', sorted(PAPER_SET5))
def test_raw_published_checkpoint_reproduces_set5_psnr_and_ssim(scale, reference_dir, datasets_dir, tmp_path,
                                                                monkeypatch, capsys):
    # The x3/x4 configs' warm-start source (model.pretrained) does not exist here: mm-test must not need it.
    weights = str(reference_dir / 'weights' / f'RAMiT-1_X{scale}.pth')
    assert run_mm_test(tmp_path, weights, datasets_dir / 'Set5', monkeypatch, scale) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    psnr, ssim = map(float, re.fullmatch(r'PSNR: (\S+) SSIM: (\S+)', line).groups())
    assert psnr == pytest.approx(PAPER_SET5[scale][0], abs=0.01)
    assert ssim == pytest.approx(PAPER_SET5[scale][1], abs=0.0005)


def test_checkpoint_of_another_scale_is_a_one_line_error(reference_dir, datasets_dir, tmp_path, monkeypatch, capsys):
    weights = str(reference_dir / 'weights' / 'RAMiT-1_X4.pth')
    assert run_mm_test(tmp_path, weights, datasets_dir / 'Set5', monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'RAMiT-1_X4.pth: checkpoint does not fit: it looks like RAMiT-1 x4 SR' in err[0]
    assert 'the network is RAMiT-1 x2 SR' in err[0]
