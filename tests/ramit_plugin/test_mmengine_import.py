"""ramit_plugin.mmengine_import: processes that enter the mmengine adapter together import mmengine one at a time
(yapf, which mmengine imports, can otherwise read its grammar cache half-written)."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ramit.fileio import exclusive_lock
from ramit_plugin.mmengine_import import LOCK


def waiting_for_a_lock(pid: int) -> bool:
    """Whether /proc/locks lists ``pid`` as waiting for a POSIX lock ('1: -> POSIX ADVISORY WRITE <pid> ...')."""
    return any(fields[1:3] == ['->', 'POSIX'] and fields[5] == str(pid)
               for fields in map(str.split, Path('/proc/locks').read_text().splitlines()) if len(fields) > 5)


@pytest.mark.skipif(not Path('/proc/locks').exists(), reason='needs /proc/locks (Linux) to see a process waiting')
def test_a_command_entering_the_adapter_waits_for_another_process_importing_mmengine():
    # What every rank of `torchrun ... ramit mm-train` imports first.
    code = 'import sys; import ramit_cli.mm; print("mmengine" in sys.modules)'
    with exclusive_lock(LOCK, 'the test'):
        child = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        deadline = time.monotonic() + 120
        while not waiting_for_a_lock(child.pid):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, 'the command never asked for the import lock'
            time.sleep(0.05)
    out, err = child.communicate(timeout=120)
    assert (child.returncode, out.strip()) == (0, 'True'), err[-2000:]
