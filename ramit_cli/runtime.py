"""What several commands share at run time: --threads, the device and the precision of the weights."""
import argparse
import os
from typing import Optional

import cv2
import torch

from ramit.errors import OptionError
from ramit.precision import PRECISIONS


def set_threads(threads: Optional[int]) -> None:
    """--threads N: N torch and OpenCV threads in this process, OMP_NUM_THREADS=N for processes it starts later."""
    if threads is None:
        return
    torch.set_num_threads(threads)
    # OpenCV otherwise decodes and resizes on every core, in this process and in forked DataLoader workers.
    cv2.setNumThreads(threads)
    os.environ['OMP_NUM_THREADS'] = str(threads)


def select_device(name: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; 'cuda' without a GPU is a one-line OptionError."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise OptionError('--device cuda: no CUDA device is available (use --device cpu or auto)')
    return torch.device(name)


def precision(args: argparse.Namespace) -> torch.dtype:
    """The dtype --half / --bf16 ask for (float32 otherwise)."""
    return PRECISIONS['fp16' if args.half else 'bf16' if args.bf16 else 'fp32']
