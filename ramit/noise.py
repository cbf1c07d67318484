"""Gaussian noise for denoising: the paper's fixed evaluation noise and blind training noise."""
from typing import Sequence, Tuple

import torch

from .datasets import DatasetError

Tensor = torch.Tensor
PROTOCOL_SEED = 0  # the paper's evaluation seeds torch with 0 before each image's noise
MAX_SIGMA = 255.0


def check_sigma(value: float, option: str) -> float:
    """Return ``value`` as float; one-line DatasetError naming ``option`` unless 0 <= value <= 255."""
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f'{option} must be a noise level in [0, 255] (pixel units), got {value!r}') from None
    if isinstance(value, bool) or not 0.0 <= sigma <= MAX_SIGMA:
        raise DatasetError(f'{option} must be a noise level in [0, 255] (pixel units), got {value!r}')
    return sigma


def check_sigma_range(value: Sequence[float], option: str) -> Tuple[float, float]:
    """Validate a ``[low, high]`` noise range in [0, 255] with low <= high; one-line DatasetError naming ``option``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, '__len__') or len(value) != 2:
        raise DatasetError(f'{option} must be a list [low, high] of noise levels in [0, 255], got {value!r}')
    low, high = (check_sigma(v, option) for v in value)
    if low > high:
        raise DatasetError(f'{option} must be [low, high] with low <= high, got {value!r}')
    return low, high


def reference_noise(shape: Tuple[int, int, int], sigma: float) -> Tensor:
    """The protocol noise for one [C, H, W] image: ``torch.manual_seed(0); torch.randn(C, H, W) * sigma / 255``.

    A private CPU generator gives the same numbers as seeding the global one, without disturbing the caller's
    random state (training code, dataloader workers).
    """
    generator = torch.Generator().manual_seed(PROTOCOL_SEED)
    # Evaluated left to right like the reference's ``randn(...) * sigma / 255``: bit-identical float32 noise.
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32) * float(sigma) / 255.0


def random_sigma_noise(shape: Tuple[int, int, int], sigma_range: Sequence[float], generator: torch.Generator
                       ) -> Tuple[Tensor, float]:
    """Blind training noise: sigma ~ U[low, high] for the whole image, then N(0, (sigma/255)^2) per pixel."""
    low, high = float(sigma_range[0]), float(sigma_range[1])
    sigma = low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32) * sigma / 255.0
    return noise, sigma
