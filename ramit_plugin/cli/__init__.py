"""The implementations of the `ramit` / `basicsr` commands; ramit_cli parses their arguments and calls them."""
