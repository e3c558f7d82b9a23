"""`orca bridge --stdio`: serve orcad to an editor as JSON-RPC on stdin and stdout."""

from __future__ import annotations

import sys

from orca_client.cli.common import Args, agent_lookup
from orca_client.paths import OrcaPaths, resolve_paths

START_TIMEOUT = 15.0


def cmd_bridge(args: Args) -> int:
    """Run the bridge until stdin closes; with --start, start orcad first if it is not running.
    Requests that find agent binaries and do not say where get this environment's PATH,
    ORCA_CODEX_PATH and ORCA_CLAUDE_PATH, as the CLI's do."""
    from orca_client.bridge import serve_stdio

    paths = resolve_paths()
    start_failure = _start(paths) if args.start else None
    lookup = agent_lookup()
    where = {field: lookup[field] for field in ("search_path", "codex_path", "claude_path")}
    return serve_stdio(paths, start_failure, where)


def _start(paths: OrcaPaths) -> str | None:
    """Start orcad as `orca daemon start` does (saying so on stderr: stdout is the editor's);
    why it could not, if it could not."""
    from orca_client.cli.daemon import StartFailed, ensure_running

    try:
        hello, started = ensure_running(paths, START_TIMEOUT)
    except StartFailed as exc:
        print(f"orca bridge: {exc}", file=sys.stderr, flush=True)
        return f"orcad could not be started: {exc}"
    if started:
        print(
            f"orca bridge: orcad started (pid {hello.pid}); log: {paths.daemon_log_file}",
            file=sys.stderr,
            flush=True,
        )
    return None
