"""RAMiTModel in-process on a tiny RAMiT: protocol test(), loading, warm start, losses, AMP, clipping, NaN, saves."""
import copy
import logging
import math
import os
import stat
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

import pytest
import torch

import ramit_plugin  # noqa: F401  (registers RAMiT and RAMiTModel)
from basicsr.utils import get_root_logger
from ramit.checkpoint import CheckpointMismatchError, infer_arguments, read_checkpoint
from ramit.errors import OptionError
from ramit.network import RAMiT
from ramit.precision import AMP_DTYPES
from ramit.protocol import protocol_forward
from ramit.training import NonFiniteLossError
from ramit_plugin.models import RAMiTModel

TINY = dict(variant='RAMiT-1', task='sr', dim=16, depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 2], window_size=4)


def make_opt(tmp_path: Path, scale: int = 2, is_train: bool = True, path: Optional[dict] = None, **train) -> dict:
    """Options as basicsr's parse_options would hand them to the model (CPU, one process)."""
    models, states = tmp_path / 'models', tmp_path / 'training_states'
    models.mkdir(exist_ok=True)
    states.mkdir(exist_ok=True)
    opt = dict(name='unit', model_type='RAMiTModel', scale=scale, num_gpu=0, dist=False, rank=0, world_size=1,
               is_train=is_train, network_g=dict(type='RAMiT', upscale=scale, **TINY),
               path=dict(dict(pretrain_network_g=None, strict_load_g=True, models=str(models),
                              training_states=str(states)), **(path or {})),
               datasets=dict(train=dict(gt_size=16 * scale, batch_size_per_gpu=4)))
    if is_train:
        opt['train'] = dict(optim_g=dict(type='Adam', lr=1e-2),
                            scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5),
                            pixel_opt=dict(type='L1Loss', loss_weight=1.0), **train)
    return opt


def batch(scale: int = 2, n: int = 4, size: int = 16, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random LQ/GT training batch."""
    g = torch.Generator().manual_seed(seed)
    return dict(lq=torch.rand(n, 3, size, size, generator=g),
                gt=torch.rand(n, 3, size * scale, size * scale, generator=g))


def tiny_checkpoint(path: Path, scale: int = 2, seed: int = 1, wrap: Optional[Iterable[str]] = None
                    ) -> Dict[str, torch.Tensor]:
    """Save a tiny RAMiT's state dict (raw, or under BasicSR's param keys) and return the state dict."""
    torch.manual_seed(seed)
    sd = RAMiT(upscale=scale, **TINY).state_dict()
    torch.save({key: sd for key in wrap} if wrap else sd, path)
    return sd


@pytest.fixture
def log_lines() -> Iterator[List[str]]:
    """Messages basicsr's root logger emits during the test (it does not propagate to pytest's caplog)."""
    logger = get_root_logger()
    records, level = [], logger.level
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def params(net: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Detached copies of a network's parameters by name."""
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def test_test_uses_the_symmetric_padding_protocol_and_the_ema_net(tmp_path):
    model = RAMiTModel(make_opt(tmp_path, ema_decay=0.5))
    with torch.no_grad():
        for p in model.net_g_ema.parameters():
            p.add_(0.01)
    lq = torch.rand(1, 3, 21, 27)  # not a multiple of the pad unit: symmetric vs zero padding differ
    model.feed_data(dict(lq=lq))
    model.test()
    model.net_g_ema.eval()
    with torch.no_grad():
        expected = protocol_forward(model.net_g_ema, lq, scale=2, multiple=16)
        zero_padded = model.net_g_ema(lq)  # the network's own (zero) padding
    assert model.output.shape == (1, 3, 42, 54)
    assert torch.allclose(model.output, expected, atol=1e-6)
    assert not torch.allclose(model.output, zero_padded, atol=1e-3)
    assert model.net_g.training  # test() leaves the training net in training mode


def test_loads_raw_and_basicsr_checkpoints_honouring_param_key(tmp_path):
    raw = tiny_checkpoint(tmp_path / 'raw.pth', seed=1)
    model = RAMiTModel(make_opt(tmp_path, is_train=False, path=dict(pretrain_network_g=str(tmp_path / 'raw.pth'))))
    assert all(torch.equal(v, raw[k]) for k, v in model.net_g.state_dict().items())

    ema = tiny_checkpoint(tmp_path / 'ema.pth', seed=2)
    plain = tiny_checkpoint(tmp_path / 'plain.pth', seed=3)
    torch.save(dict(params=plain, params_ema=ema), tmp_path / 'basicsr.pth')
    for key, expected in (('params', plain), ('params_ema', ema)):
        opt = make_opt(tmp_path, is_train=False, path=dict(pretrain_network_g=str(tmp_path / 'basicsr.pth'),
                                                           param_key_g=key))
        loaded = RAMiTModel(opt).net_g.state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in loaded.items()), key


def test_checkpoint_of_another_scale_is_a_one_line_error_naming_the_file(tmp_path):
    tiny_checkpoint(tmp_path / 'x3.pth', scale=3)
    opt = make_opt(tmp_path, is_train=False, path=dict(pretrain_network_g=str(tmp_path / 'x3.pth')))
    with pytest.raises(CheckpointMismatchError) as err:
        RAMiTModel(opt)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'x3.pth'}: checkpoint does not fit")
    assert 'x3 SR' in message and 'x2 SR' in message and '\n' not in message


def test_warm_start_trains_only_to_target_then_everything(tmp_path, log_lines):
    x2 = tiny_checkpoint(tmp_path / 'x2.pth', scale=2)
    opt = make_opt(tmp_path, scale=3, path=dict(pretrain_network_g=str(tmp_path / 'x2.pth')), warm_start_iter=3,
                   ema_decay=0.9)
    # AdamW with weight decay and momentum would move every parameter it steps, even with a zero gradient.
    opt['train']['optim_g'] = dict(type='AdamW', lr=1e-2, weight_decay=0.5)
    model = RAMiTModel(opt)
    start = params(model.net_g)
    assert all(torch.equal(v, x2[k]) for k, v in start.items() if not k.startswith('to_target.'))
    # to_target.* is not taken from x2 (its MobiVari blocks have the same shapes at every scale).
    key = 'to_target.mobivari.mobivari0.pw_conv.weight'
    assert start[key].shape == x2[key].shape and not torch.equal(start[key], x2[key])
    for it in (1, 2, 3):
        model.feed_data(batch(scale=3, seed=it))
        model.optimize_parameters(it)
        now = params(model.net_g)
        assert all(torch.equal(now[k], x2[k]) for k in now if not k.startswith('to_target.')), it
        assert all(not torch.equal(now[k], start[k]) for k in now if k.startswith('to_target.')), it
    model.feed_data(batch(scale=3, seed=4))
    model.optimize_parameters(4)
    now = params(model.net_g)
    body = [k for k in now if not k.startswith('to_target.')]
    assert all(not torch.equal(now[k], x2[k]) for k in body)
    assert any(m.startswith('warm start: iter 1 to 3 train only to_target.*') for m in log_lines)
    assert 'warm start: iter 4: all parameters train from now on' in log_lines


def test_several_weighted_losses_are_combined_and_logged(tmp_path):
    opt = make_opt(tmp_path, mse_opt=dict(type='MSELoss', loss_weight=0.5),
                   charb_opt=dict(type='CharbonnierLoss', loss_weight=0.25))
    model = RAMiTModel(opt)
    data = batch()
    model.feed_data(data)
    model.optimize_parameters(1)
    log = model.get_current_log()
    assert list(log) == ['l_pix', 'l_mse', 'l_charb', 'l_total']
    out = model.output.detach()
    assert log['l_pix'] == pytest.approx(torch.mean(torch.abs(out - data['gt'])).item(), rel=1e-5)
    assert log['l_mse'] == pytest.approx(0.5 * torch.mean((out - data['gt']) ** 2).item(), rel=1e-5)
    assert log['l_total'] == pytest.approx(log['l_pix'] + log['l_mse'] + log['l_charb'], rel=1e-5)


def test_nan_loss_stops_before_the_step_and_names_the_loss(tmp_path):
    model = RAMiTModel(make_opt(tmp_path))
    before = params(model.net_g)
    data = batch()
    data['gt'][0, 0, 0, 0] = float('nan')
    model.feed_data(data)
    with pytest.raises(NonFiniteLossError) as err:
        model.optimize_parameters(7)
    assert str(err.value).startswith('training stopped at iter 7: loss l_pix is nan')
    assert str(err.value).endswith('no usable checkpoint had been saved yet')
    assert all(torch.equal(v, before[k]) for k, v in params(model.net_g).items())
    assert os.listdir(tmp_path / 'models') == []


def test_gradient_clipping_bounds_the_gradient_norm(tmp_path):
    model = RAMiTModel(make_opt(tmp_path, grad_clip=1e-3))
    model.feed_data(batch())
    model.optimize_parameters(1)
    grads = [p.grad for p in model.net_g.parameters() if p.grad is not None]
    assert torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) <= 1e-3 * 1.0001


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
def test_amp_bf16_and_fp16_track_the_float32_loss(tmp_path, fast):
    """Both autocast dtypes on both paths: the half type really runs, losses stay finite and follow float32's."""
    curves = {}
    for amp in (None, 'bf16', 'fp16'):
        torch.manual_seed(0)
        opt = make_opt(tmp_path, **({'amp': amp} if amp else {}))
        opt['network_g']['fast'] = fast
        model = RAMiTModel(opt)
        conv_dtypes = []
        model.net_g.shallow.conv.register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
        curves[amp] = []
        for it in range(1, 9):
            model.feed_data(batch(seed=it))
            model.optimize_parameters(it)
            curves[amp].append(model.get_current_log()['l_pix'])
        assert set(conv_dtypes) == {AMP_DTYPES.get(amp, torch.float32)}
        assert (model.scaler is not None) == (amp == 'fp16')
    for amp in ('bf16', 'fp16'):
        assert all(math.isfinite(v) for v in curves[amp])
        assert max(abs(a - b) / b for a, b in zip(curves[amp], curves[None])) < 0.02
    assert curves[None][-1] < curves[None][0]


def test_fp16_grad_scaler_state_is_saved_and_restored(tmp_path):
    """The scaler's scale and growth tracker go into the training state and come back on resume."""
    model = RAMiTModel(make_opt(tmp_path, amp='fp16'))
    model.feed_data(batch())
    model.optimize_parameters(1)
    model.scaler.update(1234.0)  # a scale no fresh scaler has
    model.save_training_state(epoch=0, current_iter=1)
    state = torch.load(tmp_path / 'training_states' / '1.state', weights_only=True)
    assert state['scaler']['scale'] == 1234.0
    resumed = RAMiTModel(make_opt(tmp_path, amp='fp16'))
    resumed.resume_training(state)
    assert resumed.scaler.get_scale() == 1234.0


def test_adamw_is_accepted_and_unknown_optimizers_list_the_valid_ones(tmp_path):
    opt = make_opt(tmp_path)
    opt['train']['optim_g'] = dict(type='AdamW', lr=1e-3, weight_decay=0.01)
    assert type(RAMiTModel(opt).optimizer_g) is torch.optim.AdamW
    opt['train']['optim_g'] = dict(type='SGD', lr=1e-3)
    with pytest.raises(ValueError, match=r"train:optim_g:type 'SGD' is not supported; valid: Adam, AdamW"):
        RAMiTModel(opt)


def test_progressive_crops_and_logs_switches_at_exact_iterations(tmp_path, log_lines):
    model = RAMiTModel(make_opt(tmp_path, progressive=dict(iters=[0, 3, 5], gt_sizes=[16, 24, 32],
                                                           batch_sizes=[4, 2, 1])))
    shapes = []
    for it in range(1, 7):
        model.feed_data(batch(size=16))
        model.optimize_parameters(it)
        shapes.append((tuple(model.lq.shape), tuple(model.gt.shape)))
    assert shapes[:2] == [((4, 3, 8, 8), (4, 3, 16, 16))] * 2
    assert shapes[2:4] == [((2, 3, 12, 12), (2, 3, 24, 24))] * 2
    assert shapes[4:] == [((1, 3, 16, 16), (1, 3, 32, 32))] * 2
    assert [m for m in log_lines if m.startswith('progressive')] == [
        'progressive: iter 1 -> patch 16, batch 4', 'progressive: iter 3 -> patch 24, batch 2',
        'progressive: iter 5 -> patch 32, batch 1']


def test_interrupted_saves_leave_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    model = RAMiTModel(make_opt(tmp_path))
    model.save(epoch=0, current_iter=5)
    pth, state = tmp_path / 'models' / 'net_g_5.pth', tmp_path / 'training_states' / '5.state'
    good = pth.read_bytes(), state.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        model.save_network(model.net_g, 'net_g', 5)
    with pytest.raises(OSError, match='disk full'):
        model.save_training_state(0, 5)
    assert (pth.read_bytes(), state.read_bytes()) == good
    assert sorted(os.listdir(tmp_path / 'models')) == ['net_g_5.pth']
    assert sorted(os.listdir(tmp_path / 'training_states')) == ['5.state']


def test_resume_restores_optimizer_and_scheduler_state_with_weights_only(tmp_path):
    opt = make_opt(tmp_path, warmup_iter=3)
    model = RAMiTModel(copy.deepcopy(opt))
    for it in (1, 2, 3, 4):
        model.update_learning_rate(it, warmup_iter=3)
        model.feed_data(batch(seed=it))
        model.optimize_parameters(it)
    model.save(epoch=1, current_iter=4)
    state = torch.load(tmp_path / 'training_states' / '4.state', map_location='cpu', weights_only=True)
    resumed = RAMiTModel(copy.deepcopy(opt))
    resumed.resume_training(state)
    saved, loaded = model.optimizer_g.state_dict(), resumed.optimizer_g.state_dict()
    assert saved['param_groups'] == loaded['param_groups']
    assert all(torch.equal(saved['state'][i][key], loaded['state'][i][key])
               for i in saved['state'] for key in saved['state'][i])
    assert resumed.schedulers[0].state_dict() == model.schedulers[0].state_dict()
    assert resumed.get_current_learning_rate() == model.get_current_learning_rate()


def test_saved_checkpoints_get_the_umask_mode_and_describe_their_network(tmp_path, umask_022):
    model = RAMiTModel(make_opt(tmp_path, ema_decay=0.5))
    model.save(epoch=0, current_iter=3)
    pth, state = tmp_path / 'models' / 'net_g_3.pth', tmp_path / 'training_states' / '3.state'
    assert stat.S_IMODE(pth.stat().st_mode) == stat.S_IMODE(state.stat().st_mode) == 0o644
    sd, description, entry = read_checkpoint(pth)
    assert entry == 'params_ema'
    assert infer_arguments(sd, description) == dict(variant='RAMiT-1', task='sr', upscale=2, dim=16,
                                                    depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 2), window_size=4)
    assert all(torch.equal(v, model.net_g_ema.state_dict()[k]) for k, v in sd.items())  # EMA weights first


def test_check_memory_takes_the_largest_progressive_stage_and_names_the_batch_option(tmp_path, monkeypatch):
    import ramit.training

    model = RAMiTModel(make_opt(tmp_path, progressive=dict(iters=[0, 3], gt_sizes=[16, 32], batch_sizes=[4, 2])))
    need = ramit.training.training_step_bytes(model.net_g, 2, 16)  # stage 2: 2 x 16x16 LQ, more than 4 x 8x8
    monkeypatch.setattr(ramit.training, 'available_bytes', lambda device: int(need) + 1)
    model.check_memory()
    monkeypatch.setattr(ramit.training, 'available_bytes', lambda device: int(need) - 1)
    with pytest.raises(OptionError) as err:
        model.check_memory()
    assert str(err.value).startswith('datasets:train:batch_size_per_gpu: 2 patches of 16x16 LQ pixels need about ')
    assert str(err.value).endswith('GiB available; use a smaller batch or patch') and '\n' not in str(err.value)


def test_a_finite_step_does_not_read_the_experiment_folder(tmp_path, monkeypatch):
    """The last good checkpoint is looked up for the message of a stopped run only, not at every iteration."""
    from ramit_plugin.models import ramit_model

    def no_scan(*args, **kwargs):
        raise AssertionError('the experiment folder was read')

    model = RAMiTModel(make_opt(tmp_path))
    model.save(epoch=0, current_iter=1)
    monkeypatch.setattr(ramit_model, 'newest_usable', no_scan)
    model.feed_data(batch())
    model.optimize_parameters(2)
