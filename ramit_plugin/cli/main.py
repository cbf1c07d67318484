"""The `ramit`/`basicsr` entry point under its former name, for scripts doing `from ramit_plugin.cli.main import
main` and command lines with `-m ramit_plugin.cli.main`; the front end itself is the light package ramit_cli
(`python -m ramit_cli`)."""
import sys

from ramit_cli.main import main

if __name__ == '__main__':
    sys.exit(main())
