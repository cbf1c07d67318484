"""Pixel losses in mmengine's MODELS: the classes BasicSR and the plugin define, registered, not copied."""
from basicsr.losses.basic_loss import CharbonnierLoss, L1Loss, MSELoss

from ramit.losses import FFTLoss, SSIMLoss

from ..registry import MODELS

for _loss in (L1Loss, MSELoss, CharbonnierLoss, FFTLoss, SSIMLoss):
    MODELS.register_module(module=_loss)
