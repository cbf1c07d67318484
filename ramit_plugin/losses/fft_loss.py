"""Frequency-domain L1 loss, common in deraining and low-light training (e.g. MIMO-UNet's FFT loss)."""
import torch
from basicsr.losses.loss_util import reduce_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

REDUCTIONS = ('none', 'mean', 'sum')
FFT_NORMS = ('backward', 'ortho', 'forward')


def check_reduction(reduction: str, loss: str) -> str:
    """Return ``reduction``; one-line ValueError naming the loss unless it is 'none', 'mean' or 'sum'."""
    if reduction not in REDUCTIONS:
        raise ValueError(f'{loss}: reduction must be one of {", ".join(REDUCTIONS)}, got {reduction!r}')
    return reduction


@LOSS_REGISTRY.register()
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
            raise ValueError(f'FFTLoss: norm must be one of {", ".join(FFT_NORMS)}, got {norm!r}')
        self.loss_weight = loss_weight
        self.norm = norm

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        """Weighted L1 between the spectra of ``pred`` and ``target`` ([N, C, H, W])."""
        # rfft2 has no half-precision kernels for every size; the spectrum is computed in float32 under autocast.
        pred_f = torch.view_as_real(torch.fft.rfft2(pred.float(), norm=self.norm))
        target_f = torch.view_as_real(torch.fft.rfft2(target.float(), norm=self.norm))
        return self.loss_weight * reduce_loss((pred_f - target_f).abs(), self.reduction)
