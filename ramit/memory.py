"""Memory: what one call takes at its peak (measured on the device, or traced without running), and what is free.

Measured: CUDA from PyTorch's allocator statistics; CPU (Linux) from the process's peak resident set over the
resident size before the call, i.e. everything the call touched, torch's allocator included (tracemalloc would miss
it). Traced: the largest total size of tensors alive at once while torch ops run, e.g. on the meta device (no
memory, no compute). Free: ``torch.cuda.mem_get_info`` or psutil's available host memory.
"""
import ctypes
import ctypes.util
import time
import weakref
from typing import Callable, Dict, Optional

import psutil
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _peak_rss_kib() -> Optional[int]:
    """The kernel's peak-RSS mark of this process (VmHWM, KiB), or None off Linux."""
    try:
        with open('/proc/self/status') as f:
            return next((int(line.split()[1]) for line in f if line.startswith('VmHWM:')), None)
    except OSError:
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where impossible. Ours, not psutil's:
    psutil reads the peak but cannot reset it, and a peak since process start measures nothing per call."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object], device: torch.device) -> Dict[str, Optional[float]]:
    """Seconds and peak memory (MiB above the level before; None where it cannot be read) of one call of ``fn``."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return dict(seconds=seconds, peak_mib=(torch.cuda.max_memory_allocated(device) - before) / 2 ** 20)
    resettable = _reset_peak_rss()
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = _peak_rss_kib()
    peak_mib = (peak * 1024 - before) / 2 ** 20 if resettable and peak is not None else None
    return dict(seconds=seconds, peak_mib=peak_mib)


def available_bytes(device: torch.device) -> Optional[int]:
    """Memory a new allocation can still get on ``device``: free GPU memory plus what torch's cache holds unused,
    or the host's available memory; None where unknown."""
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return psutil.virtual_memory().available


def limit_heap_retention(threshold: int = 1 << 20) -> bool:
    """Make glibc hand large freed blocks back to the OS at once (mallopt M_MMAP_THRESHOLD); False elsewhere.

    Tiled runs allocate and free the same big activations for every tile; with glibc's default adaptive
    threshold they end up on the heap and stay resident (measured: 210 MB more resident after one 256x256
    RAMiT-1 pass, 70 MB higher peak), which counts against a bounded-memory run.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return bool(libc.mallopt(-3, threshold))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of the storages that torch ops create, while any tensor still refers to them."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.storages: Dict[int, list] = {}  # storage id -> [bytes, tensors referring to it]

    def _release(self, key: int) -> None:
        entry = self.storages[key]
        entry[1] -= 1
        if not entry[1]:
            self.live -= entry[0]
            del self.storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # A view of, or a write into, a tensor made before the call (an input, a parameter) takes no new memory.
        before = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs or {}))
                  if isinstance(t, torch.Tensor)} - self.storages.keys()
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata  # views share their base's storage
                if key in before:
                    continue
                if key in self.storages:
                    self.storages[key][1] += 1
                else:
                    self.storages[key] = [storage.nbytes(), 1]
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._release, key)
        return out


def traced_peak_bytes(fn: Callable[[], object]) -> int:
    """The most bytes of tensors created inside ``fn`` that were alive at the same time (inputs and parameters
    made before the call are not counted); run it on the meta device to know a pass's need without memory."""
    tracker = _LiveTensorBytes()
    with tracker:
        fn()
    return tracker.peak
