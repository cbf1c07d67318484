"""`ramit mm-test --checkpoint` takes a `ramit convert` safetensors file and scores it as the .pth it came from."""
import re

import torch

from ramit_cli.main import main
from ramit_plugin import RAMiT


def test_mm_test_scores_a_converted_checkpoint_as_its_pth(tmp_path, tiny_config, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(tiny_config(1))
    torch.manual_seed(0)  # the tiny config's generator (tests/mm/conftest.py), random weights
    net = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
    torch.save({'params': net.state_dict()}, tmp_path / 'net.pth')
    assert main(['convert', 'net.pth', 'net.safetensors'], prog='ramit') == 0
    scores = []
    for weights in ('net.pth', 'net.safetensors'):
        assert main(['mm-test', config, '--checkpoint', weights, '--work-dir', f'test_{weights}'], prog='ramit') == 0
        scores.append(re.search(r'PSNR: \S+ SSIM: \S+', capsys.readouterr().out).group())
    assert scores[0] == scores[1]
