"""`python -m ramit_cli <command> ...`, the same as the `ramit` console script."""
import sys

from .main import main

if __name__ == '__main__':
    sys.exit(main())
