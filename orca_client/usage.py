"""The CLI's usage error, in a module of its own so every command module raises the same class
(also when the CLI runs as `python -m orca_client.cli`, where cli.py is `__main__`)."""


class UsageError(Exception):
    """A command line that cannot be carried out as given."""
