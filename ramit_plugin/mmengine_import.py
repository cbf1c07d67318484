"""Imports mmengine one process at a time (per user); every way into the mmengine adapter imports this first.

mmengine.config imports yapf, and yapf 0.43.0 renames a regenerated grammar cache file into place before flushing
it: a process that imports it beside another one after an install can read that file empty and stop with
``EOFError: Ran out of input`` (also reported in exo-lang/exo#573). ``torchrun`` starts every rank at once.
"""
import contextlib
import os
import sys
import tempfile

from ramit.errors import RamitError
from ramit.fileio import exclusive_lock

LOCK = os.path.join(tempfile.gettempdir(), f'.ramit-mmengine-import-{os.getuid()}.lock')


def import_mmengine() -> None:
    """Import mmengine (and so yapf) holding a per-user lock that other processes doing the same wait for."""
    if 'mmengine.config' in sys.modules:
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(LOCK, 'the mmengine import', wait=True))
        except (RamitError, OSError):  # no writable temporary folder: nothing to wait for, import anyway
            pass
        import mmengine.config  # noqa: F401


import_mmengine()
