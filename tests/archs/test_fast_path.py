"""The fast forward path equals the reference path (float32, 1e-5) and keeps checkpoints loading strictly."""
import numpy as np
import pytest
import torch

from ramit_plugin import RAMiT, load_checkpoint
from ramit_plugin.archs.ramit_arch import TASKS, VARIANTS
from ramit_plugin.hub import lookup

TOL = 1e-5


def perturbed(net: RAMiT, seed: int = 0) -> RAMiT:
    """Random-init network with non-zero bias tables and logit scales, so every term of the fast path counts."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return net.eval()


def both_paths(net: RAMiT, x: torch.Tensor):
    """(reference output, fast output) of ``net`` on ``x``, restoring the automatic mode afterwards."""
    with torch.no_grad():
        ref = net.set_fast(False)(x)
        fast = net.set_fast(True)(x)
    net.set_fast(None)
    return ref, fast


# Every task on the full RAMiT, every variant at least once; the published RAMiT-1/slim checkpoints below
# cover SR x2-x4, colour denoising and low-light with trained weights.
COMBOS = [('RAMiT', task) for task in TASKS] + [('RAMiT-1', 'graydn'), ('RAMiT-slimSR', 'dr'),
                                                ('RAMiT-slimLLE', 'graydn')]


@pytest.mark.parametrize('variant,task', COMBOS)
def test_fast_equals_reference_random_init(variant, task):
    torch.manual_seed(0)  # random nets sit near the float32 noise floor (~7e-6 from float64): fix the draw
    net = perturbed(RAMiT(variant, task))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, net.in_chans, 29, 45, generator=gen)  # odd sizes: internal padding to 32x64
    ref, fast = both_paths(net, x)
    assert fast.shape == ref.shape == (2, net.in_chans, 29 * net.upscale, 45 * net.upscale)
    assert (fast - ref).abs().max().item() < TOL


@pytest.mark.parametrize('name', ['RAMiT-1_X2', 'RAMiT-1_X3', 'RAMiT-1_X4', 'RAMiT-1_CDN', 'RAMiT-slimSR_X2',
                                  'RAMiT-slimSR_X3', 'RAMiT-slimSR_X4', 'RAMiT-slimLLE_LLE'])
def test_fast_equals_reference_and_golden_on_checkpoints(reference_dir, golden_dir, name):
    model = lookup(name)
    net = RAMiT(model.variant, model.task, model.scale)
    load_checkpoint(net, reference_dir / 'weights' / model.file)  # strict: the fast path adds no state
    net.eval()
    golden = np.load(golden_dir / f'{name}.npz')
    x = torch.from_numpy(golden['input0'])[None]
    ref, fast = both_paths(net, x)
    assert (fast - ref).abs().max().item() < TOL
    assert (fast[0] - torch.from_numpy(golden['output0'])).abs().max().item() < 2e-5
    assert net.uses_fast_path()  # eval mode defaults to the fast path


def test_default_mode_fast_in_eval_reference_in_training():
    net = RAMiT('RAMiT-slimLLE', 'lle')
    assert net.fast is None and not net.uses_fast_path()
    assert net.eval().uses_fast_path()
    assert RAMiT('RAMiT-slimLLE', 'lle', fast=False).eval().uses_fast_path() is False
    assert RAMiT('RAMiT-slimLLE', 'lle', fast=True).train().uses_fast_path() is True
    with pytest.raises(ValueError, match='set_fast'):
        net.set_fast('yes')


@pytest.mark.parametrize('ratio', [0.0, 0.5, 1.0])
def test_fast_path_edge_configurations(ratio):
    """No CH-SA heads, half and half, no SP-SA heads; window 4 with shifts of 2.

    In float64: with only CH-SA heads even the reference path is 1.3e-5 off in float32 (a tiny random
    network's own rounding noise), so exactness of the algorithm is checked where rounding is negligible.
    """
    net = perturbed(RAMiT('RAMiT-1', 'sr', 3, dim=16, depths=(2, 1, 1, 2), num_heads=(2, 2, 2, 2),
                          window_size=4, chsa_head_ratio=ratio)).double()
    x = torch.rand(1, 3, 19, 23, dtype=torch.float64)
    ref, fast = both_paths(net, x)
    assert (fast - ref).abs().max().item() < 1e-12


def test_fast_path_gradients_match_reference():
    """Forced on in training (no dropout configured), the fast path gives the reference gradients."""
    grads = []
    for fast in (False, True):
        torch.manual_seed(0)
        net = RAMiT('RAMiT-1', 'sr', dim=16, depths=(2, 1, 1, 2), num_heads=(2, 2, 2, 2), window_size=4,
                    fast=fast).train()
        perturbed(net).train()
        x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
        net(x).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_bias_cache_follows_weight_changes():
    net = perturbed(RAMiT('RAMiT-1', 'lle', dim=16, depths=(2, 1, 1, 2), num_heads=(2, 2, 2, 2),
                          window_size=4))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        for name, p in net.named_parameters():
            if name.endswith('relative_position_bias_table'):
                p.data.add_(torch.randn(p.shape))  # through .data, which no version counter sees
        changed, reference = both_paths(net, x)
        assert (changed - before).abs().max() > 1e-3
        assert (changed - reference).abs().max() < TOL
        net.load_state_dict(state)
        assert torch.allclose(net(x), before, atol=0, rtol=0)
    assert set(net.state_dict()) == set(state)  # no new persistent state


def test_combos_cover_every_variant_and_task():
    assert {v for v, _ in COMBOS} == set(VARIANTS) and {t for _, t in COMBOS} == set(TASKS)
