"""`orca answer`: answer the question a run is waiting on."""

from __future__ import annotations

import sys

from orca_client.cli.common import EXIT_OK, EXIT_USAGE, Args, UsageError, client


def cmd_answer(args: Args) -> int:
    from orca_client import answering
    from orca_client.terminal_text import one_line
    from orca_client.wire import Answer, AnswerResult

    if args.text is not None and args.answers_json is not None:
        raise UsageError("orca answer: give ANSWER or --json, not both")
    answers = None
    text = _strip_newline(sys.stdin.read()) if args.text == "-" else args.text
    if args.answers_json is not None:
        source = sys.stdin.read() if args.answers_json == "-" else args.answers_json
        try:
            answers = answering.parse_answers_json(source)
        except ValueError as exc:
            raise UsageError(f"orca answer: --json: {exc}") from None
    request_id, session_id = args.request, args.session
    with client() as connection:
        if text is None and answers is None:
            if not sys.stdin.isatty():
                raise UsageError(
                    "orca answer: give the answer as an argument or with --json "
                    "(there is no terminal to ask the questions on)"
                )
            try:
                session_id, request_id, answers = answering.ask_on_terminal(
                    connection, args.run_id, args.session, args.request
                )
            except EOFError:
                print(
                    "\norca answer: no answer given (end of input); nothing was sent",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            except KeyboardInterrupt:
                print("\norca answer: interrupted; nothing was sent", file=sys.stderr)
                return 130
        result: AnswerResult = connection.request(
            Answer(
                run_id=args.run_id,
                text=text,
                answers=answers,
                request_id=request_id,
                session_id=session_id,
                answered_by=answering.who(),
            )
        )
    print(
        one_line(
            f"answered request {result.request_id} of run {result.run_id}; "
            f"the run is {result.status}"
        )
    )
    if not result.delivered:
        print("the agent has not read its input yet; orcad keeps the answer until it does")
    return EXIT_OK


def _strip_newline(text: str) -> str:
    """Input read from stdin loses one trailing newline (as `$(...)` does); nothing else."""
    return text[:-1] if text.endswith("\n") else text
