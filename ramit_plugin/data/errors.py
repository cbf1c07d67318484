"""The error the plugin's datasets raise for bad options or data: one line naming the option or file."""


class DatasetError(ValueError):
    """A dataset option or file is wrong; the message is one line that names it (CLIs print it as is)."""
