"""The network on CUDA (skipped without a GPU): golden outputs on both paths, half precision, large inputs."""
import numpy as np
import pytest
import torch

from tests.ramit.conftest import REFERENCE_NAMES, photo_tensor, psnr, published

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize('name', REFERENCE_NAMES)
def test_golden_outputs_on_cuda_both_paths(reference_dir, golden_dir, cuda, name):
    net = published(reference_dir, name, cuda)
    golden = np.load(golden_dir / f'{name}.npz')
    for fast in (False, True):
        net.set_fast(fast)
        for i in range(3):
            x = torch.from_numpy(golden[f'input{i}'])[None].to(cuda)
            with torch.no_grad():
                y = net(x)[0].cpu().numpy()
            assert np.abs(y - golden[f'output{i}']).max() < 1e-4, f'{name} input{i} fast={fast}'


@pytest.fixture(scope='module')
def photo(datasets_dir) -> torch.Tensor:
    """Set5 'baby' (512x512), RGB [1, 3, H, W] in [0, 1] (Set5 is what travels to the GPU machine)."""
    return photo_tensor(datasets_dir / 'Set5' / 'HR' / 'baby.png')


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
@pytest.mark.parametrize('name,darken,min_fp16,min_bf16', [
    ('RAMiT-1_X2', 1.0, 50, 45), ('RAMiT-slimSR_X2', 1.0, 50, 45), ('RAMiT-slimLLE_LLE', 0.2, 42, 38)])
def test_half_precision_on_cuda(reference_dir, cuda, photo, name, darken, min_fp16, min_bf16, fast):
    net = published(reference_dir, name, cuda).set_fast(fast)
    x = (photo * darken).to(cuda)
    with torch.no_grad():
        full = net(x)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            bf16 = net(x)
        with torch.autocast('cuda', dtype=torch.float16):
            fp16_autocast = net(x)
        fp16 = net.half()(x.half())
    for label, out, bound in (('float16', fp16, min_fp16), ('fp16 autocast', fp16_autocast, min_fp16),
                              ('bf16 autocast', bf16, min_bf16)):
        assert torch.isfinite(out).all(), f'{label}: non-finite'
        assert psnr(out, full) >= bound, f'{label}: {psnr(out, full):.1f} dB'


def test_float16_2048_squared_is_finite(reference_dir, cuda):
    """The whole network in float16 on a 2048x2048 input (4096x4096 output): no overflow anywhere."""
    net = published(reference_dir, 'RAMiT-1_X2', cuda).half()
    gen = torch.Generator(device='cuda').manual_seed(0)
    coarse = torch.rand(1, 3, 64, 64, generator=gen, device=cuda)
    x = torch.nn.functional.interpolate(coarse, size=(2048, 2048), mode='bicubic').clamp(0, 1).half()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 4096, 4096) and torch.isfinite(y).all()


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
def test_amp_float16_training_with_grad_scaler_on_cuda(reference_dir, cuda, fast):
    """Batch 32, LR patch 64, trained RAMiT-1 x2: fp16 autocast + GradScaler stays finite and the loss falls."""
    net = published(reference_dir, 'RAMiT-1_X2', cuda).train().set_fast(fast)
    gen = torch.Generator(device='cuda').manual_seed(0)
    gt = torch.nn.functional.interpolate(torch.rand(32, 3, 16, 16, generator=gen, device=cuda), size=(128, 128),
                                         mode='bicubic').clamp(0, 1)
    lq = torch.nn.functional.interpolate(gt, scale_factor=0.5, mode='bicubic', antialias=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler('cuda')
    losses = []
    for _ in range(6):
        opt.zero_grad()
        with torch.autocast('cuda', dtype=torch.float16):
            loss = (net(lq).float() - gt).abs().mean()
        assert torch.isfinite(loss)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
