"""The commands on CUDA (skipped without a GPU; tools/gpu_check.py runs them): `basicsr test` Set5 x2, AMP training
with resume, NCCL and two ranks on one GPU, `ramit infer --half` (auto backend on CUDA: PyTorch).

The BasicSR data set, option dicts and runner come from tests/ramit_plugin/conftest.py (see conftest.py here)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ramit_cli.main import main

pytestmark = pytest.mark.cuda
LOSS = re.compile(r'iter:\s+(\d+), lr:.*l_pix: ([\d.e+-]+)')


def torchrun(tmp_path: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=N basicsr ARGS` in ``tmp_path``."""
    script = Path(sys.executable).parent / 'basicsr'
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
                           str(script), *args], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS='2'), timeout=300)


def test_basicsr_test_set5_x2_on_cuda(cuda, tmp_path, reference_dir, datasets_dir, options_file, set5_options,
                                      run_basicsr):
    opt = set5_options('RAMiT-1', 2, datasets_dir, reference_dir / 'weights')
    proc = run_basicsr('test', '-opt', str(options_file(tmp_path / 'x2.yml', opt)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    psnr = float(re.search(r'# psnr: ([\d.]+)', proc.stderr).group(1))
    ssim = float(re.search(r'# ssim: ([\d.]+)', proc.stderr).group(1))
    assert 'cuda' in proc.stderr.lower()
    assert abs(psnr - 38.184) <= 0.01 and abs(ssim - 0.9612) <= 0.0005


@pytest.mark.parametrize('amp', ['fp16', 'bf16'])
def test_amp_training_and_resume_on_cuda(cuda, amp, tmp_path, sr_data, tiny_options, options_file, run_basicsr):
    """A few iterations with autocast on the GPU: finite, falling loss; --auto_resume restores the fp16 scaler."""
    opt = tiny_options(sr_data, name=f'amp_{amp}', total_iter=10, amp=amp)
    opt['logger'].update(print_freq=1, save_checkpoint_freq=5)
    path = options_file(tmp_path / f'{amp}.yml', opt)
    proc = run_basicsr('train', '-opt', str(path), '--force_yml', 'train:total_iter=5', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / 'experiments' / f'amp_{amp}' / 'training_states' / '5.state', weights_only=True)
    assert ('scaler' in state) == (amp == 'fp16')
    proc = run_basicsr('train', '-opt', str(path), '--auto_resume', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Resuming training from' in proc.stderr and 'iter: 5.' in proc.stderr
    curve = {int(i): float(v) for i, v in LOSS.findall(proc.stderr)}
    assert sorted(curve) == list(range(6, 11)) and all(np.isfinite(v) for v in curve.values())
    final = torch.load(tmp_path / 'experiments' / f'amp_{amp}' / 'training_states' / '10.state', weights_only=True)
    if amp == 'fp16':
        assert final['scaler']['scale'] > 0


def test_nccl_one_rank_and_gloo_two_ranks_on_one_gpu(cuda, tmp_path, sr_data, tiny_options, options_file):
    opt = tiny_options(sr_data, name='nccl', total_iter=4)
    opt['val']['val_freq'] = 100
    options_file(tmp_path / 'nccl.yml', opt)
    proc = torchrun(tmp_path, 1, 'train', '-opt', 'nccl.yml', '--launcher', 'pytorch')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Network: RAMiT-1 x2 SR (3 channels) with dim=16, ' in proc.stderr
    assert ' parameters (DistributedDataParallel)' in proc.stderr

    opt = tiny_options(sr_data, name='gloo', total_iter=4)
    opt['val']['val_freq'] = 100
    opt['dist_params']['backend'] = 'gloo'  # NCCL refuses two ranks on one device
    options_file(tmp_path / 'gloo.yml', opt)
    proc = torchrun(tmp_path, 2, 'train', '-opt', 'gloo.yml', '--launcher', 'pytorch')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'World size (gpu number): 2' in proc.stderr
    assert (tmp_path / 'experiments' / 'gloo' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.parametrize('flag', ['--half', '--bf16'])
def test_infer_half_precision_on_cuda(cuda, flag, tmp_path, reference_dir, datasets_dir):
    """RAMiT-1 x2 on the five Set5 photos, float16/bfloat16 against float32: 99th percentile within 2/255."""
    weights = str(reference_dir / 'weights' / 'RAMiT-1_X2.pth')
    hr = str(datasets_dir / 'Set5' / 'HR')
    assert main(['infer', '-i', hr, '-o', str(tmp_path / 'fp32'), '--weights', weights, '--device', 'cuda'],
                prog='ramit') == 0
    assert main(['infer', '-i', hr, '-o', str(tmp_path / 'half'), '--weights', weights, '--device', 'cuda', flag],
                prog='ramit') == 0
    diffs = np.concatenate([np.abs(cv2.imread(str(p)).astype(np.int16)
                                   - cv2.imread(str(tmp_path / 'half' / p.name)).astype(np.int16)).ravel()
                            for p in sorted((tmp_path / 'fp32').iterdir())])
    assert len(list((tmp_path / 'half').iterdir())) == 5
    assert np.percentile(diffs, 99) <= 2
