"""One module per command group, imported only when its command runs (see cli.main.COMMANDS)."""
