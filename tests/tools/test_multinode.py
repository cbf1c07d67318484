"""Two nodes on one machine (tools/multinode_check.py): identical weights, a node killed (either one), bit-identical
resume.

About four minutes on two cores, so it is marked ``slow`` and left out of the default run: ``pytest -m slow tests``.
"""
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'multinode_check.py'


@pytest.mark.slow
@pytest.mark.parametrize('trainer', ['basicsr', 'mm'])
def test_two_nodes_agree_survive_a_killed_node_and_resume_bit_identically(trainer: str, tmp_path: Path) -> None:
    """Every check of the tool passes for both trainers (its output names the failing one)."""
    proc = subprocess.run([sys.executable, str(TOOL), '--only', trainer, '--workdir', str(tmp_path / 'runs')],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count('ok   ') == 4, proc.stdout
