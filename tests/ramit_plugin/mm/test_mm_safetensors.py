"""`ramit mm-test --checkpoint` takes a `ramit convert` safetensors file and scores it as the .pth it came from."""
import re

import torch

from ramit_cli.main import main
from tests.ramit_plugin.mm.conftest import tiny_network


def test_mm_test_scores_a_converted_checkpoint_as_its_pth(tmp_path, tiny_config, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(tiny_config(1))
    torch.save({'params': tiny_network().state_dict()}, tmp_path / 'net.pth')  # random weights, BasicSR's layout
    assert main(['convert', 'net.pth', 'net.safetensors'], prog='ramit') == 0
    scores = []
    for weights in ('net.pth', 'net.safetensors'):
        assert main(['mm-test', config, '--checkpoint', weights, '--work-dir', f'test_{weights}'], prog='ramit') == 0
        scores.append(re.search(r'PSNR: \S+ SSIM: \S+', capsys.readouterr().out).group())
    assert scores[0] == scores[1]
