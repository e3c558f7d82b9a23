"""orcad: the long-lived daemon that runs agent sessions and records everything in an event log."""

from orca_client import __version__

__all__ = ["__version__"]
