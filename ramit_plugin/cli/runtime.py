"""What several commands share at run time: the --threads setting."""
import os
from typing import Optional


def set_threads(threads: Optional[int]) -> None:
    """--threads N: N torch and OpenCV threads in this process, OMP_NUM_THREADS=N for processes it starts later."""
    if threads is None:
        return
    import cv2
    import torch

    torch.set_num_threads(threads)
    # OpenCV otherwise decodes and resizes on every core, in this process and in forked DataLoader workers.
    cv2.setNumThreads(threads)
    os.environ['OMP_NUM_THREADS'] = str(threads)
