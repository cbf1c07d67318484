"""Command-line interface: `ramit <command>` and `basicsr <command>` (the same entry point)."""
