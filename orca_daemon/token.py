"""The socket's credential: a random secret in a 0600 file inside the 0700 runtime directory.

It is created once; the daemon refuses to start on a token file or directory that group or
others can read. The secret itself is never logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from orca_client.paths import InsecurePathError, check_private, read_token

TOKEN_BYTES = 32


def load_or_create_token(path: Path) -> bytes:
    """The token's bytes, creating the file (0600, never world-readable) if it is missing."""
    if not path.exists():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(TOKEN_BYTES) + "\n")
    check_private(path, directory=False)
    token = read_token(path)
    if len(token) < 32:
        raise InsecurePathError(f"{path} holds no usable token; remove it and orcad will make one")
    return token
