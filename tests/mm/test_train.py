"""`ramit mm-train`: a tiny RAMiT trains with mmengine's Runner: saves, resumes, keeps an EMA, runs on 2 ranks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ramit_plugin.mm  # noqa: F401  (allows the checkpoints' numpy/HistoryBuffer globals for weights_only)
from ramit_cli.main import main
from ramit.checkpoint import read_checkpoint


def scalars(work_dir: Path) -> list:
    """Every training record (iter, lr, loss) the LocalVisBackend wrote under ``work_dir``, by iteration."""
    records = []
    for path in work_dir.glob('*/vis_data/scalars.json'):
        records += [r for r in map(json.loads, path.read_text().splitlines()) if 'loss' in r]
    return sorted(records, key=lambda r: r['iter'])


def test_train_20_iterations_saves_and_resumes_at_the_right_iteration(tmp_path, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(10)
    work_dir = tmp_path / 'work'
    assert main(['mm-train', str(config), '--work-dir', str(work_dir)], prog='ramit') == 0
    checkpoint = work_dir / 'iter_10.pth'
    assert checkpoint.is_file() and (work_dir / 'last_checkpoint').read_text().strip() == str(checkpoint)
    # mmengine itself loads it with torch.load's weights_only default; so must anyone else.
    assert torch.load(checkpoint, map_location='cpu')['meta']['iter'] == 10

    assert main(['mm-train', str(config), '--work-dir', str(work_dir), '--resume',
                 '--cfg-options', 'train_cfg.max_iters=20', 'train_cfg.val_interval=20'], prog='ramit') == 0
    records = scalars(work_dir)
    assert [r['iter'] for r in records] == list(range(1, 21))  # the resumed run logged 11..20, nothing twice
    lrs = {r['iter']: r['lr'] for r in records}
    # Warm-up 1e-3 -> 2e-3 over 5 iterations, halved after 15: the restored schedulers continue, not restart.
    assert (lrs[1], lrs[11], lrs[15], lrs[16], lrs[20]) == (1e-3, 2e-3, 2e-3, 1e-3, 1e-3)
    losses = [r['loss'] for r in records]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    final = torch.load(work_dir / 'iter_20.pth', map_location='cpu')
    assert final['meta']['iter'] == 20
    assert set(final['message_hub']['log_scalars']) >= {'train/loss', 'train/lr'}


def test_two_process_cpu_run_with_torchrun(tmp_path, tiny_config):
    config = tiny_config(4)
    work_dir = tmp_path / 'work'
    # --standalone: a local rendezvous on a free port.
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
           '-m', 'ramit_cli', 'mm-train', str(config), '--work-dir', str(work_dir),
           '--launcher', 'pytorch', '--cfg-options', 'default_hooks.checkpoint.interval=4']
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log
    # The 4 validation images are split over the two ranks (2 iterations each), then gathered for the metric.
    assert 'Iter(val) [2/2]' in log and 'PSNR:' in log
    assert torch.load(work_dir / 'iter_4.pth', map_location='cpu')['meta']['iter'] == 4


def test_ema_option_validates_saves_and_tests_the_averaged_weights(tmp_path, tiny_config, sr_folders, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    config = str(tiny_config(4))
    work_dir = tmp_path / 'work'
    assert main(['mm-train', config, '--work-dir', str(work_dir), '--cfg-options', 'default_hooks.ema.type=EMAHook',
                 'default_hooks.ema.momentum=0.5', 'default_hooks.checkpoint.interval=4'], prog='ramit') == 0
    checkpoint = work_dir / 'iter_4.pth'
    saved = torch.load(checkpoint, map_location='cpu')
    # mmengine's EMAHook saves the averaged weights as 'state_dict' and the raw ones under 'ema_state_dict'.
    ema = {k[len('generator.'):]: v for k, v in saved['state_dict'].items() if k.startswith('generator.')}
    raw = {k[len('module.generator.'):]: v for k, v in saved['ema_state_dict'].items()
           if k.startswith('module.generator.')}
    assert ema.keys() == raw.keys() and any(not torch.equal(ema[k], raw[k]) for k in ema)
    loaded = read_checkpoint(checkpoint)[0]
    assert loaded.keys() == ema.keys() and all(torch.equal(loaded[k], ema[k]) for k in ema)

    def mm_test(weights) -> float:
        argv = [config, '--checkpoint', str(weights), '--work-dir', str(tmp_path / 'test')]
        assert main(['mm-test', *argv], prog='ramit') == 0
        return float(capsys.readouterr().out.split('PSNR: ')[-1].split()[0])

    # Validation at iteration 4 ran the EMA weights: `ramit mm-test` on the checkpoint reproduces its PSNR, and the
    # raw weights score differently.
    val_psnr = next(r['PSNR'] for r in map(json.loads, next(work_dir.glob('*/vis_data/scalars.json')).read_text()
                                                       .splitlines()) if 'PSNR' in r)
    assert mm_test(checkpoint) == pytest.approx(val_psnr, abs=1e-4)
    torch.save(raw, tmp_path / 'raw.pth')
    assert abs(mm_test(tmp_path / 'raw.pth') - val_psnr) > 1e-3


def test_compiled_training_forward_keeps_plain_checkpoints(tmp_path, tiny_config, inductor_cache, monkeypatch):
    """model.compile=True: the tiny run trains through torch.compile (the BasicSR compile test's kernels, same
    network and patch, come from the shared cache) and saves the generator under its plain keys."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(inductor_cache))
    work_dir = tmp_path / 'work'
    assert main(['mm-train', str(tiny_config(4)), '--work-dir', str(work_dir), '--cfg-options',
                 'model.compile=True'], prog='ramit') == 0
    log = next(work_dir.glob('*/*.log')).read_text()
    assert 'model.compile: training forward compiled with torch.compile (mode auto: default)' in log  # on the CPU
    state = torch.load(work_dir / 'iter_4.pth', map_location='cpu')['state_dict']
    assert not any('_orig_mod' in key for key in state) and 'generator.shallow.conv.weight' in state
    assert len([r for r in scalars(work_dir) if r['loss'] == r['loss']]) == 4  # four finite (non-NaN) losses
