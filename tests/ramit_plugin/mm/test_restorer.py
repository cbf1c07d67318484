"""RAMiTRestorer and RAMiTDataPreprocessor: forward modes, padding of mixed sizes, eval protocol, progressive."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.structures import BaseDataElement

from ramit.errors import OptionError
from ramit.protocol import protocol_forward
from ramit_plugin.mm.restorer import RAMiTRestorer
from tests.ramit_plugin.mm.conftest import TINY_GENERATOR as GENERATOR


def sample(h: int, w: int, seed: int) -> tuple:
    """(LQ [3, h, w], data sample with a 2x GT) of random values."""
    gen = torch.Generator().manual_seed(seed)
    data_sample = BaseDataElement(metainfo=dict(key=f'img{seed}'))
    data_sample.gt = torch.rand(3, 2 * h, 2 * w, generator=gen)
    return torch.rand(3, h, w, generator=gen), data_sample


@pytest.fixture(scope='module')
def restorer() -> RAMiTRestorer:
    """A restorer of the tiny x2 generator with random weights, in eval mode."""
    torch.manual_seed(0)
    return RAMiTRestorer(generator=GENERATOR, pixel_loss=dict(type='L1Loss')).eval()


def test_predict_on_mixed_sizes_equals_the_protocol_per_image(restorer):
    pairs = [sample(13, 21, 0), sample(17, 9, 1)]
    data = restorer.data_preprocessor(dict(inputs=[p[0] for p in pairs], data_samples=[p[1] for p in pairs]))
    assert data['inputs'].shape == (2, 3, 17, 21)  # zero-padded to the largest
    out = restorer(**data, mode='predict')
    for (lq, _), result in zip(pairs, out):
        expected = protocol_forward(restorer.generator, lq[None])[0]
        assert result.pred.shape == (3, 2 * lq.shape[1], 2 * lq.shape[2])
        assert torch.allclose(result.pred, expected, atol=1e-6)


def test_predict_on_equal_sizes_runs_one_batch(restorer):
    pairs = [sample(12, 12, 2), sample(12, 12, 3)]
    data = restorer.data_preprocessor(dict(inputs=[p[0] for p in pairs], data_samples=[p[1] for p in pairs]))
    out = restorer(**data, mode='predict')
    batch = protocol_forward(restorer.generator, torch.stack([p[0] for p in pairs]))
    assert torch.allclose(torch.stack([o.pred for o in out]), batch, atol=1e-6)
    without_samples = restorer(data['inputs'], mode='predict')  # e.g. inference on LQ images only
    assert torch.equal(torch.stack([o.pred for o in without_samples]), torch.stack([o.pred for o in out]))


def test_uint8_images_are_scaled_to_the_unit_range(restorer):
    lq, data_sample = sample(6, 5, 6)
    lq8, gt8 = (torch.round(t * 255).to(torch.uint8) for t in (lq, data_sample.gt))
    data_sample.gt = gt8
    data = restorer.data_preprocessor(dict(inputs=[lq8], data_samples=[data_sample]))
    assert data['inputs'].dtype == torch.float32 and torch.equal(data['inputs'][0], lq8.float() / 255)
    assert torch.equal(data['data_samples'][0].gt, gt8.float() / 255)


def test_loss_and_tensor_modes(restorer):
    pairs = [sample(8, 8, 4), sample(8, 8, 5)]
    data = restorer.data_preprocessor(dict(inputs=[p[0] for p in pairs], data_samples=[p[1] for p in pairs]),
                                      training=True)
    raw = restorer(data['inputs'], mode='tensor')
    assert raw.shape == (2, 3, 16, 16)
    loss = restorer(**data, mode='loss')
    assert set(loss) == {'loss'}
    target = torch.stack([p[1].gt for p in pairs])
    assert torch.allclose(loss['loss'], F.l1_loss(raw, target))


def test_unknown_mode_is_a_clear_error(restorer):
    with pytest.raises(ValueError, match="mode must be 'tensor', 'loss' or 'predict', got 'train'"):
        restorer(torch.zeros(1, 3, 8, 8), mode='train')


def training_batch(restorer: RAMiTRestorer, count: int, size: int) -> dict:
    """A preprocessed training batch of ``count`` LQ size x size patches with their 2x GT."""
    pairs = [sample(size, size, seed) for seed in range(count)]
    return restorer.data_preprocessor(dict(inputs=[p[0] for p in pairs], data_samples=[p[1] for p in pairs]),
                                      training=True)


def test_progressive_patches_follow_the_iteration_the_runner_records():
    progressive = dict(iters=[0, 3], gt_sizes=[16, 32], batch_sizes=[2, 1])
    restorer = RAMiTRestorer(generator=GENERATOR, progressive=progressive)
    seen = []
    restorer.generator.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    hub = MessageHub.get_instance('test_progressive')  # the current hub, as a Runner's is while it trains
    data = training_batch(restorer, 2, 16)
    for finished in range(4):
        hub.update_info('iter', finished)  # RuntimeInfoHook's record before each training iteration
        restorer(**data, mode='loss')
    # Iterations 1-2: LQ patch 8 (GT 16) at batch 2; from iteration 3: LQ 16 at batch 1.
    assert seen == [(2, 3, 8, 8)] * 2 + [(1, 3, 16, 16)] * 2


def test_progressive_schedule_errors_name_the_option():
    with pytest.raises(ValueError, match=r'^model.progressive: iters must start at 0'):
        RAMiTRestorer(generator=GENERATOR, progressive=dict(iters=[5], gt_sizes=[16], batch_sizes=[2]))
    restorer = RAMiTRestorer(generator=GENERATOR, progressive=dict(iters=[0, 3], gt_sizes=[16, 64],
                                                                   batch_sizes=[2, 1]))
    # Larger than what the dataloader delivers: found at the first batch (one line in the CLIs).
    with pytest.raises(OptionError, match=r'^model.progressive: gt_sizes \[16, 64\]: each must be positive, a '
                       r'multiple of the scale 2 and at most the GT patch the train pipeline delivers \(32\)$'):
        restorer(**training_batch(restorer, 2, 16), mode='loss')
