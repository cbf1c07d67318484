"""Precision choices in one place: autocast dtypes for training, half types for inference and benchmarks."""
import torch

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# Inference / benchmark precisions: the weights and inputs are converted (no autocast).
PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """'fp32', 'fp16' or 'bf16' for a floating dtype (str(dtype) otherwise)."""
    return next((name for name, d in PRECISIONS.items() if d == dtype), str(dtype).replace('torch.', ''))
