"""SSIMLoss: 1 - SSIM with basicsr's window; zero on equal inputs, hand-computed value, gradients, combinations."""
import pytest
import torch

import ramit_plugin  # noqa: F401  (registers the losses)
from basicsr.losses import build_loss
from basicsr.metrics.psnr_ssim import calculate_ssim_pt
from ramit_plugin.losses import SSIMLoss


def test_identical_inputs_give_zero():
    x = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    assert SSIMLoss()(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_constant_images_have_the_closed_form_value():
    # Constant a vs b: all variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2.
    a, b = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64), torch.full((1, 1, 16, 16), 0.25, dtype=torch.float64)
    expected = 1 - (2 * 0.5 * 0.25 + 1e-4) / (0.5 ** 2 + 0.25 ** 2 + 1e-4)
    assert SSIMLoss()(a, b).item() == pytest.approx(expected, abs=1e-12)
    assert SSIMLoss(loss_weight=2.0)(a.float(), b.float()).item() == pytest.approx(2 * expected, abs=1e-4)
    assert SSIMLoss(reduction='none')(a, b).shape == (1, 1, 6, 6)


def test_matches_basicsrs_ssim_metric():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 30, dtype=torch.float64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    metric = calculate_ssim_pt(x, y, crop_border=0).mean().item()
    assert 1 - SSIMLoss()(x, y).item() == pytest.approx(metric, abs=1e-10)


def test_gradients_flow_and_losses_combine_with_their_weights():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 24, 24)
    pred = (target + 0.2 * torch.randn_like(target)).requires_grad_()
    specs = [dict(type='L1Loss', loss_weight=1.0), dict(type='FFTLoss', loss_weight=0.1),
             dict(type='SSIMLoss', loss_weight=0.5)]
    losses = [build_loss(dict(spec)) for spec in specs]
    parts = [loss(pred, target) for loss in losses]
    total = sum(parts)
    unweighted = [build_loss(dict(spec, loss_weight=1.0))(pred, target).item() for spec in specs]
    assert total.item() == pytest.approx(unweighted[0] + 0.1 * unweighted[1] + 0.5 * unweighted[2], rel=1e-6)
    parts[2].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = pred - 0.5 * pred.grad / pred.grad.abs().max()
    assert SSIMLoss()(stepped, target).item() < SSIMLoss()(pred, target).item()


def test_too_small_images_and_bad_reduction_are_one_line_errors():
    with pytest.raises(ValueError, match=r'^SSIMLoss: images must be at least 11x11 \(the SSIM window\), '
                                         r'got \(8, 12\)$'):
        SSIMLoss()(torch.rand(1, 1, 8, 12), torch.rand(1, 1, 8, 12))
    with pytest.raises(ValueError, match='^SSIMLoss: reduction must be one of none, mean, sum'):
        SSIMLoss(reduction='avg')
