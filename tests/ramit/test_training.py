"""What both trainers share: the progressive patch schedule (stage lookup at exact iterations, option validation,
aligned crops)."""
import pytest
import torch

from ramit.errors import OptionError
from ramit.training import ProgressiveSchedule, crop_batch, stage_message

PAPER = dict(iters=[0, 92000, 184000], gt_sizes=[64, 96, 128], batch_sizes=[32, 16, 8])
OPTION = 'train:progressive'
# Where the delivered patch and batch come from, as BasicSR's RAMiTModel names them.
LIMITS = ('datasets:train:gt_size', 'datasets:train:batch_size_per_gpu')


def schedule_of(prog: dict, gt_size=128, batch_size=32, scale: int = 2) -> ProgressiveSchedule:
    """``ProgressiveSchedule.from_options`` as RAMiTModel calls it for an x``scale`` run."""
    return ProgressiveSchedule.from_options(prog, gt_size, batch_size, scale, OPTION, LIMITS)


def test_stages_switch_exactly_at_the_configured_iterations():
    schedule = schedule_of(PAPER)
    assert schedule.sizes(1) == (64, 32)
    assert schedule.sizes(91999) == (64, 32)
    assert schedule.sizes(92000) == (96, 16)
    assert schedule.sizes(183999) == (96, 16)
    assert schedule.sizes(184000) == (128, 8)
    assert schedule.sizes(10 ** 7) == (128, 8)
    assert [schedule.stage(i) for i in (1, 92000, 184000)] == [0, 1, 2]
    assert stage_message(92000, 96, 16) == 'progressive: iter 92000 -> patch 96, batch 16'


@pytest.mark.parametrize('change, message', [
    (dict(iters=[0, 200, 100]), 'iters must start at 0 and increase strictly, got [0, 200, 100]'),
    (dict(iters=[5, 100, 200]), 'iters must start at 0'),
    (dict(gt_sizes=[64, 96]), 'must have the same length, got 3, 2, 3'),
    (dict(gt_sizes=[64, 96, 160]), 'at most datasets:train:gt_size (128)'),
    (dict(gt_sizes=[63, 96, 128]), 'a multiple of the scale 2'),
    (dict(batch_sizes=[64, 16, 8]), 'between 1 and datasets:train:batch_size_per_gpu (32)'),
    (dict(batch_sizes='32'), 'batch_sizes must be a non-empty list of integers'),
])
def test_invalid_schedules_give_one_line_errors(change, message):
    with pytest.raises(OptionError) as err:
        schedule_of(dict(PAPER, **change))
    assert str(err.value).startswith('train:progressive: ')
    assert message in str(err.value)
    assert '\n' not in str(err.value)


def test_missing_keys_are_named():
    with pytest.raises(OptionError, match=r'^train:progressive: needs keys iters, gt_sizes, batch_sizes \(missing: '
                                          r'batch_sizes; unknown: patch\)$'):
        schedule_of(dict(iters=[0], gt_sizes=[64], patch=[1]), gt_size=64, batch_size=8)
    with pytest.raises(OptionError, match='^model.progressive: must be a mapping'):
        ProgressiveSchedule.from_options([0, 64, 8], None, None, 2, 'model.progressive', LIMITS)


def test_without_limits_only_the_schedule_itself_is_checked():
    """mmengine's restorer checks the schedule when it is built, the patch and batch at the first batch."""
    schedule = ProgressiveSchedule.from_options(dict(PAPER, gt_sizes=[64, 96, 512], batch_sizes=[64, 16, 8]),
                                                None, None, 4, 'model.progressive', LIMITS)
    assert schedule.sizes(184000) == (512, 8)
    with pytest.raises(OptionError, match=r'^model.progressive: gt_sizes \[64, 96, 510\]: each must be positive, a '
                                          r'multiple of the scale 4$'):
        ProgressiveSchedule.from_options(dict(PAPER, gt_sizes=[64, 96, 510]), None, None, 4, 'model.progressive',
                                         LIMITS)
    with pytest.raises(OptionError, match=r'^model.progressive: batch_sizes \[32, 0, 8\]: each must be at least 1$'):
        ProgressiveSchedule.from_options(dict(PAPER, batch_sizes=[32, 0, 8]), None, None, 4, 'model.progressive',
                                         LIMITS)


def test_crop_keeps_lq_and_gt_aligned_and_subsamples_the_batch():
    torch.manual_seed(0)
    lq = torch.rand(8, 3, 20, 24)
    gt = lq.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3)  # nearest x3: GT pixel blocks = LQ pixels
    small_lq, small_gt = crop_batch(lq, gt, gt_size=30, batch=3, scale=3)
    assert small_lq.shape == (3, 3, 10, 10) and small_gt.shape == (3, 3, 30, 30)
    assert torch.equal(small_gt, small_lq.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3))
    # Every kept sample is a crop of a distinct input sample.
    sources = {i for s in small_lq for i in range(8) if any(
        torch.equal(s, lq[i, :, top:top + 10, left:left + 10]) for top in range(11) for left in range(15))}
    assert len(sources) == 3


def test_crop_rejects_a_patch_larger_than_the_batch():
    with pytest.raises(OptionError, match='larger than the LQ batch'):
        crop_batch(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16), gt_size=32, batch=2, scale=2)
