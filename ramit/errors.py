"""The plugin's one error hierarchy: every error a user can cause or meet is a RamitError with a one-line message.

The command-line front end (``ramit_cli.main``) prints a RamitError as ``<prog>: error: <message>`` on stderr and
exits with its ``exit_code``: 2 for bad input (the default), 1 for a run that started and failed (RunError).
Subclasses keep ValueError/RuntimeError/FileNotFoundError as extra bases where Python callers catch those.
This module imports nothing heavy, so light code may import it.
"""
import re

# How torch's DataLoader re-raises an exception from a worker process: type(err)(this + the whole traceback).
_WORKER_RERAISE = re.compile(r'Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback')


class RamitError(Exception):
    """Bad input (an option, file or folder) named in a one-line message; exit status 2."""

    exit_code = 2

    def __init__(self, message: object = '', *args: object) -> None:
        # A RamitError raised while loading data in a DataLoader worker keeps its one-line message in the main
        # process: torch rebuilds it from a text ending with the traceback's last line, '<class>: <message>'.
        if isinstance(message, str) and _WORKER_RERAISE.match(message):
            message = message.rstrip().splitlines()[-1].partition(': ')[2]
        super().__init__(message, *args)


class RunError(RamitError):
    """A run that started and then failed (a non-finite loss, a failed download); exit status 1."""

    exit_code = 1


class OptionError(RamitError, ValueError):
    """A problem with an option file, a command-line option or the data and checkpoints they name."""


class CheckpointError(RamitError, ValueError):
    """A checkpoint that cannot be read, is not RAMiT, or does not fit; the message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that does not exist."""
