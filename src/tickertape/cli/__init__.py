"""The ``tape`` command: one module per subcommand group, registered in :mod:`.main`."""
