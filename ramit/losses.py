"""Losses for deraining and low-light training that basicsr 1.4.2 lacks: frequency-domain L1 and SSIM. Plain torch
modules; the BasicSR adapter registers them in LOSS_REGISTRY, the mmengine adapter in MODELS."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import OptionError

REDUCTIONS = ('none', 'mean', 'sum')
FFT_NORMS = ('backward', 'ortho', 'forward')
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5


def check_reduction(reduction: str, loss: str) -> str:
    """Return ``reduction``; one-line OptionError naming the loss unless it is 'none', 'mean' or 'sum'."""
    if reduction not in REDUCTIONS:
        raise OptionError(f'{loss}: reduction must be one of {", ".join(REDUCTIONS)}, got {reduction!r}')
    return reduction


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """The elementwise ``loss`` as is ('none'), averaged ('mean') or summed ('sum'), as basicsr's losses reduce."""
    return loss if reduction == 'none' else getattr(loss, reduction)()


class FFTLoss(nn.Module):
    """L1 distance between the real and imaginary parts of the 2-D real FFTs (torch.fft.rfft2) of pred and target.

    Elementwise loss has shape [N, C, H, W // 2 + 1, 2] (real, imaginary); 'mean' averages over all of it.
    ``norm`` is torch.fft's: 'backward' (unnormalised forward transform, the usual choice) | 'ortho' | 'forward'.
    rfft2 holds every independent coefficient of a real image's spectrum, so fft2 would only repeat them.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = 'mean', norm: str = 'backward') -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, 'FFTLoss')
        if norm not in FFT_NORMS:
            raise OptionError(f'FFTLoss: norm must be one of {", ".join(FFT_NORMS)}, got {norm!r}')
        self.loss_weight = loss_weight
        self.norm = norm

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        """Weighted L1 between the spectra of ``pred`` and ``target`` ([N, C, H, W])."""
        # rfft2 has no half-precision kernels for every size; the spectrum is computed in float32 under autocast.
        pred_f = torch.view_as_real(torch.fft.rfft2(pred.float(), norm=self.norm))
        target_f = torch.view_as_real(torch.fft.rfft2(target.float(), norm=self.norm))
        return self.loss_weight * reduce((pred_f - target_f).abs(), self.reduction)


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


class SSIMLoss(nn.Module):
    """``loss_weight`` * (1 - SSIM(pred, target)) for images in [0, ``data_range``], SSIM as basicsr's metric
    (Gaussian 11x11 window, sigma 1.5).

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
            raise OptionError(f'SSIMLoss: images must be at least {WINDOW_SIZE}x{WINDOW_SIZE} (the SSIM window), '
                              f'got {tuple(pred.shape[-2:])}')
        return self.loss_weight * reduce(1 - ssim_map(pred, target, self.data_range), self.reduction)
