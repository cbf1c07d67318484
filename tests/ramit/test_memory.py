"""Memory on the device: peak of one call, free memory, and glibc handing freed blocks back."""
import json
import subprocess
import sys

import pytest
import torch

from ramit.memory import available_bytes, traced_peak_bytes


PEAKS = """
import json, torch
from ramit.memory import limit_heap_retention, measure
assert limit_heap_retention() is True
cpu = torch.device('cpu')
small = measure(lambda: torch.ones(1 << 20).sum(), cpu)  # 4 MiB
big = measure(lambda: torch.ones(64 << 20).sum(), cpu)  # 256 MiB, handed back at once (mmap)
print(json.dumps([small, big]))
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt, /proc')
def test_peak_of_a_call_and_available_memory_on_linux():
    # A fresh process: in the suite's own, memory earlier tests left resident could serve the allocation unseen.
    proc = subprocess.run([sys.executable, '-c', PEAKS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    small, big = json.loads(proc.stdout)
    assert small['seconds'] > 0 and big['peak_mib'] - small['peak_mib'] > 200
    free = available_bytes(torch.device('cpu'))
    assert free is not None and free > 256 << 20


def test_traced_peak_counts_tensors_alive_at_once_on_the_meta_device():
    def work() -> torch.Tensor:
        """Tensors made and freed in a known order."""
        a = torch.empty(1000, device='meta')  # 4000 bytes
        b = a.view(10, 100)  # a view: no new storage
        c = torch.empty(2000, device='meta')  # 8000 bytes, a still alive: 12000
        del a, b
        return c * 2  # 8000 more, a freed: 16000

    assert traced_peak_bytes(work) == 16000
