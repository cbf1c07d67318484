"""Denoising, low-light and deraining datasets, registered in BasicSR's DATASET_REGISTRY on import."""
from .errors import DatasetError  # noqa: F401
from .noise import check_sigma, check_sigma_range, random_sigma_noise, reference_noise, rgb_to_gray  # noqa: F401
from .noisy_image_dataset import NoisyImageDataset  # noqa: F401
from .paired_restoration_dataset import PAIRING_RULES, PairedRestorationDataset  # noqa: F401
