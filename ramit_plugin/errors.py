"""The plugin's one error hierarchy: every error a user can cause or meet is a RamitError with a one-line message.

The command-line front end (``ramit_cli.main``) prints a RamitError as ``<prog>: error: <message>`` on stderr and
exits with its ``exit_code``: 2 for bad input (the default), 1 for a run that started and failed (RunError).
Subclasses keep ValueError/RuntimeError/FileNotFoundError as extra bases where Python callers catch those.
This module imports nothing heavy, so light code may import it.
"""


class RamitError(Exception):
    """Bad input (an option, file or folder) named in a one-line message; exit status 2."""

    exit_code = 2


class RunError(RamitError):
    """A run that started and then failed (a non-finite loss, a failed download); exit status 1."""

    exit_code = 1


class OptionError(RamitError, ValueError):
    """A problem with an option file, a command-line option or the data and checkpoints they name."""
