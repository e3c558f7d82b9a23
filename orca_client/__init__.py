"""Orca's client side: the socket protocol, a client library and the `orca` CLI.

Nothing here imports `orca_daemon`; editor plugins can depend on this package alone.
"""

__version__ = "0.1.0"
