"""`ramit bench` smoke tests: JSON keys and internal consistency (no timing assertions)."""
import json
from typing import Callable

import pytest
import torch

from ramit import RAMiT
from ramit.complexity import count_macs, count_params

pytestmark = pytest.mark.usefixtures('onnx_cache')  # the onnxruntime backend exports: into the session's cache


@pytest.fixture
def bench(ramit) -> Callable[..., int]:
    """`ramit bench ARGV` in this process; returns the exit status."""
    return lambda *argv: ramit('bench', *map(str, argv))


def test_json_report_of_every_path_and_backend(capsys, bench):
    assert bench('--variant', 'RAMiT-slimLLE', '--task', 'lle', '--sizes', '24,40', '--repeats', '2', '--warmup', '0',
                 '--threads', '1', '--json') == 0
    report = json.loads(capsys.readouterr().out)
    net = RAMiT('RAMiT-slimLLE', 'lle')
    assert report['params'] == count_params(net) == 358243
    assert (report['variant'], report['task'], report['scale'], report['threads']) == ('RAMiT-slimLLE', 'lle', 1, 1)
    assert [r['size'] for r in report['results']] == [24, 40]
    for row in report['results']:
        assert row['macs'] == count_macs(net, row['size'], row['size'])
        assert row['baseline'] == 'reference'
        for path in ('reference', 'fast', 'onnxruntime'):  # --backends torch,onnxruntime by default
            r = row[path]
            assert r['repeats'] == 2 and 0 < r['min_s'] <= r['median_s']
            assert r['images_per_s'] == pytest.approx(1 / r['median_s'])
            assert r['peak_mib'] is None if path == 'onnxruntime' else r['peak_mib'] is None or r['peak_mib'] >= 0
        for path in ('fast', 'onnxruntime'):
            assert row[f'speedup_{path}'] == pytest.approx(row['reference']['median_s'] / row[path]['median_s'])
    # Both sizes pad to 32 and 64: the larger costs 4x the multiply-adds.
    assert report['results'][1]['macs'] == 4 * report['results'][0]['macs']


def test_table_output_and_errors(capsys, bench):
    assert bench('--variant', 'RAMiT-slimLLE', '--task', 'lle', '--sizes', '16', '--repeats', '1', '--warmup', '0',
                 '--no-reference', '--backends', 'torch') == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('# ') and 'torch ' + torch.__version__ in out[0]
    macs = count_macs(RAMiT('RAMiT-slimLLE', 'lle'), 16, 16)
    assert out[1] == '# RAMiT-slimLLE low-light enhancement (3 channels): 358,243 parameters; fp32, batch 1'
    assert out[2] == f'16x16: {macs / 1e9:.2f} G multiply-adds'
    cases = [line.split()[0] for line in out[3:]]
    assert cases == ['fast']  # no reference, no onnxruntime
    assert bench('--sizes', 'abc') == 2
    assert capsys.readouterr().err == ('ramit bench: error: --sizes abc: needs integers from 1 to 8192, e.g. '
                                       '128,256\n')


def test_any_checkpoint_can_be_benchmarked(tmp_path, capsys, bench):
    net = RAMiT('RAMiT-1', 'sr', 3, dim=16, depths=(1, 1, 1, 1), window_size=4)
    torch.save({'params_ema': net.state_dict()}, tmp_path / 'custom.pth')
    assert bench('--weights', tmp_path / 'custom.pth', '--sizes', '16', '--repeats', '1', '--warmup', '0',
                 '--threads', '1', '--backends', 'torch', '--json') == 0
    report = json.loads(capsys.readouterr().out)
    assert (report['variant'], report['task'], report['scale'], report['params']) == ('RAMiT-1', 'sr', 3,
                                                                                      count_params(net))
    assert report['results'][0]['macs'] == count_macs(net, 16, 16)


def test_training_steps_report_every_case_and_comparable_loss_curves(tmp_path, capsys, bench):
    """--train: reference and fast x float32/bf16; same init and batches, so the loss curves agree closely (a tiny
    low-light network: what is tested is the report, the same for any size)."""
    torch.manual_seed(0)
    tiny = RAMiT('RAMiT', 'lle', dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4,
                 fuse_expand_groups=1)
    torch.save(tiny.state_dict(), tmp_path / 'tiny.pth')
    assert bench('--weights', tmp_path / 'tiny.pth', '--task', 'lle', '--train', '--batch', '2', '--patch', '16',
                 '--steps', '3', '--warmup', '1', '--amp', 'none,bf16', '--threads', '1', '--json') == 0
    report = json.loads(capsys.readouterr().out)
    assert [r['case'] for r in report['train']] == ['reference fp32', 'reference bf16', 'fast fp32', 'fast bf16']
    first = report['train'][0]
    for row in report['train']:
        assert len(row['losses']) == 4 and all(0 < v < 1 for v in row['losses'])
        assert row['samples_per_s'] == pytest.approx(2 / (row['ms_per_step'] / 1e3))
        assert row['speedup'] == pytest.approx(first['ms_per_step'] / row['ms_per_step'])
    assert report['train'][2]['loss_deviation'] < 1e-4  # fast fp32 = reference fp32 up to rounding
    assert report['train'][1]['loss_deviation'] < 0.02  # bf16 autocast tracks float32
    assert report['environment']['device'] and report['environment']['torch'] == torch.__version__


def test_training_options_are_checked(capsys, bench):
    assert bench('--train', '--amp', 'fp8') == 2
    assert 'ramit bench: error: --amp fp8: give a comma-separated list of none, bf16, fp16' in capsys.readouterr().err
    assert bench('--train', '--bf16') == 2
    assert 'training steps take --amp bf16/fp16' in capsys.readouterr().err


def test_data_pipeline_against_synthetic_batches(tmp_path, capsys, bench, ramit, image_file):
    """--data: the train dataloader of a BasicSR option file (LMDB pairs made by `ramit make-lmdb`), alone and
    feeding the fast path."""
    import yaml

    for side, size in (('hr', 64), ('lr', 32)):
        folder = tmp_path / side
        folder.mkdir()
        for i in range(4):
            image_file(folder / f'{i}.png', size, size, 3, i)
        assert ramit('make-lmdb', '--input', str(folder), '--output', str(tmp_path / f'{side}.lmdb'), '--n-thread',
                     '1') == 0
    opt = dict(scale=2, manual_seed=0, datasets=dict(train=dict(
        name='t', type='PairedImageDataset', dataroot_gt=str(tmp_path / 'hr.lmdb'),
        dataroot_lq=str(tmp_path / 'lr.lmdb'),
        io_backend=dict(type='lmdb'), gt_size=32, use_hflip=True, use_rot=True, num_worker_per_gpu=0,
        batch_size_per_gpu=2, dataset_enlarge_ratio=1)))
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    capsys.readouterr()
    assert bench('--variant', 'RAMiT-slimLLE', '--task', 'sr', '--scale', '2', '--train', '--batch', '2', '--patch',
                 '16', '--steps', '2', '--warmup', '1', '--amp', 'none', '--no-reference', '--threads', '1',
                 '--data', tmp_path / 'opt.yml', '--json') == 0
    data = json.loads(capsys.readouterr().out)['data']
    assert (data['batch'], data['lq_patch']) == (2, [16, 16])
    assert data['loader_ms_per_batch'] > 0 and data['step_ms_real_data'] > 0 and data['step_ms_synthetic'] > 0


def test_ntire_protocol_on_whole_images(reference_dir, datasets_dir, capsys, bench):
    weights = reference_dir / 'weights' / 'RAMiT-slimSR_X4.pth'
    images = datasets_dir / 'Set5' / 'LR_bicubic' / 'X4'
    assert bench('--weights', weights, '--protocol', 'ntire', '--images', images, '--warmup', '0',
                 '--threads', '1') == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith('# ') and 'torch ' + torch.__version__ in out[0]
    assert 'RAMiT-slimSR x4 SR (3 channels), NTIRE Efficient-SR protocol (float32, eager, wall clock)' in out[1]
    row = out[-1].split('|')
    assert row[1].strip().startswith('5 (') and float(row[2]) > 0
    net = RAMiT('RAMiT-slimSR', 'sr', 4)
    assert float(row[5]) == round(count_macs(net, 256, 256) / 1e9, 2) \
        and float(row[6]) == round(count_params(net) / 1e6, 3)
    assert bench('--protocol', 'ntire') == 2
    assert 'needs --images DIR' in capsys.readouterr().err


def test_half_precisions_and_compiled_latency(capsys, compile_without_inductor, tmp_path, bench):
    """--bf16 / --half run on the CPU too; --compile times the compiled fast path."""
    torch.manual_seed(0)
    tiny = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
    torch.save(tiny.state_dict(), tmp_path / 'tiny.pth')
    assert bench('--weights', tmp_path / 'tiny.pth', '--sizes', '32', '--repeats', '2', '--warmup', '1',
                 '--threads', '1', '--compile', '--backends', 'torch', '--json') == 0
    row = json.loads(capsys.readouterr().out)['results'][0]
    assert row['compiled']['repeats'] == 2 and row['speedup_compiled'] > 0
    assert len(compile_without_inductor) == 1
    for flag in ('--bf16', '--half'):
        assert bench('--weights', tmp_path / 'tiny.pth', '--sizes', '16', '--repeats', '1', '--warmup', '0',
                     '--threads', '1', '--backends', 'torch', flag, '--json') == 0
        report = json.loads(capsys.readouterr().out)
        assert report['dtype'] == {'--bf16': 'bf16', '--half': 'fp16'}[flag]
        assert report['results'][0]['macs'] == count_macs(tiny, 16, 16)
