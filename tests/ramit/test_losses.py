"""The losses basicsr 1.4.2 lacks, as plain torch modules: FFTLoss (L1 between rfft2 spectra) and SSIMLoss (1 - SSIM
with basicsr's window); zero on equal inputs, hand-computed values, gradients, one-line option errors.

Their registration in BasicSR's LOSS_REGISTRY and mmengine's MODELS (build_loss(dict(type='FFTLoss', ...)), the
combination with basicsr's L1Loss from an option file) is the adapters' business, tested with ramit_plugin.
"""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ramit.errors import OptionError
from ramit.losses import FFTLoss, SSIMLoss, ssim_map


# ---------------------------------------------------------------------------------------------------- FFTLoss
def test_fft_identical_inputs_give_zero():
    x = torch.rand(2, 3, 16, 12)
    assert FFTLoss()(x, x.clone()).item() == 0.0


def test_fft_hand_computed_spectra():
    zero = torch.zeros(1, 1, 2, 2)
    delta = zero.clone()
    delta[0, 0, 0, 0] = 1
    # rfft2 of a unit impulse: every one of the 2 x 2 coefficients is 1 + 0j -> |dRe| = 1 four times, |dIm| = 0
    # four times: mean 0.5, sum 4.
    assert FFTLoss()(zero, delta).item() == 0.5
    assert FFTLoss(reduction='sum')(zero, delta).item() == 4.0
    assert FFTLoss(loss_weight=0.1)(zero, delta).item() == pytest.approx(0.05)
    assert FFTLoss(reduction='none')(zero, delta).shape == (1, 1, 2, 2, 2)
    # A constant 0.5 on 4 x 4: only the DC coefficient, 0.5 * 16 = 8, among 4 * 3 * 2 = 24 entries; 'ortho' divides
    # the spectrum by sqrt(16).
    const = torch.full((1, 1, 4, 4), 0.5)
    assert FFTLoss()(const, torch.zeros_like(const)).item() == pytest.approx(8 / 24)
    assert FFTLoss(norm='ortho')(const, torch.zeros_like(const)).item() == pytest.approx(2 / 24)


def test_fft_gradients_flow_and_descent_reaches_the_target():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    pred = torch.zeros_like(target, requires_grad=True)
    loss_fn = FFTLoss(loss_weight=1.0)
    first = loss_fn(pred, target)
    first.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    optim = torch.optim.Adam([pred], lr=0.05)
    for _ in range(200):
        optim.zero_grad()
        loss = loss_fn(pred, target)
        loss.backward()
        optim.step()
    assert loss.item() < 0.05 * first.item()
    assert (pred.detach() - target).abs().max() < 0.05


@pytest.mark.parametrize('kwargs, message', [(dict(reduction='avg'), 'FFTLoss: reduction must be one of'),
                                             (dict(norm='unit'), 'FFTLoss: norm must be one of')])
def test_fft_bad_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        FFTLoss(**kwargs)
    assert issubclass(OptionError, ValueError)


# --------------------------------------------------------------------------------------------------- SSIMLoss
def test_ssim_identical_inputs_give_zero():
    x = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    assert SSIMLoss()(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_constant_images_have_the_closed_form_value():
    # Constant a vs b: all variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2.
    a, b = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64), torch.full((1, 1, 16, 16), 0.25, dtype=torch.float64)
    expected = 1 - (2 * 0.5 * 0.25 + 1e-4) / (0.5 ** 2 + 0.25 ** 2 + 1e-4)
    assert SSIMLoss()(a, b).item() == pytest.approx(expected, abs=1e-12)
    assert SSIMLoss(loss_weight=2.0)(a.float(), b.float()).item() == pytest.approx(2 * expected, abs=1e-4)
    assert SSIMLoss(reduction='none')(a, b).shape == (1, 1, 6, 6)


def test_matches_the_usual_gaussian_ssim():
    """Wang et al.'s SSIM as scikit-image computes it (Gaussian window, sigma 1.5, radius 5: 11x11, population
    statistics), which is basicsr's calculate_ssim_pt too: the same mean over the valid window positions."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 30, dtype=torch.float64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    expected = np.mean([structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=1.0, channel_axis=0)
                        for a, b in zip(x.numpy(), y.numpy())])
    assert 1 - SSIMLoss()(x, y).item() == pytest.approx(expected, abs=1e-10)
    assert ssim_map(x, y).shape == (2, 3, 30, 20)


def test_gradients_flow_and_losses_combine_with_their_weights():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 24, 24)
    pred = (target + 0.2 * torch.randn_like(target)).requires_grad_()
    parts = [torch.nn.L1Loss()(pred, target), FFTLoss(loss_weight=0.1)(pred, target),
             SSIMLoss(loss_weight=0.5)(pred, target)]
    total = sum(parts)
    unweighted = [torch.nn.L1Loss()(pred, target).item(), FFTLoss()(pred, target).item(),
                  SSIMLoss()(pred, target).item()]
    assert total.item() == pytest.approx(unweighted[0] + 0.1 * unweighted[1] + 0.5 * unweighted[2], rel=1e-6)
    parts[2].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = pred - 0.5 * pred.grad / pred.grad.abs().max()
    assert SSIMLoss()(stepped, target).item() < SSIMLoss()(pred, target).item()


def test_too_small_images_and_bad_reduction_are_one_line_errors():
    with pytest.raises(OptionError, match=r'^SSIMLoss: images must be at least 11x11 \(the SSIM window\), '
                                          r'got \(8, 12\)$'):
        SSIMLoss()(torch.rand(1, 1, 8, 12), torch.rand(1, 1, 8, 12))
    with pytest.raises(OptionError, match='^SSIMLoss: reduction must be one of none, mean, sum'):
        SSIMLoss(reduction='avg')
