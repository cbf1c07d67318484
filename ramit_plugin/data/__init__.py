"""Denoising, low-light and deraining datasets in BasicSR's DATASET_REGISTRY (importing registers them)."""
from .noisy_image_dataset import NoisyImageDataset  # noqa: F401
from .paired_restoration_dataset import PairedRestorationDataset  # noqa: F401
