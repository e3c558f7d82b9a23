"""`orca mcp`: serve Orca's tools to an MCP client over stdio (needs the extra `orca[mcp]`)."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from orca_client.cli.common import EXIT_OK, EXIT_USAGE, Args
from orca_client.paths import SOCKET_NAME

SDK_MISSING = (
    "orca mcp: the MCP SDK is not installed (or is older than 2.3): pip install 'orca[mcp]'"
)


def cmd_mcp(args: Args) -> int:
    try:
        from orca_client.mcp_server import serve
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in ("mcp", "pydantic"):
            raise
        print(SDK_MISSING, file=sys.stderr)
        return EXIT_USAGE
    find_login_runtime_dir(os.environ, Path(f"/run/user/{os.getuid()}"))
    serve()
    return EXIT_OK


def find_login_runtime_dir(environ: MutableMapping[str, str], login_dir: Path) -> None:
    """MCP clients start servers with a few environment variables only (Codex and the SDK:
    HOME, PATH, SHELL, TERM, ...), without XDG_RUNTIME_DIR, where a login session's orcad has
    its socket: when it is missing (and ORCA_HOME too) and orcad's socket is in `login_dir`
    (the login session's runtime directory), that is where orcad is."""
    if environ.get("ORCA_HOME") or environ.get("XDG_RUNTIME_DIR"):
        return
    if (login_dir / "orca" / SOCKET_NAME).exists():
        environ["XDG_RUNTIME_DIR"] = str(login_dir)
