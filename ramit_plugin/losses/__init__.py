"""Losses basicsr 1.4.2 lacks (frequency-domain L1, SSIM), registered in its LOSS_REGISTRY on import."""
from .fft_loss import FFTLoss  # noqa: F401
from .ssim_loss import SSIMLoss  # noqa: F401
