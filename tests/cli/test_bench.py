"""`ramit bench` smoke test: JSON keys and internal consistency (no timing assertions)."""
import json

import pytest

from ramit_plugin.cli.bench import main
from ramit_plugin.complexity import count_macs, count_params
from ramit_plugin import RAMiT


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
