"""The `ramit` and `basicsr` command-line front end: parses arguments with the standard library only, then imports
the command's implementation in ramit_plugin.cli (and with it torch and basicsr) to run it."""
