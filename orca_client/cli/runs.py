"""`orca run`, `orca status`, `orca watch`, `orca logs`, `orca cancel`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from orca_client.cli.common import (
    EXIT_OK,
    Args,
    UsageError,
    agent_lookup,
    client,
    full_run_id,
    print_json,
    run_detail,
    say_reconnecting,
    wait_for_run,
    working_directory,
)

if TYPE_CHECKING:
    from orca_client.views import StatusResult
    from orca_client.wire import EventRecord


def run(args: Args) -> int:
    """Carry out one of these commands; returns the exit status."""
    handlers: dict[str, Callable[[Args], int]] = {
        "run": cmd_run,
        "status": cmd_status,
        "watch": cmd_watch,
        "logs": cmd_logs,
        "cancel": cmd_cancel,
    }
    return handlers[args.command](args)


def cmd_run(args: Args) -> int:
    import msgspec

    from orca_client.wire import RunStarted, StartRun

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    cwd = working_directory(args.cwd)
    if args.agent is not None:
        after = list(args.argv)[1:] if args.prompt is None else list(args.argv)
        if "--" in after:
            command = " ".join(after[after.index("--") + 1 :])
            raise UsageError(
                f"orca run: --agent {args.agent} runs an agent on a prompt, and `-- {command}` "
                "names a command to run: they are exclusive; give one "
                "(orca run --agent NAME 'PROMPT', or orca run -- CMD ARGS)"
            )
        if args.prompt is not None and argv:
            raise UsageError("orca run: give the prompt as PROMPT or --prompt, not both")
        prompt = args.prompt if args.prompt is not None else " ".join(argv)
        if not prompt:
            raise UsageError(
                f"orca run: agent {args.agent} needs a prompt: orca run --agent NAME 'PROMPT'"
            )
        request = StartRun(
            cwd=cwd,
            agent=args.agent,
            prompt=prompt,
            title=args.title,
            follow_up=args.follow_up,
            **agent_lookup(),
        )
    else:
        if args.follow_up is not None:
            raise UsageError(
                "orca run: --follow-up continues an agent's conversation: give --agent"
            )
        if not argv:
            raise UsageError(
                "orca run: give the command to run after --, e.g. orca run -- python3 agent.py "
                "(or an agent: orca run --agent codex 'PROMPT')"
            )
        argv[0] = _resolve_program(argv[0], cwd)
        request = StartRun(command=argv, cwd=cwd, title=args.title, prompt=args.prompt)
    if args.continue_on_failure and not args.sequential:
        raise UsageError("orca run: --continue-on-failure goes with --sequential")
    request = msgspec.structs.replace(
        request,
        repos=args.repo,
        project=args.project,
        feature=args.feature,
        mode=args.mode,
        orchestration_mode="sequential" if args.sequential else "parallel",
        continue_on_failure=args.continue_on_failure,
        max_parallel=args.max_parallel,
        worktree=args.worktree,
    )
    with client() as connection:
        started: RunStarted = connection.request(request)
        if not args.wait:
            if args.json:
                print_json(started)
            else:
                print(started.run_id)
                if started.child_run_ids:
                    children = ", ".join(started.child_run_ids)
                    print(f"parent run; children so far: {children}", file=sys.stderr)
            return EXIT_OK
        return wait_for_run(
            connection, started.run_id, as_json=args.json, stream_output=not args.json
        )


def cmd_status(args: Args) -> int:
    from orca_client import render
    from orca_client.client import fetch_status
    from orca_client.wire import Status

    if args.tree and args.run_id is None:
        raise UsageError("orca status: --tree needs a RUN_ID")
    with client() as connection:
        result = fetch_status(
            connection, Status(run_id=args.run_id, ended=None if args.all else 50, tree=args.tree)
        )
    if args.json:
        print_json(result if args.run_id is None or args.tree else run_detail(result))
    elif args.tree:
        print(render.run_tree(result))
    elif args.run_id is None:
        print(render.runs_table(result))
    else:
        print(render.run_detail(result.runs[0], result.sessions))
    return EXIT_OK


def cmd_watch(args: Args) -> int:
    from orca_client import render_events

    with client() as connection:
        after = args.after if args.after is not None else connection.hello().head_position
        run_id = full_run_id(connection, args.run_id) if args.run_id else None
        for record in connection.follow(after=after, run_id=run_id, on_reconnect=say_reconnecting):
            if args.json:
                print(render_events.record_json(record), flush=True)
            else:
                print(render_events.event_line(record, render_events.decode(record)), flush=True)
    return EXIT_OK


def cmd_logs(args: Args) -> int:
    from orca_client import render, render_events
    from orca_client.wire import Status

    labels = None if args.json else render_events.OutputLabels()

    def show(record: EventRecord) -> bool:
        """Print what the record shows; whether it ends the run."""
        event = render_events.decode(record)
        render_events.write_output(record, event, as_json=args.json, raw=args.raw, labels=labels)
        if not args.json:
            render_events.write_long_texts(event, raw=args.raw)
            render_events.write_notes(event, raw=args.raw)
        return render_events.ends_run(event)

    with client() as connection:
        run_id = full_run_id(connection, args.run_id)
        if args.follow:
            for record in connection.follow(after=0, run_id=run_id, on_reconnect=say_reconnecting):
                if show(record):
                    break
            if not args.json:
                ended: StatusResult = connection.request(Status(run_id=run_id))
                print(render.outcome_line(ended.runs[0], ended.sessions), file=sys.stderr)
            return EXIT_OK
        for page in connection.read_pages(after=0, run_id=run_id):
            for record in page:
                show(record)
        return EXIT_OK


def cmd_cancel(args: Args) -> int:
    from orca_client.wire import Cancel, CancelResult

    with client() as connection:
        result: CancelResult = connection.request(
            Cancel(run_id=args.run_id, reason=args.reason, session_id=args.session)
        )
    if args.json:
        print_json(result)
    elif args.session is not None:
        ended = "had already ended" if result.already_terminal else "cancelled"
        print(f"session {args.session} {ended}; run {result.run_id} is {result.status}")
    elif result.already_terminal:
        print(f"run {result.run_id} had already ended: {result.status}")
    else:
        print(f"run {result.run_id} cancelled")
    return EXIT_OK


def _resolve_program(program: str, cwd: str) -> str:
    """An absolute path for CMD, looked up on this shell's PATH (orcad's PATH may differ)."""
    import shutil

    if os.sep in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        return os.path.normpath(path)
    found = shutil.which(program)
    if found is None:
        raise UsageError(f"orca run: command not found on PATH: {program}")
    return os.path.abspath(found)
