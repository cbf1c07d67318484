"""Safetensors through the one checkpoint API: written with the network description, read without pickle, and
accepted wherever checkpoints are (load_weights, load_network; BasicSR's pretrain_network_g and mmengine's
pretrained are the adapters' tests)."""
import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ramit import RAMiT, infer_arguments, load_weights, read_checkpoint
from ramit.checkpoint import (DESCRIPTION_KEY, CheckpointError, description_of, network_description,
                              select_state_dict, write_safetensors)
from ramit.inference import load_network

TINY_LLE = dict(variant='RAMiT', task='lle', dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1)


@pytest.fixture
def lle_net() -> RAMiT:
    """A tiny low-light network: its task is not visible in any shape (dn and dr have the same ones)."""
    torch.manual_seed(0)
    return RAMiT(**TINY_LLE).eval()


def test_written_file_carries_weights_and_every_hyper_parameter(lle_net, tmp_path):
    path = tmp_path / 'lle.safetensors'
    write_safetensors(path, lle_net.state_dict(), network_description(lle_net))
    sd, description, entry = read_checkpoint(path)
    assert sd.keys() == lle_net.state_dict().keys() and entry is None
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in sd.items())
    assert description == network_description(lle_net)  # tuples come back as tuples
    assert infer_arguments(sd, description) == dict(TINY_LLE, upscale=1)  # no task needed
    net = load_network(path)  # nor here: the file tells it
    assert net.arguments() == dict(TINY_LLE, upscale=1)
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in net.state_dict().items())
    # The description is in the header for any safetensors reader, and in a tensor for spandrel.
    with safe_open(path, framework='pt') as f:
        header = f.metadata()
        assert f.get_tensor(DESCRIPTION_KEY).dtype == torch.uint8
    assert header['format'] == 'pt' and json.loads(header[DESCRIPTION_KEY])['task'] == 'lle'
    # Without the header (spandrel hands over only the tensors) the tensor tells it.
    tensors = load_file(path)
    assert description_of(tensors) == network_description(lle_net)
    assert select_state_dict(tensors).keys() == lle_net.state_dict().keys()
    assert [p.name for p in tmp_path.iterdir()] == ['lle.safetensors']  # no temporary file left


def test_plain_safetensors_reads_like_a_raw_state_dict_whatever_its_name(lle_net, tmp_path):
    for name in ('plain.safetensors', 'plain.sft', 'plain.bin'):
        save_file(lle_net.state_dict(), tmp_path / name)
        sd, description, _ = read_checkpoint(tmp_path / name)
        assert description == {} and all(torch.equal(v, lle_net.state_dict()[k]) for k, v in sd.items())
    net = load_weights(RAMiT(**TINY_LLE), tmp_path / 'plain.bin')
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in net.state_dict().items())


def test_a_pickle_named_safetensors_is_never_unpickled(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self) -> tuple:
            """Unpickling would create the marker file."""
            return open, (str(marker), 'w')

    bad = tmp_path / 'evil.safetensors'
    bad.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=r'^.*evil\.safetensors: not a readable safetensors file \(.*\)$'):
        read_checkpoint(bad)
    assert not marker.exists()


def test_truncated_file_and_bad_description_are_one_line_errors(lle_net, tmp_path):
    good = tmp_path / 'good.safetensors'
    write_safetensors(good, lle_net.state_dict(), network_description(lle_net))
    cut = tmp_path / 'cut.safetensors'
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(cut)
    assert str(err.value).startswith(f'{cut}: not a readable safetensors file (') and '\n' not in str(err.value)
    broken = tmp_path / 'broken.safetensors'
    save_file(lle_net.state_dict(), broken, metadata={DESCRIPTION_KEY: '{not json'})
    with pytest.raises(CheckpointError,
                       match=f"^{broken}: its 'ramit_config' entry is not a JSON object of RAMiT arguments$"):
        read_checkpoint(broken)
