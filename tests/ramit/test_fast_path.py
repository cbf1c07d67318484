"""The fast forward path equals the reference path (float32, 1e-5; gradients 1e-4) and loads checkpoints strictly."""
from typing import Tuple

import numpy as np
import pytest
import torch

from ramit import RAMiT
from ramit.checkpoint import load_weights
from ramit.hparams import TASKS, VARIANTS
from ramit.hub import lookup
from tests.ramit.conftest import REFERENCE_NAMES, perturbed, weights_path

TOL = 1e-5


def both_paths(net: RAMiT, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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


@pytest.mark.parametrize('name', REFERENCE_NAMES)
def test_fast_equals_reference_and_golden_on_checkpoints(reference_dir, golden_dir, name):
    model = lookup(name)
    net = RAMiT(model.variant, model.task, model.scale)
    load_weights(net, weights_path(reference_dir, name))  # strict: the fast path adds no state
    net.eval()
    golden = np.load(golden_dir / f'{name}.npz')
    x = torch.from_numpy(golden['input0'])[None]
    ref, fast = both_paths(net, x)
    assert (fast - ref).abs().max().item() < TOL
    assert (fast[0] - torch.from_numpy(golden['output0'])).abs().max().item() < 2e-5
    assert net.uses_fast_path()  # the CPU defaults to the fast path


def test_default_path_is_chosen_per_device():
    net = RAMiT('RAMiT-slimLLE', 'lle')
    assert net.fast is None
    # CPU and CUDA default to the fast path in training and eval alike; unmeasured devices get the reference.
    assert net.train().uses_fast_path() and net.eval().uses_fast_path()
    assert net.uses_fast_path(torch.device('cuda')) and not net.uses_fast_path(torch.device('meta'))
    assert RAMiT('RAMiT-slimLLE', 'lle', fast=False).eval().uses_fast_path() is False
    assert RAMiT('RAMiT-slimLLE', 'lle', fast=True).uses_fast_path(torch.device('meta')) is True
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


def test_fast_path_gradients_match_reference(reference_dir):
    """Training on the fast path gives the reference gradients (trained RAMiT-1 x2 weights, L1 loss).

    float32: the whole gradient within 1e-4 relative (measured 2.6e-5, as far as the reference itself is from
    float64). Single parameters are compared in float64 (1e-9): in float32 a 1e-6 difference in the forward
    pass can flip a LeakyReLU near 0, which moves one parameter's gradient by up to 6e-4 in either path.
    """
    net = RAMiT('RAMiT-1', 'sr', 2)
    load_weights(net, weights_path(reference_dir, 'RAMiT-1_X2'))
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(3))
    target = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(4))

    def gradients(fast: bool, dtype: torch.dtype) -> dict:
        """Parameter gradients of one L1 step on the chosen path in ``dtype``."""
        net.to(dtype).zero_grad()
        (net.train().set_fast(fast)(x.to(dtype)) - target.to(dtype)).abs().mean().backward()
        return {name: p.grad.clone() for name, p in net.named_parameters()}

    flat = [torch.cat([g.flatten() for g in gradients(fast, torch.float32).values()]) for fast in (False, True)]
    assert ((flat[1] - flat[0]).norm() / flat[0].norm()).item() < 1e-4
    ref, fast = gradients(False, torch.float64), gradients(True, torch.float64)
    for name, g in ref.items():
        err = ((fast[name] - g).norm() / g.norm().clamp_min(1e-300)).item()
        assert err < 1e-9, f'{name}: relative gradient difference {err:.2e} in float64'


def test_fast_path_dropout_equals_reference_in_distribution():
    """With attention/projection dropout and drop-path, both paths draw from the same output distribution.

    The paths use different random draws (SDPA drops inside its kernel), so per-pixel means and variances over
    many draws (one batch of copies: dropout and drop-path draw per sample) are compared: z-scores of the mean
    difference and the variance ratio.
    """
    torch.manual_seed(0)
    net = perturbed(RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(2, 1, 1, 2), num_heads=(2, 2, 2, 2),
                          window_size=4, attn_drop=0.3, proj_drop=0.1, drop_path=0.2)).train()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    draws = 400
    stats = []
    with torch.no_grad():
        for fast in (False, True):
            outs = net.set_fast(fast)(x.expand(draws, -1, -1, -1))  # every sample of a batch draws afresh
            stats.append((outs.mean(0), outs.var(0)))
    (m0, v0), (m1, v1) = stats
    z = (m1 - m0) / ((v0 + v1) / draws).sqrt()
    assert (z.abs() > 3.5).float().mean() < 0.01  # ~0.05 % expected by chance
    assert 0.85 < (v1.mean() / v0.mean()).item() < 1.18
    no_dropout = net.eval()(x)
    assert (m1 - no_dropout).abs().mean() > 1e-3  # dropout really acted


def test_bias_table_changes_take_effect_at_once():
    """No cached bias: a table changed in place (even through .data, which no version counter sees) is used."""
    net = perturbed(RAMiT('RAMiT-1', 'lle', dim=16, depths=(2, 1, 1, 2), num_heads=(2, 2, 2, 2),
                          window_size=4))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        for name, p in net.named_parameters():
            if name.endswith('relative_position_bias_table'):
                p.data.add_(torch.randn(p.shape))
        changed, reference = both_paths(net, x)
        assert (changed - before).abs().max() > 1e-3
        assert (changed - reference).abs().max() < TOL
        net.load_state_dict(state)
        assert torch.allclose(net(x), before, atol=0, rtol=0)
    assert set(net.state_dict()) == set(state)  # no new persistent state


@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_fast_path_compiles_as_one_graph(mode):
    """torch.compile(fullgraph=True) traces the whole network (Dynamo, and AOTAutograd for training, under autocast
    so that the float32 islands are traced too; float32 training through Inductor is tests/ramit_plugin/test_compile.py;
    Inductor speed is `ramit bench`'s). From a fresh Dynamo: shapes an earlier test compiled would make this a
    symbolic-shape retrace."""
    torch._dynamo.reset()
    net = perturbed(RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2),
                          window_size=4))
    getattr(net, mode)()
    compiled = torch.compile(net, fullgraph=True, backend='aot_eager' if mode == 'train' else 'eager')
    x = torch.rand(2, 3, 24, 20)
    if mode == 'train':
        with torch.autocast('cpu', dtype=torch.bfloat16):
            compiled(x).float().mean().backward()
        assert all(p.grad is not None for p in net.parameters())
    else:
        with torch.no_grad():
            assert torch.equal(compiled(x), net(x))


def test_combos_cover_every_variant_and_task():
    assert {v for v, _ in COMBOS} == set(VARIANTS) and {t for _, t in COMBOS} == set(TASKS)
