"""Sans-I/O translators, one per agent protocol: agent lines in, Orca effects out."""
