"""The losses basicsr 1.4.2 lacks (``ramit.losses``: FFTLoss, SSIMLoss) in its LOSS_REGISTRY (importing registers
them)."""
from basicsr.utils.registry import LOSS_REGISTRY

from ramit.losses import FFTLoss, SSIMLoss

for _loss in (FFTLoss, SSIMLoss):
    LOSS_REGISTRY.register(_loss)
