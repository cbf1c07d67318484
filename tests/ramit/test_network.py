"""The RAMiT network against the authors' checkpoints, golden outputs and the spec's shapes and constants."""
import math

import numpy as np
import pytest
import torch

from ramit import RAMiT, count_params
from ramit.checkpoint import load_weights
from ramit.hparams import NORM_STATS
from ramit.hub import PUBLISHED as HUB
from ramit.network import expanded_channels
from tests.ramit.conftest import TINY, weights_path

# checkpoint -> parameter count, as the README's checkpoint table lists it
PUBLISHED = {
    'RAMiT-1_X2': 823_164,
    'RAMiT-1_X3': 831_819,
    'RAMiT-1_X4': 843_936,
    'RAMiT-1_CDN': 817_971,
    'RAMiT-slimSR_X2': 581_008,
    'RAMiT-slimSR_X3': 587_503,
    'RAMiT-slimSR_X4': 596_596,
    'RAMiT-slimLLE_LLE': 358_243,
}


def build(name: str) -> RAMiT:
    """The network a published checkpoint name describes (variant, task and scale from the hub's table)."""
    model = HUB[name]
    return RAMiT(variant=model.variant, task=model.task, upscale=model.scale)


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_published_checkpoint_reproduces_golden_outputs(name, reference_dir, golden_dir):
    # The reference path is the spec's computation; the fast path is held to it in test_fast_path.py.
    net = load_weights(build(name), weights_path(reference_dir, name)).eval().set_fast(False)
    golden = np.load(golden_dir / f'{name}.npz')
    assert count_params(net) == PUBLISHED[name]
    for i in range(3):
        x = torch.from_numpy(golden[f'input{i}'])[None]
        with torch.no_grad():
            y = net(x)[0].numpy()
        assert y.shape == golden[f'output{i}'].shape
        assert np.abs(y - golden[f'output{i}']).max() < 1e-5, f'{name} input{i}'


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_state_dict_keys_shapes_and_dtypes_match_the_authors(name, keys_dir):
    expected = {}
    for line in (keys_dir / f'{name}.txt').read_text().splitlines():
        key, shape, dtype = line.split('\t')
        expected[key] = (shape, dtype)
    ours = {k: (str(tuple(v.shape)), str(v.dtype).replace('torch.', '')) for k, v in build(name).state_dict().items()}
    assert ours == expected


@pytest.mark.parametrize('task, chans', [('graydn', 1), ('dr', 3)])
def test_unpublished_tasks_build_run_forward_and_backward_on_odd_sizes(task, chans):
    net = RAMiT(variant='RAMiT', task=task)
    assert net.to_target.final_conv.out_channels == chans and net.shallow.conv.in_channels == chans
    mean, std = NORM_STATS[task]
    assert torch.equal(net.mean.flatten(), torch.tensor(mean)) and torch.equal(net.std.flatten(), torch.tensor(std))
    assert not net.hparams['helper']  # the reciprocal exchange is off for denoising and deraining
    x = torch.rand(2, chans, 37, 29, requires_grad=True)
    y = net(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters())


def test_scale_one_tasks_are_residual_to_the_input():
    net = RAMiT(variant='RAMiT-1', task='dn', **TINY).eval()
    with torch.no_grad():
        for p in net.to_target.final_conv.parameters():
            p.zero_()  # the body then contributes nothing: output == input exactly up to (de)normalisation
        x = torch.rand(1, 3, 20, 21)
        assert torch.allclose(net(x), x, atol=1e-6)


def test_batches_equal_single_images_and_any_size_is_cropped_back():
    net = RAMiT(variant='RAMiT-slimSR', task='sr', upscale=3, **TINY).eval()
    x = torch.rand(3, 3, 19, 41)
    with torch.no_grad():
        batched = net(x)
        single = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert batched.shape == (3, 3, 57, 123)
    assert torch.allclose(batched, single, atol=1e-5)


def test_bfloat16_autocast_runs_close_to_float32():
    net = RAMiT(variant='RAMiT-1', task='sr', upscale=2, **TINY).eval()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = net(x)
    # De-normalisation with float32 constants brings the output back to float32; the body ran in bfloat16.
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert 0 < (low - ref).abs().max() < 0.1


def test_drop_path_is_stochastic_in_training_identity_in_eval_and_grows_linearly():
    net = RAMiT(variant='RAMiT-1', task='dn', drop_path=0.3, attn_drop=0.1, proj_drop=0.1, **TINY)
    rates = [b.drop_path.p for s in (net.stage1, net.stage2, net.stage3, net.stage4) for b in s.blocks.values()]
    assert rates == pytest.approx(torch.linspace(0, 0.3, 6).tolist())
    x = torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_mobivari_v2_expansion_always_adds_groups():
    assert expanded_channels(64, 1.2, 4) == 80  # 76 is already a multiple of 4, yet 4 are added
    assert expanded_channels(48, 1.2, 4) == 60
    assert expanded_channels(63, 2.0, 1) == 127


def test_every_hyper_parameter_can_be_overridden():
    net = RAMiT(variant='RAMiT', task='sr', upscale=4, dim=32, depths=(2, 1, 1, 2), num_heads=(2, 2, 4, 4),
                chsa_head_ratio=0.5, window_size=4, hidden_ratio=1.5, qkv_bias=False, mv_ver=1, tail_mv=1,
                helper=False, img_norm=False, in_chans=1)
    assert net.shallow.conv.weight.shape == (32, 1, 3, 3)
    assert net.stage1.blocks.block0.qkv_proj.qkv.bias is None
    assert net.stage3.blocks.block0.ch_attn.proj.in_channels == 16  # 2 of 4 heads of 8 channels
    assert len(net.to_target.mobivari) == 1 and net.pad_unit == 16
    assert net(torch.rand(1, 1, 10, 13)).shape == (1, 1, 40, 52)


def test_branch_with_zero_heads_is_absent():
    net = RAMiT(variant='RAMiT-1', task='sr', chsa_head_ratio=0.0, **{k: v for k, v in TINY.items()
                                                                      if k != 'chsa_head_ratio'})
    block = net.stage1.blocks.block0
    assert block.ch_attn is None and not any(k.startswith('stage1.blocks.block0.ch_attn') for k in net.state_dict())
    assert net(torch.rand(1, 3, 9, 9)).shape == (1, 3, 18, 18)


@pytest.mark.parametrize('kwargs, message', [
    (dict(variant='RAMiT-2'), "unknown variant 'RAMiT-2'; valid variants: RAMiT, RAMiT-1, RAMiT-slimSR, RAMiT-slimLLE"),
    (dict(task='deblur'), "unknown task 'deblur'; valid tasks: sr, dn, graydn, lle, dr"),
    (dict(task='sr', upscale=8), "upscale=8 is invalid for task 'sr'; valid: 2, 3, 4"),
    (dict(task='dn', upscale=2), "upscale=2 is invalid for task 'dn'"),
    (dict(heads=4), 'unknown option(s) heads; valid: dim, depths'),
    (dict(dim=40), 'dim=40 is invalid'),
    (dict(depths=(2, 2, 2)), 'RAMiT has 4 stages'),
    (dict(mv_ver=3), 'mv_ver=3 is invalid; valid: 1, 2'),
    (dict(dim=32), 'fuse_expand_groups=4 does not divide a MobiVari input of 42 channels (dim=32); choose groups '
                   'dividing 42, 74'),
    (dict(chsa_head_ratio=1.5), 'chsa_head_ratio=1.5 is invalid; valid: 0.0 to 1.0'),
    (dict(drop_path=1.0), 'drop_path=1.0 is invalid'),
    (dict(task='dn', in_chans=1), "in_chans=1 does not match task 'dn'"),
])
def test_invalid_configurations_raise_value_error_naming_valid_choices(kwargs, message):
    with pytest.raises(ValueError) as err:
        RAMiT(**kwargs)
    assert message in str(err.value) and '\n' not in str(err.value)


def test_wrong_channel_count_is_a_clear_error():
    net = RAMiT(variant='RAMiT-1', task='sr', **TINY)
    # The network is named as describe() names it: a custom one with its overrides.
    with pytest.raises(ValueError, match=r'^RAMiT-1 x2 SR \(3 channels\) with dim=16, depths=\(1, 2, 1, 2\), '
                                         r'num_heads=\(2, 2, 2, 2\), chsa_head_ratio=0.5, window_size=4 expects '
                                         r'input of shape \[B, 3, H, W\], got \[1, 1, 16, 16\] \(a gray image'):
        net(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r'got \[3, 16, 16\]'):
        net(torch.rand(3, 16, 16))


def test_description_and_arguments_rebuild_the_network():
    """describe() is one line with the overrides of a custom network; arguments() rebuilds the same network."""
    assert RAMiT('RAMiT-slimSR', 'sr', 4).describe() == 'RAMiT-slimSR x4 SR (3 channels)'
    assert RAMiT('RAMiT', 'graydn').describe() == 'RAMiT gray denoising (1 channel)'
    net = RAMiT('RAMiT-1', 'lle', helper=False, **TINY)
    assert net.arguments() == dict(variant='RAMiT-1', task='lle', upscale=1, helper=False, **TINY)
    assert net.describe() == ('RAMiT-1 low-light enhancement (3 channels) with dim=16, depths=(1, 2, 1, 2), '
                              'num_heads=(2, 2, 2, 2), chsa_head_ratio=0.5, window_size=4, helper=False')
    rebuilt = RAMiT(**net.arguments())
    assert rebuilt.hparams == net.hparams
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_logit_scale_is_clamped_at_ln_100():
    net = RAMiT(variant='RAMiT-1', task='sr', **TINY).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, 'logit_scale'):
                m.logit_scale.fill_(math.log(100.0))
        at_cap = net(x)
        for m in net.modules():
            if hasattr(m, 'logit_scale'):
                m.logit_scale.fill_(10.0)
        assert torch.equal(net(x), at_cap)
