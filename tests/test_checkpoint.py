"""Checkpoint reading and loading: the forms users have, and one-line errors for those that do not fit."""
import collections

import pytest
import torch

from ramit_plugin import RAMiT, describe_state_dict, load_checkpoint, read_state_dict
from ramit_plugin.checkpoint import CheckpointMismatchError, infer_architecture


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


@pytest.mark.parametrize('name, variant, upscale, tasks', [
    ('RAMiT-1_X3', 'RAMiT-1', 3, ('sr',)),
    ('RAMiT-slimSR_X4', 'RAMiT-slimSR', 4, ('sr',)),
    ('RAMiT-slimLLE_LLE', 'RAMiT-slimLLE', 1, ('dn', 'lle', 'dr')),
])
def test_architecture_is_inferred_from_shapes(reference_dir, name, variant, upscale, tasks):
    arch = infer_architecture(read_state_dict(reference_dir / 'weights' / f'{name}.pth'))
    assert (arch['variant'], arch['upscale'], arch['tasks'], arch['in_chans']) == (variant, upscale, tasks, 3)


def test_gray_and_custom_networks_are_described():
    assert describe_state_dict(RAMiT('RAMiT', 'graydn').state_dict()) == 'RAMiT gray denoising (1 channel)'
    custom = RAMiT('RAMiT', 'sr', 2, dim=32, fuse_expand_groups=2).state_dict()
    assert describe_state_dict(custom).startswith('a custom RAMiT (dim 32, depths (6, 4, 4, 6), MobiVari v2) x2 SR')


def test_missing_corrupt_and_foreign_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint not found: .*nope.pth'):
        read_state_dict(tmp_path / 'nope.pth')
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
    with pytest.raises(ValueError, match='pickled.pth: not a readable PyTorch checkpoint'):
        read_state_dict(tmp_path / 'pickled.pth')
