"""FFTLoss: L1 between rfft2 spectra; zero on equal inputs, hand-computed values, gradients, basicsr registry."""
import pytest
import torch

import ramit_plugin  # noqa: F401  (registers the losses)
from basicsr.losses import build_loss
from ramit_plugin.losses import FFTLoss


def test_identical_inputs_give_zero():
    x = torch.rand(2, 3, 16, 12)
    assert FFTLoss()(x, x.clone()).item() == 0.0


def test_hand_computed_spectra():
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


def test_gradients_flow_and_descent_reaches_the_target():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8)
    pred = torch.zeros_like(target, requires_grad=True)
    loss_fn = build_loss(dict(type='FFTLoss', loss_weight=1.0))
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
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FFTLoss(**kwargs)
