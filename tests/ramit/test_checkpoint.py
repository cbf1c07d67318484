"""Checkpoint reading and loading: the forms users have, and one-line errors for those that do not fit."""
import collections
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

from ramit import RAMiT, describe_state_dict, infer_arguments, load_weights, read_checkpoint
from ramit.checkpoint import (DESCRIPTION_KEY, Checkpoint, CheckpointError, CheckpointMismatchError,
                              CheckpointNotFoundError, candidate_tasks, check_fit, network_description)
from ramit.hparams import HYPER_PARAMETERS, resolve_hparams
from ramit.hub import PUBLISHED
from ramit.inference import load_network
from tests.ramit.conftest import REFERENCE_NAMES, tiny_network, weights_path


def read_state_dict(path: Path) -> dict:
    """The weights of a checkpoint file."""
    return read_checkpoint(path).weights


@pytest.fixture(scope='module')
def x2_weights(reference_dir: Path) -> Path:
    """The published RAMiT-1 x2 checkpoint."""
    return weights_path(reference_dir, 'RAMiT-1_X2')


@pytest.fixture(scope='module')
def x2_state(x2_weights: Path) -> dict:
    """Its state dict."""
    return read_state_dict(x2_weights)


def same_weights(net: torch.nn.Module, state: dict) -> bool:
    """Whether every tensor of ``state`` equals the network's."""
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
        net = load_weights(RAMiT('RAMiT-1', 'sr', 2), tmp_path / name)
        assert same_weights(net, x2_state), name


def test_in_memory_state_dicts_load_too(x2_state):
    net = load_weights(RAMiT('RAMiT-1', 'sr', 2), collections.OrderedDict(x2_state))
    assert same_weights(net, x2_state)


def test_exclude_skips_prefixes_on_both_sides(x2_weights, x2_state):
    # The warm start of x3/x4 training: every x2 weight but the reconstruction.
    net = RAMiT('RAMiT-1', 'sr', 4)
    before = net.to_target.conv.weight.clone()
    load_weights(net, x2_weights, exclude=('to_target.',))
    assert torch.equal(net.to_target.conv.weight, before)
    assert same_weights(net, {k: v for k, v in x2_state.items() if not k.startswith('to_target.')})


def test_scale_mismatch_is_one_line_naming_both(reference_dir):
    path = weights_path(reference_dir, 'RAMiT-1_X4')
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(RAMiT('RAMiT-1', 'sr', 2), path)
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith(f'{path}: checkpoint does not fit: it looks like RAMiT-1 x4 SR (3 channels); '
                          'the network is RAMiT-1 x2 SR (3 channels)')
    assert 'to_target.conv.weight [48, 64, 3, 3] vs network [12, 64, 3, 3]' in msg


def test_colour_checkpoint_into_gray_network(reference_dir):
    with pytest.raises(CheckpointMismatchError, match=r'it looks like RAMiT-1 scale-1 restoration \(3 channels; '
                                                      r'one of dn/lle/dr\); the network is RAMiT-1 gray denoising '
                                                      r'\(1 channel\)'):
        load_weights(RAMiT('RAMiT-1', 'graydn'), weights_path(reference_dir, 'RAMiT-1_CDN'))


def test_variant_mismatch_names_the_variant(reference_dir):
    with pytest.raises(CheckpointMismatchError, match='looks like RAMiT-slimSR x2 SR'):
        load_weights(RAMiT('RAMiT', 'sr', 2), weights_path(reference_dir, 'RAMiT-slimSR_X2'))


@pytest.mark.parametrize('name', REFERENCE_NAMES)
def test_reference_checkpoints_infer_to_their_published_variant(reference_dir, name):
    sd, description, entry = read_checkpoint(weights_path(reference_dir, name))
    model = PUBLISHED[name]
    assert description == {} and entry is None  # the authors' files are raw state dicts
    assert candidate_tasks(sd) == ((model.task,) if model.task == 'sr' else ('dn', 'lle', 'dr'))
    # Exactly the variant: no hyper-parameter differs from the published configuration.
    assert infer_arguments(sd, task=model.task) == dict(variant=model.variant, task=model.task, upscale=model.scale)


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
    sd, description, _ = read_checkpoint(tmp_path / 'custom.pth')
    inferred = infer_arguments(sd, description, task=config['task'])
    # The same hyper-parameters (the variant it is described as may differ where two need equally few overrides).
    keys = ('task', 'upscale') + HYPER_PARAMETERS
    assert {k: resolve_hparams(**inferred)[k] for k in keys} == {k: resolve_hparams(**config)[k] for k in keys}
    rebuilt = load_weights(RAMiT(**inferred), tmp_path / 'custom.pth').eval()
    x = torch.rand(1, net.in_chans, 21, 26, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_equivalent_values_are_reported_as_the_defaults():
    # int(4 * 0.3) == int(4 * 0.25): the default ratio gives the same heads, so no override is reported.
    net = RAMiT('RAMiT-1', 'sr', 2, dim=16, depths=(1, 1, 1, 1), chsa_head_ratio=0.3)
    assert infer_arguments(net.state_dict()) == dict(variant='RAMiT-1', task='sr', upscale=2, dim=16,
                                                     depths=(1, 1, 1, 1))


def test_description_settles_what_shapes_cannot_show(tmp_path):
    net = RAMiT('RAMiT-1', 'lle', dim=16, depths=(1, 1, 1, 1), helper=False)
    sd = net.state_dict()
    with pytest.raises(CheckpointError, match='can be any of dn/lle/dr'):
        infer_arguments(sd)
    torch.save({'params': sd, DESCRIPTION_KEY: network_description(net)}, tmp_path / 'basicsr.pth')
    sd, description, entry = read_checkpoint(tmp_path / 'basicsr.pth')
    assert entry == 'params' and DESCRIPTION_KEY == 'ramit_config'  # the on-disk key of earlier releases
    assert candidate_tasks(sd, description) == ('lle',)
    assert infer_arguments(sd, description) == dict(variant='RAMiT-1', task='lle', upscale=1, dim=16,
                                                    depths=(1, 1, 1, 1), helper=False)


def test_param_key_is_taken_when_given_else_ema_first(tmp_path, x2_state):
    noise = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in x2_state.items()}
    torch.save({'params': noise, 'params_ema': x2_state}, tmp_path / 'both.pth')
    assert same_weights(load_weights(RAMiT('RAMiT-1', 'sr', 2), tmp_path / 'both.pth', param_key='params'),
                        noise)
    assert same_weights(load_weights(RAMiT('RAMiT-1', 'sr', 2), tmp_path / 'both.pth'), x2_state)
    torch.save({'params_ema': x2_state}, tmp_path / 'ema_only.pth')  # BasicSR would fail; the EMA weights load
    assert same_weights(load_weights(RAMiT('RAMiT-1', 'sr', 2), tmp_path / 'ema_only.pth', param_key='params'),
                        x2_state)


def test_non_strict_loading_keeps_what_does_not_fit(tmp_path, x2_state):
    net = RAMiT('RAMiT-1', 'sr', 3)
    before = net.to_target.conv.weight.clone()
    load_weights(net, x2_state, strict=False)
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


def test_read_checkpoint_names_the_entry_the_weights_came_from(tmp_path):
    ema, raw = tiny_network(seed=1).state_dict(), tiny_network(seed=2).state_dict()
    forms = {
        'both.pth': ({'params': raw, 'params_ema': ema}, None, 'params_ema', ema),
        'both_params.pth': ({'params': raw, 'params_ema': ema}, 'params', 'params', raw),
        'plain.pth': ({'params': raw}, None, 'params', raw),
        'mmengine.pth': ({'meta': {}, 'state_dict': {f'generator.{k}': v for k, v in raw.items()}}, None,
                         'state_dict', raw),
        'raw.pth': (raw, None, None, raw),
    }
    for name, (obj, param_key, entry, weights) in forms.items():
        torch.save(obj, tmp_path / name)
        found = read_checkpoint(tmp_path / name, param_key)
        assert isinstance(found, Checkpoint) and len(found) == 3
        assert found.entry == entry, name
        assert found.description == {}
        assert found.weights.keys() == weights.keys(), name
        assert all(torch.equal(found.weights[k], v) for k, v in weights.items()), name


def damaged(sd: dict, key: str, change: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """``sd`` with the tensor ``key`` replaced by ``change(tensor)``."""
    return dict(sd, **{key: change(sd[key])})


# A quantised or damaged file: the same shapes, another tensor type, or NaN/inf in a float tensor.
DAMAGES = {
    'int8': ('shallow.conv.weight', lambda t: (t * 100).to(torch.int8),
             'hold int8 values where RAMiT has floating-point weights (e.g. shallow.conv.weight): a quantised or '
             'damaged checkpoint'),
    'int32': ('to_target.conv.bias', lambda t: t.to(torch.int32),
              'hold int32 values where RAMiT has floating-point weights (e.g. to_target.conv.bias)'),
    'bool': ('stage1.blocks.block0.ffn.hidden.weight', lambda t: t > 0,
             'hold bool values where RAMiT has floating-point weights (e.g. stage1.blocks.block0.ffn.hidden.weight)'),
    'nan': ('stage2.blocks.block0.sp_attn.logit_scale', lambda t: torch.full_like(t, float('nan')),
            'hold NaN or inf values (e.g. stage2.blocks.block0.sp_attn.logit_scale): a damaged or diverged '
            'checkpoint'),
    'inf': ('down1.reduction.pw_conv.weight', lambda t: t.index_fill(0, torch.tensor([0]), float('inf')),
            'hold NaN or inf values (e.g. down1.reduction.pw_conv.weight)'),
}


@pytest.mark.parametrize('kind', list(DAMAGES))
def test_integer_bool_and_non_finite_weights_are_refused_by_every_loader(kind, tmp_path):
    key, change, words = DAMAGES[kind]
    net = tiny_network()
    sd = net.state_dict()
    assert key in sd
    path = tmp_path / f'{kind}.pth'
    torch.save({'params_ema': damaged(sd, key, change)}, path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    errors = []
    with pytest.raises(CheckpointError) as err:
        load_weights(net, path)
    errors.append(str(err.value))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing was loaded
    with pytest.raises(CheckpointError) as err:
        load_weights(net, damaged(sd, key, change), label='the dict')
    errors.append(str(err.value))
    with pytest.raises(CheckpointError) as err:
        load_weights(net, path, strict=False)
    errors.append(str(err.value))
    with pytest.raises(CheckpointError) as err:
        load_network(path)
    errors.append(str(err.value))
    for message, label in zip(errors, (path, 'the dict', path, path)):
        assert message.startswith(f'{label}: 1 tensor(s) ') and words in message, message
        assert '\n' not in message
    # The position index is an integer buffer in every RAMiT: integers there are no damage.
    index = 'stage1.blocks.block0.sp_attn.relative_position_index'
    assert not sd[index].is_floating_point()
    load_weights(net, sd)


def test_check_fit_refuses_what_load_weights_refuses_with_the_same_words_without_allocating(tmp_path,
                                                                                            monkeypatch):
    x4 = tiny_network(upscale=4).state_dict()
    arguments = tiny_network(upscale=2).arguments()
    torch.save(x4, tmp_path / 'x4.pth')
    with pytest.raises(CheckpointMismatchError) as loaded:
        load_weights(RAMiT(**arguments), tmp_path / 'x4.pth')
    made = []

    class Recorded(RAMiT):
        """RAMiT noting the device its parameters were made on."""

        def __init__(self, *args, **kwargs) -> None:
            """RAMiT(...), then the devices of its parameters noted."""
            super().__init__(*args, **kwargs)
            made.append({p.device.type for p in self.parameters()})

    monkeypatch.setattr('ramit.checkpoint.RAMiT', Recorded)
    with pytest.raises(CheckpointMismatchError) as fitted:
        check_fit(arguments, x4, {}, str(tmp_path / 'x4.pth'))
    assert made == [{'meta'}]  # nothing allocated, nothing computed
    assert str(fitted.value) == str(loaded.value)
    assert str(fitted.value).startswith(f"{tmp_path / 'x4.pth'}: checkpoint does not fit: it looks like RAMiT-1 x4 "
                                        'SR (3 channels) with dim=16')
    assert 'to_target.conv.weight [48, 16, 3, 3] vs network [12, 16, 3, 3]' in str(fitted.value)
    check_fit(tiny_network(upscale=4).arguments(), x4, {}, 'x4.pth')  # what fits passes


FULL_DISK = """
import resource, sys, torch
from ramit.checkpoint import save_torch
from ramit.fileio import DiskFullError
path = sys.argv[1]
save_torch({'step': 1}, path)  # the previous file, small
previous = open(path, 'rb').read()
# Files may not grow past 64 KiB: a write beyond fails with EFBIG (Python ignores SIGXFSZ), as on a full disk.
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save_torch({'weights': torch.zeros(1 << 18)}, path)  # 1 MiB
except DiskFullError as err:
    print(err.exit_code, err)
assert open(path, 'rb').read() == previous, 'the previous file was changed'
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='RLIMIT_FSIZE and EFBIG as on Linux')
def test_save_torch_on_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    path = tmp_path / 'net_g_5.pth'
    proc = subprocess.run([sys.executable, '-c', FULL_DISK, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == f'1 {path}: cannot be written (File too large); nothing was left half-written\n'
    assert [p.name for p in tmp_path.iterdir()] == ['net_g_5.pth']  # no partial temporary file
    assert torch.load(path, weights_only=True) == {'step': 1}
