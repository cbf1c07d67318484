"""1 - SSIM as a differentiable loss (Gaussian 11x11 window, sigma 1.5, as basicsr's SSIM metric)."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from basicsr.losses.loss_util import reduce_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from .fft_loss import check_reduction

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5


def ssim_map(img: torch.Tensor, img2: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM of [N, C, H, W] images ('valid' window positions: [N, C, H - 10, W - 10]).

    The same computation as basicsr's calculate_ssim_pt, which only returns per-image means in float64; here it
    stays in the input's dtype and keeps the map, so it can be weighted and back-propagated cheaply.
    """
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    kernel = cv2.getGaussianKernel(WINDOW_SIZE, WINDOW_SIGMA)
    window = torch.from_numpy(np.outer(kernel, kernel)).to(img.device, img.dtype)
    window = window.expand(img.shape[1], 1, WINDOW_SIZE, WINDOW_SIZE)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=x.shape[1])

    mu1, mu2 = blur(img), blur(img2)
    sigma1_sq = blur(img * img) - mu1 * mu1
    sigma2_sq = blur(img2 * img2) - mu2 * mu2
    sigma12 = blur(img * img2) - mu1 * mu2
    return ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (sigma1_sq + sigma2_sq + c2))


@LOSS_REGISTRY.register()
class SSIMLoss(nn.Module):
    """``loss_weight`` * (1 - SSIM(pred, target)) for images in [0, ``data_range``].

    Elementwise loss is 1 - the SSIM map ([N, C, H - 10, W - 10]); 'mean' gives 1 - the usual mean SSIM.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', data_range: float = 1.0) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, 'SSIMLoss')
        self.loss_weight = loss_weight
        self.data_range = data_range

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        """Weighted 1 - SSIM between ``pred`` and ``target`` ([N, C, H, W], H and W at least 11)."""
        if min(pred.shape[-2:]) < WINDOW_SIZE:
            raise ValueError(f'SSIMLoss: images must be at least {WINDOW_SIZE}x{WINDOW_SIZE} (the SSIM window), '
                             f'got {tuple(pred.shape[-2:])}')
        return self.loss_weight * reduce_loss(1 - ssim_map(pred, target, self.data_range), self.reduction)
