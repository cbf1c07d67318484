"""Precision choices in one place: autocast dtypes for training, half types for inference and benchmarks."""
from typing import Optional

import torch

from .errors import OptionError

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# Inference / benchmark precisions: the weights and inputs are converted (no autocast).
PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def amp_dtype(value: Optional[str], option: str) -> Optional[torch.dtype]:
    """The autocast dtype of ``train: amp`` (None: float32 training); ValueError naming ``option`` otherwise."""
    if value in (None, False, 'none', 'fp32'):
        return None
    if value not in AMP_DTYPES:
        raise OptionError(f"{option}: {value!r} is not supported; valid: {', '.join(AMP_DTYPES)} (or leave it out)")
    return AMP_DTYPES[value]


def dtype_name(dtype: torch.dtype) -> str:
    """'fp32', 'fp16' or 'bf16' for a floating dtype (str(dtype) otherwise)."""
    return next((name for name, d in PRECISIONS.items() if d == dtype), str(dtype).replace('torch.', ''))
