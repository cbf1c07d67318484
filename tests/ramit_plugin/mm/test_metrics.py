"""PSNRSSIMMetric: basicsr's PSNR/SSIM on the protocol's uint8 images, RGB or BT.601 Y, with a crop border."""
import math

import pytest
import torch
from basicsr.metrics import calculate_ssim
from basicsr.utils import tensor2img

from ramit_plugin.mm.metrics import PSNRSSIMMetric
from ramit_plugin.registry import METRICS


def samples(offset: int) -> list:
    """Two GT images on the 8-bit grid and predictions ``offset`` grey levels brighter (plus sub-level noise)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        gt = torch.randint(20, 200, (3, 24, 20), generator=gen).float() / 255
        # Values within 0.3 of a level round back to it: the metric sees exactly gt + offset levels.
        pred = gt + (offset + 0.6 * (torch.rand(gt.shape, generator=gen) - 0.5)) / 255
        out.append(dict(pred=pred, gt=gt))
    return out


def evaluate(metric: PSNRSSIMMetric, data: list) -> dict:
    """The metric's result on ``data`` (dicts with 'pred' and 'gt')."""
    metric.process({}, data)
    return metric.compute_metrics(metric.results)


def test_rgb_psnr_of_a_constant_offset_and_ssim_equal_basicsr():
    data = samples(2)
    result = evaluate(METRICS.build(dict(type='PSNRSSIMMetric')), data)
    assert result['PSNR'] == pytest.approx(10 * math.log10(255 ** 2 / 4), abs=1e-9)
    expected_ssim = sum(calculate_ssim(*tensor2img([d['pred'], d['gt']]), 0) for d in data) / 2
    assert result['SSIM'] == pytest.approx(expected_ssim, abs=1e-12)


def test_y_channel_psnr_with_crop_border():
    result = evaluate(PSNRSSIMMetric(crop_border=2, test_y_channel=True, metrics=('PSNR',)), samples(2))
    # BT.601 Y moves by (65.481 + 128.553 + 24.966) / 255 of the RGB offset.
    y_offset = 2 * 219.0 / 255
    assert result == {'PSNR': pytest.approx(10 * math.log10(255 ** 2 / y_offset ** 2), abs=1e-3)}


def test_prediction_is_clamped_before_scoring():
    gt = torch.ones(3, 8, 8)
    result = evaluate(PSNRSSIMMetric(metrics=('PSNR',)), [dict(pred=gt + 0.5, gt=gt)])
    assert result['PSNR'] == float('inf')


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="subset of PSNR, SSIM, got \\['LPIPS'\\]"):
        PSNRSSIMMetric(metrics=('LPIPS',))


def test_crop_border_scale_crops_each_samples_own_scale():
    gt = torch.full((3, 12, 12), 0.5)
    pred = torch.zeros_like(gt)
    pred[:, 2:-2, 2:-2] = 0.5  # wrong only in the 2-pixel frame
    metric = PSNRSSIMMetric(crop_border='scale', metrics=('PSNR',))
    assert evaluate(metric, [dict(pred=pred, gt=gt, scale=2)])['PSNR'] == float('inf')
    assert evaluate(PSNRSSIMMetric(crop_border='scale', metrics=('PSNR',)),
                    [dict(pred=pred, gt=gt, scale=1)])['PSNR'] < 20
    with pytest.raises(ValueError, match="crop_border must be a number of pixels or 'scale', got 'auto'"):
        PSNRSSIMMetric(crop_border='auto')
