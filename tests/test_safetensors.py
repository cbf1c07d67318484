"""Safetensors through the one checkpoint API: written with the network description, read without pickle, and
accepted wherever checkpoints are (load_checkpoint, BasicSR's pretrain_network_g, mmengine's pretrained)."""
import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ramit_plugin import RAMiT, infer_config, load_checkpoint, read_checkpoint
from ramit_plugin.checkpoint import METADATA_KEY, CheckpointError, config_metadata, write_safetensors

TINY_LLE = dict(variant='RAMiT', task='lle', dim=16, depths=(1, 1, 1, 1), window_size=4, fuse_expand_groups=1)


@pytest.fixture
def lle_net() -> RAMiT:
    """A tiny low-light network: its task is not visible in any shape (dn and dr have the same ones)."""
    torch.manual_seed(0)
    return RAMiT(**TINY_LLE).eval()


def test_written_file_carries_weights_and_every_hyper_parameter(lle_net, tmp_path):
    path = tmp_path / 'lle.safetensors'
    write_safetensors(path, lle_net.state_dict(), config_metadata(lle_net))
    sd, metadata = read_checkpoint(path)
    assert sd.keys() == lle_net.state_dict().keys()
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in sd.items())
    assert metadata == config_metadata(lle_net)  # tuples come back as tuples
    assert infer_config(sd, metadata) == dict(TINY_LLE, upscale=1)  # no task needed
    # The description is in the header for any safetensors reader, and in a tensor for spandrel.
    with safe_open(path, framework='pt') as f:
        header = f.metadata()
        assert f.get_tensor(METADATA_KEY).dtype == torch.uint8
    assert header['format'] == 'pt' and json.loads(header[METADATA_KEY])['task'] == 'lle'
    assert [p.name for p in tmp_path.iterdir()] == ['lle.safetensors']  # no temporary file left


def test_plain_safetensors_reads_like_a_raw_state_dict_whatever_its_name(lle_net, tmp_path):
    for name in ('plain.safetensors', 'plain.sft', 'plain.bin'):
        save_file(lle_net.state_dict(), tmp_path / name)
        sd, metadata = read_checkpoint(tmp_path / name)
        assert metadata == {} and all(torch.equal(v, lle_net.state_dict()[k]) for k, v in sd.items())
    net = load_checkpoint(RAMiT(**TINY_LLE), tmp_path / 'plain.bin')
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in net.state_dict().items())


def test_a_pickle_named_safetensors_is_never_unpickled(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return open, (str(marker), 'w')

    bad = tmp_path / 'evil.safetensors'
    bad.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match=r'^.*evil\.safetensors: not a readable safetensors file \(.*\)$'):
        read_checkpoint(bad)
    assert not marker.exists()


def test_truncated_file_and_bad_description_are_one_line_errors(lle_net, tmp_path):
    good = tmp_path / 'good.safetensors'
    write_safetensors(good, lle_net.state_dict(), config_metadata(lle_net))
    cut = tmp_path / 'cut.safetensors'
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(cut)
    assert str(err.value).startswith(f'{cut}: not a readable safetensors file (') and '\n' not in str(err.value)
    broken = tmp_path / 'broken.safetensors'
    save_file(lle_net.state_dict(), broken, metadata={METADATA_KEY: '{not json'})
    with pytest.raises(CheckpointError, match=f"^{broken}: its 'ramit_config' metadata is not a JSON object"):
        read_checkpoint(broken)


def test_basicsr_pretrain_network_g_takes_safetensors(lle_net, tmp_path):
    from ramit_plugin.models import RAMiTModel

    path = tmp_path / 'pre.safetensors'
    write_safetensors(path, lle_net.state_dict(), config_metadata(lle_net))
    models = tmp_path / 'models'
    models.mkdir()
    opt = dict(name='unit', model_type='RAMiTModel', scale=1, num_gpu=0, dist=False, rank=0, world_size=1,
               is_train=False, network_g=dict(type='RAMiT', **TINY_LLE),
               path=dict(pretrain_network_g=str(path), strict_load_g=True, models=str(models)))
    model = RAMiTModel(opt)
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in model.net_g.state_dict().items())


def test_mmengine_pretrained_takes_safetensors(lle_net, tmp_path):
    from ramit_plugin.registry import MODELS

    path = tmp_path / 'pre.safetensors'
    write_safetensors(path, lle_net.state_dict(), config_metadata(lle_net))
    restorer = MODELS.build(dict(type='RAMiTRestorer', generator=dict(type='RAMiT', **TINY_LLE),
                                 pretrained=str(path)))
    assert all(torch.equal(v, lle_net.state_dict()[k]) for k, v in restorer.generator.state_dict().items())


def test_training_saves_safetensors_beside_the_pth_when_asked(tmp_path):
    from ramit_plugin.models import RAMiTModel

    models, states = tmp_path / 'models', tmp_path / 'training_states'
    models.mkdir()
    states.mkdir()
    network = dict(type='RAMiT', **TINY_LLE)
    opt = dict(name='unit', model_type='RAMiTModel', scale=1, num_gpu=0, dist=False, rank=0, world_size=1,
               is_train=True, network_g=network, logger=dict(save_safetensors=True),
               path=dict(pretrain_network_g=None, strict_load_g=True, models=str(models), training_states=str(states)),
               datasets=dict(train=dict(gt_size=32, batch_size_per_gpu=2)),
               train=dict(ema_decay=0.5, optim_g=dict(type='Adam', lr=1e-2),
                          scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5),
                          pixel_opt=dict(type='L1Loss', loss_weight=1.0)))
    model = RAMiTModel(opt)
    model.feed_data(dict(lq=torch.rand(2, 3, 32, 32), gt=torch.rand(2, 3, 32, 32)))
    model.optimize_parameters(1)
    model.save(epoch=0, current_iter=1)
    assert sorted(p.name for p in models.iterdir()) == ['net_g_1.pth', 'net_g_1.safetensors']
    sd, metadata = read_checkpoint(models / 'net_g_1.safetensors')
    ema = model.net_g_ema.state_dict()
    assert not all(torch.equal(v, model.net_g.state_dict()[k]) for k, v in ema.items())
    assert all(torch.equal(v, ema[k]) for k, v in sd.items())  # the EMA weights, as inference reads the .pth
    assert metadata == read_checkpoint(models / 'net_g_1.pth')[1] == config_metadata(model.net_g)
