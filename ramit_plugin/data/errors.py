"""The error the plugin's datasets raise for bad options or data: one line naming the option or file."""
from ..errors import RamitError


class DatasetError(RamitError, ValueError):
    """A dataset option or file is wrong; the message is one line that names it (the CLI prints it as is)."""
