"""`ramit bench` smoke test: JSON keys and internal consistency (no timing assertions)."""
import json

import pytest
import torch

from ramit_cli.main import main as ramit
from ramit_plugin import RAMiT
from ramit_plugin.complexity import count_macs, count_params


def main(argv):
    """`ramit bench ARGV` in this process; returns the exit status."""
    return ramit(['bench', *argv], prog='ramit')


def test_json_report(capsys):
    assert main(['--variant', 'RAMiT-slimLLE', '--task', 'lle', '--sizes', '24,40', '--repeats', '2',
                 '--warmup', '0', '--threads', '1', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    net = RAMiT('RAMiT-slimLLE', 'lle')
    assert report['params'] == count_params(net) == 358243
    assert (report['variant'], report['task'], report['scale'], report['threads']) == ('RAMiT-slimLLE', 'lle', 1, 1)
    assert [r['size'] for r in report['results']] == [24, 40]
    for row in report['results']:
        assert row['macs'] == count_macs(net, row['size'], row['size'])
        for path in ('reference', 'fast'):
            r = row[path]
            assert r['repeats'] == 2 and 0 < r['min_s'] <= r['median_s']
            assert r['images_per_s'] == pytest.approx(1 / r['median_s'])
            assert r['peak_mib'] is None or r['peak_mib'] >= 0
        assert row['speedup_fast'] == pytest.approx(row['reference']['median_s'] / row['fast']['median_s'])
    # Both sizes pad to 32 and 64: the larger costs 4x the multiply-adds.
    assert report['results'][1]['macs'] == 4 * report['results'][0]['macs']


def test_table_output_and_errors(capsys):
    assert main(['--variant', 'RAMiT-slimLLE', '--task', 'lle', '--sizes', '16', '--repeats', '1', '--warmup', '0',
                 '--no-reference']) == 0
    out = capsys.readouterr().out
    assert '16x16:' in out and 'fast' in out and 'reference' not in out.split('\n')[1]
    assert main(['--sizes', 'abc']) == 2
    assert main(['--half']) == 2
    assert '--half needs --device cuda' in capsys.readouterr().err


def test_any_checkpoint_can_be_benchmarked(tmp_path, capsys):
    net = RAMiT('RAMiT-1', 'sr', 3, dim=16, depths=(1, 1, 1, 1), window_size=4)
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'custom.pth')
    assert main(['--weights', str(tmp_path / 'custom.pth'), '--sizes', '16', '--repeats', '1', '--warmup', '0',
                 '--threads', '1', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['variant'], report['task'], report['scale'], report['params']) == ('RAMiT-1', 'sr', 3,
                                                                                      count_params(net))
    assert report['results'][0]['macs'] == count_macs(net, 16, 16)
