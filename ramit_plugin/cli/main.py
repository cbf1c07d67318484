"""The `ramit`/`basicsr` entry point under its former name, for scripts doing `from ramit_plugin.cli.main import
main`; the front end itself is the light package ramit_cli (`python -m ramit_cli`)."""
from ramit_cli.main import main  # noqa: F401
