"""The losses in mmengine's MODELS are BasicSR's and the plugin's own classes, not copies."""
import torch
from basicsr.losses.basic_loss import CharbonnierLoss, L1Loss, MSELoss

from ramit_plugin.losses import FFTLoss, SSIMLoss
from ramit_plugin.registry import MODELS


def test_registered_losses_are_the_basicsr_and_plugin_classes():
    for cls in (L1Loss, MSELoss, CharbonnierLoss, FFTLoss, SSIMLoss):
        assert MODELS.get(cls.__name__) is cls


def test_losses_build_from_their_names_with_basicsr_arguments():
    pred, target = torch.full((1, 3, 16, 16), 0.25), torch.full((1, 3, 16, 16), 0.75)
    expected = {'L1Loss': 0.5, 'MSELoss': 0.25}
    for name, value in expected.items():
        loss = MODELS.build(dict(type=name, loss_weight=2.0))
        assert torch.isclose(loss(pred, target), torch.tensor(2 * value))
