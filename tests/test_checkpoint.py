"""Checkpoint reading and loading: the forms users have, and one-line errors for those that do not fit."""
import collections

import pytest
import torch

from ramit_plugin import RAMiT, describe_state_dict, infer_config, load_checkpoint, read_checkpoint
from ramit_plugin.checkpoint import (METADATA_KEY, CheckpointError, CheckpointMismatchError, CheckpointNotFoundError,
                                     candidate_tasks, config_metadata)
from ramit_plugin.archs.ramit_arch import HYPER_PARAMETERS, resolve_config
from ramit_plugin.hub import PUBLISHED


def read_state_dict(path):
    return read_checkpoint(path)[0]


@pytest.fixture(scope='module')
def x2_weights(reference_dir):
    return reference_dir / 'weights' / 'RAMiT-1_X2.pth'


@pytest.fixture(scope='module')
def x2_state(x2_weights):
    return read_state_dict(x2_weights)


def same_weights(net, state):
    return all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_raw_basicsr_and_ddp_forms_load_identically(tmp_path, x2_state):
    noise = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in x2_state.items()}
    forms = {
        'raw.pth': x2_state,
        'basicsr.pth': {'params': noise, 'params_ema': x2_state},  # EMA weights are preferred
        'basicsr_plain.pth': {'params': x2_state},
        'ddp.pth': {f'module.{k}': v for k, v in x2_state.items()},
        'mmengine.pth': {'meta': {}, 'state_dict': {f'net.{k}': v for k, v in x2_state.items()}},
    }
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
        net = load_checkpoint(RAMiT('RAMiT-1', 'sr', 2), tmp_path / name)
        assert same_weights(net, x2_state), name


def test_in_memory_state_dicts_load_too(x2_state):
    net = load_checkpoint(RAMiT('RAMiT-1', 'sr', 2), collections.OrderedDict(x2_state))
    assert same_weights(net, x2_state)


def test_exclude_skips_prefixes_on_both_sides(reference_dir, x2_state):
    # The warm start of x3/x4 training: every x2 weight but the reconstruction.
    net = RAMiT('RAMiT-1', 'sr', 4)
    before = net.to_target.conv.weight.clone()
    load_checkpoint(net, reference_dir / 'weights' / 'RAMiT-1_X2.pth', exclude=('to_target.',))
    assert torch.equal(net.to_target.conv.weight, before)
    assert same_weights(net, {k: v for k, v in x2_state.items() if not k.startswith('to_target.')})


def test_scale_mismatch_is_one_line_naming_both(reference_dir):
    path = reference_dir / 'weights' / 'RAMiT-1_X4.pth'
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(RAMiT('RAMiT-1', 'sr', 2), path)
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith(f'{path}: checkpoint does not fit: it looks like RAMiT-1 x4 SR (3 channels); '
                          'the network is RAMiT-1 x2 SR (3 channels)')
    assert 'to_target.conv.weight [48, 64, 3, 3] vs network [12, 64, 3, 3]' in msg


def test_colour_checkpoint_into_gray_network(reference_dir):
    with pytest.raises(CheckpointMismatchError, match=r'it looks like RAMiT-1 scale-1 restoration \(3 channels; '
                                                      r'one of dn/lle/dr\); the network is RAMiT-1 gray denoising '
                                                      r'\(1 channel\)'):
        load_checkpoint(RAMiT('RAMiT-1', 'graydn'), reference_dir / 'weights' / 'RAMiT-1_CDN.pth')


def test_variant_mismatch_names_the_variant(reference_dir):
    with pytest.raises(CheckpointMismatchError, match='looks like RAMiT-slimSR x2 SR'):
        load_checkpoint(RAMiT('RAMiT', 'sr', 2), reference_dir / 'weights' / 'RAMiT-slimSR_X2.pth')


@pytest.mark.parametrize('name', ['RAMiT-1_X2', 'RAMiT-1_X3', 'RAMiT-1_X4', 'RAMiT-1_CDN', 'RAMiT-slimSR_X2',
                                  'RAMiT-slimSR_X3', 'RAMiT-slimSR_X4', 'RAMiT-slimLLE_LLE'])
def test_reference_checkpoints_infer_to_their_published_variant(reference_dir, name):
    sd, metadata = read_checkpoint(reference_dir / 'weights' / f'{name}.pth')
    model = PUBLISHED[name]
    assert metadata == {}
    assert candidate_tasks(sd) == ((model.task,) if model.task == 'sr' else ('dn', 'lle', 'dr'))
    # Exactly the variant: no hyper-parameter differs from the published configuration.
    assert infer_config(sd, task=model.task) == dict(variant=model.variant, task=model.task, upscale=model.scale)


# Custom networks: every hyper-parameter that shapes show, in combinations the published variants do not have.
CUSTOM = [
    dict(variant='RAMiT-1', task='sr', upscale=2, dim=16, depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2),
         window_size=4),  # what `ramit demo` trains
    dict(variant='RAMiT', task='sr', upscale=3, dim=32, num_heads=(4, 2, 4, 8), chsa_head_ratio=0.5, window_size=6,
         hidden_ratio=1.5, exp_factor=2.0, expand_groups=2),  # fuse_* follow exp_*
    dict(variant='RAMiT', task='lle', dim=32, depths=(2, 1, 1, 2), qkv_bias=False, fuse_exp_factor=1.7,
         fuse_expand_groups=2, tail_mv=1),
    dict(variant='RAMiT-1', task='graydn', dim=16, depths=(1, 1, 1, 1), chsa_head_ratio=0.0),
    dict(variant='RAMiT-1', task='dr', dim=16, depths=(1, 2, 1, 1), chsa_head_ratio=1.0, tail_mv=0),
    dict(variant='RAMiT-slimSR', task='sr', upscale=4, exp_factor=1.5),
    dict(variant='RAMiT-slimSR', task='sr', upscale=2, dim=32, depths=(1, 1, 1, 1), num_heads=(8, 8, 4, 4),
         hidden_ratio=2.66, expand_groups=2, fuse_expand_groups=2),
]


@pytest.mark.parametrize('config', CUSTOM, ids=lambda c: f"{c['variant']}-{c['task']}-{c.get('dim', 'x')}")
def test_custom_networks_are_rebuilt_from_their_state_dicts(config, tmp_path):
    torch.manual_seed(0)
    net = RAMiT(**config).eval()
    torch.save(net.state_dict(), tmp_path / 'custom.pth')
    sd, metadata = read_checkpoint(tmp_path / 'custom.pth')
    inferred = infer_config(sd, metadata, task=config['task'])
    # The same hyper-parameters (the variant it is described as may differ where two need equally few overrides).
    keys = ('task', 'upscale') + HYPER_PARAMETERS
    assert {k: resolve_config(**inferred)[k] for k in keys} == {k: resolve_config(**config)[k] for k in keys}
    rebuilt = load_checkpoint(RAMiT(**inferred), tmp_path / 'custom.pth').eval()
    x = torch.rand(1, net.in_chans, 21, 26, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_equivalent_values_are_reported_as_the_defaults():
    # int(4 * 0.3) == int(4 * 0.25): the default ratio gives the same heads, so no override is reported.
    net = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), chsa_head_ratio=0.3)
    assert infer_config(net.state_dict()) == dict(variant='RAMiT-1', task='sr', upscale=2, dim=16,
                                                  depths=(1, 1, 1, 1))


def test_metadata_settles_what_shapes_cannot_show(tmp_path):
    net = RAMiT('RAMiT-1', 'lle', dim=16, depths=(1, 1, 1, 1), helper=False)
    sd = net.state_dict()
    with pytest.raises(CheckpointError, match='can be any of dn/lle/dr'):
        infer_config(sd)
    torch.save({'params': sd, METADATA_KEY: config_metadata(net)}, tmp_path / 'basicsr.pth')
    sd, metadata = read_checkpoint(tmp_path / 'basicsr.pth')
    assert candidate_tasks(sd, metadata) == ('lle',)
    assert infer_config(sd, metadata) == dict(variant='RAMiT-1', task='lle', upscale=1, dim=16, depths=(1, 1, 1, 1),
                                              helper=False)


def test_param_key_is_taken_when_given_else_ema_first(tmp_path, x2_state):
    noise = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in x2_state.items()}
    torch.save({'params': noise, 'params_ema': x2_state}, tmp_path / 'both.pth')
    assert same_weights(load_checkpoint(RAMiT('RAMiT-1', 'sr', 2), tmp_path / 'both.pth', param_key='params'),
                        noise)
    assert same_weights(load_checkpoint(RAMiT('RAMiT-1', 'sr', 2), tmp_path / 'both.pth'), x2_state)
    torch.save({'params_ema': x2_state}, tmp_path / 'ema_only.pth')  # BasicSR would fail; the EMA weights load
    assert same_weights(load_checkpoint(RAMiT('RAMiT-1', 'sr', 2), tmp_path / 'ema_only.pth', param_key='params'),
                        x2_state)


def test_non_strict_loading_keeps_what_does_not_fit(tmp_path, x2_state):
    net = RAMiT('RAMiT-1', 'sr', 3)
    before = net.to_target.conv.weight.clone()
    load_checkpoint(net, x2_state, strict=False)
    assert torch.equal(net.to_target.conv.weight, before)  # x2 head: another shape, left as it was
    assert same_weights(net, {k: v for k, v in x2_state.items() if k != 'to_target.conv.weight'
                              and k != 'to_target.conv.bias'})


def test_gray_and_custom_networks_are_described():
    assert describe_state_dict(RAMiT('RAMiT', 'graydn').state_dict()) == 'RAMiT gray denoising (1 channel)'
    custom = RAMiT('RAMiT', 'sr', 2, dim=32, fuse_expand_groups=2).state_dict()
    assert describe_state_dict(custom) == 'RAMiT x2 SR (3 channels) with dim=32, fuse_expand_groups=2'


def test_missing_corrupt_and_foreign_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match='nope.pth: checkpoint not found'):
        read_state_dict(tmp_path / 'nope.pth')
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)
    (tmp_path / 'corrupt.pth').write_bytes(b'not a zip archive at all')
    with pytest.raises(ValueError, match=r'corrupt.pth: not a readable PyTorch checkpoint'):
        read_state_dict(tmp_path / 'corrupt.pth')
    torch.save({'conv.weight': torch.zeros(1)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match=r"other.pth: not a RAMiT checkpoint \(no unique 'shallow.conv.weight'"):
        read_state_dict(tmp_path / 'other.pth')


class Payload:
    """An arbitrary pickled object, which weights_only loading must refuse to construct."""


def test_loading_never_unpickles_arbitrary_objects(tmp_path, x2_state):
    torch.save({'params': x2_state, 'extra': Payload()}, tmp_path / 'pickled.pth')
    with pytest.raises(ValueError, match=r'pickled.pth: not a readable PyTorch checkpoint \(it holds a pickled Python '
                                         r'object \([\w.]*test_checkpoint\.Payload\); only tensors and plain data are '
                                         r'loaded\)$'):
        read_state_dict(tmp_path / 'pickled.pth')
    # Cut short (an interrupted copy): the reason is whole, not torch's paragraphs cut at some length.
    data = (tmp_path / 'pickled.pth').read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r'cut.pth: not a readable PyTorch checkpoint \(the file is empty, truncated '
                                         r'or corrupted\)$'):
        read_state_dict(tmp_path / 'cut.pth')
